//! A ranking grid: every candidate network fitted against every subject's brain with the same
//! settings. The grid checks its inputs from the files' headers (no brain or network is loaded
//! to plan it), gives each pair a digest of its inputs and settings, skips the pairs a previous
//! run already finished (`PairStore`), hands the rest to a [`PairExecutor`] (this process one
//! pair after another, worker processes, or a cluster through the Python API) and collects the
//! outcomes. A pair that fails does not stop the others; the grid reports every failure, by
//! network and subject, once the rest have finished.

use std::path::PathBuf;
use std::time::Instant;

use crate::data::{same_images, Brain, BrainHeader, FeatureFile, FeatureSource};
use crate::engine::{Estimator, OnEvent};
use crate::error::{Error, Result};
use crate::rank::pair::{fit_pair, pair_digest, settings_text, FileDigests, PairOutcome, PairStore};

/// Most networks or subjects in one grid: far beyond any model zoo, and small enough that the
/// bookkeeping of a grid can never be a memory problem.
pub const MAX_GRID_SIDE: usize = 10_000;

/// The networks, the subjects and how every pair is fitted.
#[derive(Debug, Clone)]
pub struct Grid {
    /// Features files, one per network.
    pub networks: Vec<PathBuf>,
    /// Brain files, one per subject (the same images).
    pub brains: Vec<PathBuf>,
    /// How every pair is fitted.
    pub estimator: Estimator,
    /// Also score every layer on its own with the layer-wise ridge baseline.
    pub with_layers: bool,
}

/// One pair to fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairJob {
    /// Position of the network in [`Grid::networks`].
    pub network: usize,
    /// Position of the subject in [`Grid::brains`].
    pub subject: usize,
    /// [`pair_digest`] of the pair's inputs and settings.
    pub digest: String,
}

/// A checked grid: the subjects' names and every pair's digest, subject-major (so that a
/// serial run loads each brain once).
#[derive(Debug, Clone)]
pub struct GridPlan {
    /// The subjects' names, in [`Grid::brains`] order.
    pub subjects: Vec<String>,
    /// Every pair, subject-major.
    pub jobs: Vec<PairJob>,
}

/// What a grid reports while it runs.
#[derive(Debug, Clone, Copy)]
pub enum GridEvent<'a> {
    /// Before any fit: `done` of `total` pairs were found finished in the store.
    Planned {
        /// Pairs found finished.
        done: usize,
        /// Pairs in the grid.
        total: usize,
    },
    /// A pair finished (`ok` false: it failed); `done` counts finished pairs including resumed
    /// ones, `seconds_left` estimates the rest from the pairs fitted so far.
    Finished {
        /// The pair.
        job: &'a PairJob,
        /// Its subject's name.
        subject: &'a str,
        /// False when it failed.
        ok: bool,
        /// Finished pairs so far, resumed ones included.
        done: usize,
        /// Pairs in the grid.
        total: usize,
        /// Estimated seconds of fitting left (one pair after another).
        seconds_left: Option<f64>,
    },
}

/// Runs pairs: each job exactly once, reporting each outcome (in any order) through `done`.
pub trait PairExecutor {
    /// Runs `jobs`, calling `done` once per job as each finishes.
    fn execute(&mut self, grid: &Grid, plan: &GridPlan, jobs: &[PairJob], done: &mut dyn FnMut(&PairJob, Result<PairOutcome>));
}

impl Grid {
    /// Checks the grid from the files' headers and computes every pair's digest: at least one
    /// network and one brain; every brain with the same images (count, and `stimulus_ids` where
    /// both list them) as every other and as every network. Subjects are named by the brain's
    /// `subject` metadata, else the file's stem (made unique with ` #k`).
    pub fn plan(&self) -> Result<GridPlan> {
        self.check_sizes()?;
        self.estimator.validate()?;
        let brains: Vec<BrainHeader> = self.brains.iter().map(|p| BrainHeader::read(p)).collect::<Result<_>>()?;
        let (first, first_path) = (&brains[0], &self.brains[0]);
        for (b, path) in brains.iter().zip(&self.brains).skip(1) {
            same_images(
                (&first_path.display().to_string(), first.n_images, first.stimulus_ids.as_deref()),
                (&path.display().to_string(), b.n_images, b.stimulus_ids.as_deref()),
            )?;
        }
        for path in &self.networks {
            let f = FeatureFile::open(path)?;
            for (b, bpath) in brains.iter().zip(&self.brains) {
                same_images(
                    (&path.display().to_string(), f.n_images(), f.stimulus_ids()),
                    (&bpath.display().to_string(), b.n_images, b.stimulus_ids.as_deref()),
                )?;
            }
        }
        let subjects = subject_names(&brains, &self.brains);
        let settings = settings_text(&self.estimator, self.with_layers);
        let mut files = FileDigests::default();
        let mut jobs = Vec::with_capacity(self.networks.len() * self.brains.len());
        for (subject, brain) in self.brains.iter().enumerate() {
            for (network, features) in self.networks.iter().enumerate() {
                jobs.push(PairJob { network, subject, digest: pair_digest(&mut files, features, brain, &settings)? });
            }
        }
        Ok(GridPlan { subjects, jobs })
    }

