//! `rank --jobs K`: pairs of a ranking grid fitted in K worker processes at once. Each worker is
//! this same program run with the same arguments plus the one pair it fits, so a worker builds
//! exactly the settings the parent did; it writes the pair's outcome to a file the parent reads
//! back. Processes rather than threads: a pair's fit already uses every core it is given, a
//! worker holds one network and one brain and returns all of its memory when it exits, and a
//! worker that dies takes only its own pair with it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::rank::grid::{Grid, GridPlan, PairExecutor, PairJob};
use crate::rank::pair::PairOutcome;

/// Runs pairs in worker processes.
pub struct Workers {
    jobs: usize,
    exe: PathBuf,
    /// This process's arguments (without the program name): the workers get the same.
    args: Vec<OsString>,
    /// Where workers write their outcomes and messages; removed when the executor is dropped.
    scratch: PathBuf,
}

struct Running {
    child: Child,
    job: PairJob,
    out: PathBuf,
    log: PathBuf,
}

impl Workers {
    pub fn new(jobs: usize) -> Result<Workers> {
        let exe = std::env::current_exe().map_err(|e| Error::invalid(format!("cannot find this program to start workers: {e}")))?;
        let scratch = std::env::temp_dir().join(format!("factortopy-rank-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
        Ok(Workers { jobs, exe, args: std::env::args_os().skip(1).collect(), scratch })
    }

    /// Each worker's share of the cores, unless the user set the thread count.
    fn threads(&self) -> Option<String> {
        if std::env::var_os("RAYON_NUM_THREADS").is_some() {
            return None;
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Some((cores / self.jobs).max(1).to_string())
    }

    fn spawn(&self, job: &PairJob) -> Result<Running> {
        let stem = format!("pair-{}-{}", job.network, job.subject);
        let (out, log) = (self.scratch.join(format!("{stem}.json")), self.scratch.join(format!("{stem}.log")));
        let log_file = std::fs::File::create(&log).map_err(|e| Error::io(&log, e))?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .arg("--worker-pair")
            .arg(format!("{}:{}:{}", job.network, job.subject, job.digest))
            .arg("--worker-out")
            .arg(&out)
            .arg("--quiet")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Some(t) = self.threads() {
            cmd.env("RAYON_NUM_THREADS", t);
        }
        let child = cmd.spawn().map_err(|e| Error::invalid(format!("cannot start a worker process: {e}")))?;
        Ok(Running { child, job: job.clone(), out, log })
    }

    /// The outcome of a worker that exited with `status`.
    fn collect(r: &Running, status: std::process::ExitStatus) -> Result<PairOutcome> {
        let result = if status.success() {
            std::fs::read_to_string(&r.out)
                .map_err(|e| Error::io(&r.out, e))
                .and_then(|text| PairOutcome::from_json(&text, &r.out.display().to_string()))
        } else {
            // The worker's last message line is its one-line error.
            let log = std::fs::read_to_string(&r.log).unwrap_or_default();
            let msg = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim();
            let msg = msg.strip_prefix("error: ").unwrap_or(msg);
            Err(Error::invalid(format!("worker process failed ({status}): {msg}")))
        };
        let _ = std::fs::remove_file(&r.out);
        let _ = std::fs::remove_file(&r.log);
        result
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl PairExecutor for Workers {
    fn execute(&mut self, _grid: &Grid, _plan: &GridPlan, jobs: &[PairJob], done: &mut dyn FnMut(&PairJob, Result<PairOutcome>)) {
        let mut queue = jobs.iter();
        let mut running: Vec<Running> = Vec::new();
        loop {
            while running.len() < self.jobs {
                let Some(job) = queue.next() else { break };
                match self.spawn(job) {
                    Ok(r) => running.push(r),
                    Err(e) => done(job, Err(e)),
                }
            }
            if running.is_empty() {
                return;
            }
            let mut k = 0;
            while k < running.len() {
                match running[k].child.try_wait() {
                    Ok(Some(status)) => {
                        let r = running.swap_remove(k);
                        done(&r.job, Self::collect(&r, status));
                    }
                    Ok(None) => k += 1,
                    Err(e) => {
                        let mut r = running.swap_remove(k);
                        let _ = r.child.kill();
                        let _ = r.child.wait();
                        done(&r.job, Err(Error::invalid(format!("lost a worker process: {e}"))));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