    /// The subjects' names, from the brains' headers.
    pub fn subject_names(&self) -> Result<Vec<String>> {
        self.check_sizes()?;
        let brains: Vec<BrainHeader> = self.brains.iter().map(|p| BrainHeader::read(p)).collect::<Result<_>>()?;
        Ok(subject_names(&brains, &self.brains))
    }

    fn check_sizes(&self) -> Result<()> {
        for (what, n) in [("network", self.networks.len()), ("brain", self.brains.len())] {
            if n == 0 {
                return Err(Error::invalid(format!("a ranking needs at least one {what}")));
            }
            if n > MAX_GRID_SIDE {
                return Err(Error::invalid(format!("{n} {what}s in one ranking; at most {MAX_GRID_SIDE}")));
            }
        }
        Ok(())
    }

    /// Fits one pair in this process (loading its brain and opening its network).
    pub fn fit_one(&self, plan: &GridPlan, job: &PairJob, on_event: OnEvent<'_>) -> Result<PairOutcome> {
        let brain = Brain::load(&self.brains[job.subject])?;
        self.fit_with(plan, job, &brain, on_event)
    }

    fn fit_with(&self, plan: &GridPlan, job: &PairJob, brain: &Brain, on_event: OnEvent<'_>) -> Result<PairOutcome> {
        let features = FeatureFile::open(&self.networks[job.network])?;
        fit_pair(
            &self.estimator,
            self.with_layers,
            &features,
            brain,
            job.network,
            job.subject,
            &plan.subjects[job.subject],
            &job.digest,
            on_event,
        )
    }

    /// Runs the grid: pairs already in `store` are read back, the others run on `executor`
    /// and are saved to `store` as each finishes. Returns every pair's outcome, network-major
    /// (network 0 with every subject, then network 1, ...), or, once every pair has been tried,
    /// an error naming each pair that failed.
    pub fn run(
        &self,
        plan: &GridPlan,
        store: Option<&PairStore>,
        executor: &mut dyn PairExecutor,
        progress: &mut dyn FnMut(GridEvent<'_>),
    ) -> Result<Vec<PairOutcome>> {
        let total = plan.jobs.len();
        let mut outcomes: Vec<Option<PairOutcome>> = vec![None; total];
        let mut pending = Vec::new();
        for (k, job) in plan.jobs.iter().enumerate() {
            match store.and_then(|s| s.load(&job.digest)) {
                // The digest covers the inputs' contents and the settings, not where they sit in
                // this grid's lists (two identical networks share one pair file).
                Some(p) => {
                    outcomes[k] = Some(PairOutcome {
                        network: job.network,
                        subject: job.subject,
                        subject_name: plan.subjects[job.subject].clone(),
                        ..p
                    })
                }
                None => pending.push(job.clone()),
            }
        }
        let resumed = total - pending.len();
        progress(GridEvent::Planned { done: resumed, total });
        let t0 = Instant::now();
        let mut failures: Vec<String> = Vec::new();
        let mut fitted = 0usize;
        let mut finish = |job: &PairJob, result: Result<PairOutcome>| {
            // Every outcome goes through its JSON, as one from another process would.
            let result = result
                .and_then(|p| PairOutcome::from_json(&p.to_json(), "pair outcome"))
                .and_then(|p| check_outcome(&p, job).map(|_| p));
            let result = match (result, store) {
                (Ok(p), Some(s)) => s.save(&p).map(|_| p),
                (r, _) => r,
            };
            let ok = result.is_ok();
            match result {
                Ok(p) => {
                    if let Some(k) = plan.jobs.iter().position(|j| j == job) {
                        outcomes[k] = Some(p);
                    }
                }
                Err(e) => failures.push(format!(
                    "{} × {}: {e}",
                    self.networks[job.network].display(),
                    plan.subjects[job.subject]
                )),
            }
            fitted += 1;
            let done = resumed + fitted;
            let per_pair = t0.elapsed().as_secs_f64() / fitted as f64;
            progress(GridEvent::Finished {
                job,
                subject: &plan.subjects[job.subject],
                ok,
                done,
                total,
                seconds_left: Some(per_pair * (total - done) as f64),
            });
        };
        if !pending.is_empty() {
            executor.execute(self, plan, &pending, &mut finish);
        }
        if !failures.is_empty() {
            return Err(Error::invalid(format!(
                "{} of {total} pairs failed (the others are {}): {}",
                failures.len(),
                if store.is_some() { "saved; rerun to retry only the failed ones" } else { "lost without --out" },
                failures.join("; ")
            )));
        }
        let mut all: Vec<PairOutcome> = Vec::with_capacity(total);
        for (k, o) in outcomes.into_iter().enumerate() {
            let job = &plan.jobs[k];
            all.push(o.ok_or_else(|| {
                Error::invalid(format!(
                    "the executor returned no outcome for {} × {}",
                    self.networks[job.network].display(),
                    plan.subjects[job.subject]
                ))
            })?);
        }
        all.sort_by_key(|p| (p.network, p.subject));
        Ok(all)
    }
}

/// An outcome must be the pair it claims to be.
fn check_outcome(p: &PairOutcome, job: &PairJob) -> Result<()> {
    if p.network != job.network || p.subject != job.subject || p.digest != job.digest {
        return Err(Error::invalid(format!(
            "an outcome for network {} × subject {} came back for network {} × subject {}",
            p.network, p.subject, job.network, job.subject
        )));
    }
    Ok(())
}

/// The brain's `subject` metadata, else the file's stem, made unique.
fn subject_names(headers: &[BrainHeader], paths: &[PathBuf]) -> Vec<String> {
    unique(headers.iter().zip(paths).map(|(b, p)| {
        b.subject.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| {
            p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "subject".into())
        })
    }))
}

/// Names made unique by appending ` #k` to repeats (k = 2, 3, ...).
pub fn unique(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for base in names {
        let mut name = base.clone();
        let mut k = 2;
        while out.contains(&name) {
            name = format!("{base} #{k}");
            k += 1;
        }
        out.push(name);
    }
    out
}

/// Called before each pair with the pair and its subject's name.
pub type OnPairStart<'a> = &'a mut dyn FnMut(&PairJob, &str);

/// Runs pairs in this process, one after another, each brain loaded once for all its networks
/// (the plan is subject-major). `on_event` receives each fit's epochs (or ridge layers);
/// `on_start` is called before each pair.
pub struct Serial<'a> {
    /// Called before each pair with the pair and its subject's name.
    pub on_start: Option<OnPairStart<'a>>,
    /// Receives each fit's epochs (or ridge layers).
    pub on_event: Option<&'a mut dyn FnMut(crate::engine::FitEvent<'_>)>,
}

impl PairExecutor for Serial<'_> {
    /// Runs `jobs`, calling `done` once per job as each finishes.
    fn execute(&mut self, grid: &Grid, plan: &GridPlan, jobs: &[PairJob], done: &mut dyn FnMut(&PairJob, Result<PairOutcome>)) {
        let mut loaded: Option<(usize, Brain)> = None;
        for job in jobs {
            if loaded.as_ref().map(|(s, _)| *s) != Some(job.subject) {
                // Drop the previous brain before reading the next. A brain that fails to load
                // is tried again for each of its pairs, which fail with the same error.
                loaded = None;
                match Brain::load(&grid.brains[job.subject]) {
                    Ok(b) => loaded = Some((job.subject, b)),
                    Err(e) => {
                        done(job, Err(e));
                        continue;
                    }
                }
            }
            if let Some(cb) = self.on_start.as_mut() {
                cb(job, &plan.subjects[job.subject]);
            }
            let Some((_, brain)) = &loaded else { unreachable!("a brain was loaded just above") };
            let events: OnEvent<'_> = match self.on_event.as_mut() {
                Some(cb) => Some(&mut **cb),
                None => None,
            };
            let result = grid.fit_with(plan, job, brain, events);
            done(job, result);
        }
    }
}
