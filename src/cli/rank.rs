//! `factortopy rank`: fit several networks against one or several subjects' brains (same split
//! and seed), print one row per network sorted by the alignment slope (over several subjects:
//! the mean slope, with a t-interval over subjects and a paired t-test against the next row), and
//! exit with status 3 when the best network is below `--min-slope` (a CI gate; `--gate lower`
//! compares the interval's lower bound). Pairs run in this process or in `--jobs` worker
//! processes; with `--out` each finished pair is kept, so an interrupted grid resumes.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::fit::parse_method;
use crate::cli::progress::FitProgress;
use crate::cli::train_args::{check_flags, describe_schedule, DeviceArgs, TrainArgs};
use crate::cli::rank_workers::Workers;
use crate::data::{BrainHeader, FeatureSource};
use crate::error::{Error, Result};
use crate::cli::uncertainty::UncertaintyArgs;
use crate::engine::Method;
use crate::rank::grid::{Grid, GridEvent, GridPlan, PairJob, Serial};
use crate::rank::pair::PairStore;
use crate::rank::subjects::{combine, GridRanking};
use crate::rank::{RankFormat, RankGate};

/// Exit status when the best network is below `--min-slope`.
pub const GATE_FAILED: i32 = 3;

fn parse_format(s: &str) -> std::result::Result<RankFormat, String> {
    s.parse::<RankFormat>().map_err(|e| match e {
        Error::InvalidArgument { msg, .. } => msg,
        other => other.to_string(),
    })
}

fn parse_gate(s: &str) -> std::result::Result<RankGate, String> {
    s.parse::<RankGate>().map_err(|e| match e {
        Error::InvalidArgument { msg, .. } => msg,
        other => other.to_string(),
    })
}

/// Rank networks by how brain-like their hierarchy is.
///
/// Every features file is fitted against every brain with the same split and seed. With one
/// brain, the rows (name from the file's `model` metadata, slope with its bootstrap interval and
/// permutation p-value, b0, b1, Spearman, mean and median held-out R², noise-normalised accuracy
/// where the brain has a noise ceiling, fit time, and a paired bootstrap test of the slope
/// difference with the next row) are sorted by slope, best first. With several brains (one per
/// subject, the same images), each network gets the mean over subjects of its slope, Spearman,
/// b1 and noise-normalised accuracy with a t-interval over subjects, each subject's own numbers
/// below it, and a paired t-test over subjects against the next row; networks are sorted by mean
/// slope. Exit status 3 when the best slope (or, with --gate lower, its interval's lower bound)
/// is below --min-slope.
#[derive(Args, Debug)]
pub struct RankArgs {
    /// Brain file (safetensors, DESIGN §2); repeat for several subjects (they must share the
    /// images: the same count, and the same `stimulus_ids` where listed).
    #[arg(long, required = true)]
    pub brain: Vec<PathBuf>,
    /// Features files, one per network.
    #[arg(required = true, value_name = "FEATURES")]
    pub features: Vec<PathBuf>,
    /// Fail (exit status 3) when the best network's slope is below this.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub min_slope: Option<f64>,
    /// What --min-slope is compared with: point (the best slope) or lower (the lower bound of
    /// its interval: over several subjects the t-interval over subjects, else the bootstrap
    /// interval; the slope must be above the threshold beyond the noise).
    #[arg(long, value_name = "GATE", default_value = "point", value_parser = parse_gate)]
    pub gate: RankGate,
    /// Output format: table, json or markdown.
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = parse_format)]
    pub format: RankFormat,
    /// How each network is fitted: factortopy (the encoder) or ridge (layer-wise ridge baseline).
    #[arg(long, value_name = "METHOD", default_value = "factortopy", value_parser = parse_method)]
    pub method: Method,
    /// Also write rank.json, one report per pair and roi_depth.png (mean depth per ROI, one
    /// line per network; one picture per subject) into this directory, and keep each finished
    /// pair under DIR/pairs as it finishes: rerunning with the same --out skips the pairs whose
    /// inputs and settings have not changed.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Fit pairs in this many worker processes at once (each pair entirely in one worker, with
    /// its share of the cores); the output is the same for every value.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub jobs: usize,
    /// Also score every layer on its own with the layer-wise ridge baseline (same split) and
    /// report its held-out R² per ROI, to show which layers carry the signal (free with
    /// --method ridge, one ridge fit per pair otherwise).
    #[arg(long)]
    pub with_layers: bool,
    #[command(flatten)]
    pub train: TrainArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub uncertainty: UncertaintyArgs,
    /// Weight the hierarchy line by max(R², 0).
    #[arg(long)]
    pub weighted: bool,
    /// No progress (the bar on a terminal, one line per epoch or ridge layer otherwise).
    #[arg(long)]
    pub quiet: bool,
    /// Internal: fit the one pair `NETWORK:SUBJECT:DIGEST` and write its outcome to
    /// --worker-out (how `--jobs` runs pairs in worker processes).
    #[arg(long, hide = true, value_name = "PAIR")]
    pub worker_pair: Option<String>,
    #[arg(long, hide = true, value_name = "FILE", requires = "worker_pair")]
    pub worker_out: Option<PathBuf>,
}

/// Most worker processes `--jobs` starts.
pub const MAX_JOBS: usize = 256;

pub fn run(a: RankArgs) -> Result<i32> {
    if let Some(m) = a.min_slope {
        if !m.is_finite() {
            return Err(Error::invalid_arg("--min-slope", format!("--min-slope must be finite, got {m}")));
        }
    }
    if a.jobs == 0 || a.jobs > MAX_JOBS {
        return Err(Error::invalid_arg("--jobs", format!("--jobs must be between 1 and {MAX_JOBS}, got {}", a.jobs)));
    }
    let mut estimator = check_flags(a.method, &a.device, &a.train, a.weighted, &a.uncertainty)?;
    if a.gate == RankGate::Lower && a.min_slope.is_some() && estimator.uncertainty.bootstrap.n_resamples == 0 && a.brain.len() < 2 {
        return Err(Error::invalid("--gate lower needs intervals: --bootstrap must be positive, or several --brain subjects"));
    }
    let header = BrainHeader::read(&a.brain[0])?;
    // Every pair is fitted with the schedule for this probe-set size (every brain has it).
    estimator.fit = crate::model::FitConfig { store: a.device.store, ..a.train.config(header.n_images) };
    crate::data::limits::held_out("--val-fraction", header.n_images, estimator.fit.val_fraction)?;
    let grid = Grid { networks: a.features.clone(), brains: a.brain.clone(), estimator, with_layers: a.with_layers };
    if let Some(spec) = &a.worker_pair {
        let out = a.worker_out.as_deref().ok_or_else(|| Error::invalid("--worker-pair needs --worker-out"))?;
        return worker(&grid, spec, out).map(|_| 0);
    }
    if a.method == Method::Factortopy && !a.quiet {
        eprintln!("{}", describe_schedule(a.train.preset(), &grid.estimator.fit));
    }
    let plan = grid.plan()?;
    // Inputs checked; the destination before the fits (a failure before any pair is kept
    // removes a folder this run created).
    let mut out_dir = a.out.as_deref().map(crate::data::OutputDir::prepare).transpose()?;
    let store = a.out.as_deref().map(PairStore::new);
    let total = plan.jobs.len();
    let quiet = a.quiet;
    let label = |job: &PairJob| {
        let net = a.features[job.network].display();
        if a.brain.len() > 1 { format!("{net} × {}", plan.subjects[job.subject]) } else { net.to_string() }
    };
    let progress = std::cell::RefCell::new(FitProgress::stderr(quiet || a.jobs > 1));
    let mut on_grid = |e: GridEvent<'_>| match e {
        GridEvent::Planned { done, total } if done > 0 && !quiet => {
            eprintln!("resuming: {done} of {total} pairs already finished in {}", a.out.as_deref().unwrap_or(Path::new(".")).display())
        }
        GridEvent::Finished { job, ok, done, total, seconds_left, .. } if !quiet && (a.jobs > 1 || total > 1) => {
            progress.borrow_mut().end_line();
            let left = match seconds_left {
                Some(s) if done < total => format!(", about {} left", human_seconds(s / a.jobs.min(total - done).max(1) as f64)),
                _ => String::new(),
            };
            eprintln!("[pairs {done}/{total}] {} {}{left}", label(job), if ok { "done" } else { "FAILED" });
        }
        _ => {}
    };
    let result = if a.jobs == 1 {
        progress.borrow_mut().set_ridge_layers(0);
        let mut on_start = |job: &PairJob, _subject: &str| {
            let mut p = progress.borrow_mut();
            let k = plan.jobs.iter().position(|j| j == job).unwrap_or(0);
            p.message(&format!("[{}/{total}] fitting {}", k + 1, label(job)));
            p.set_prefix(format!("[{}/{total}] ", k + 1));
            if let Ok(f) = crate::data::FeatureFile::open(&a.features[job.network]) {
                p.set_ridge_layers(f.n_layers());
            }
            p.restart();
        };
        let mut events = |e: crate::engine::FitEvent<'_>| progress.borrow_mut().event(e);
        let mut exec = Serial { on_start: Some(&mut on_start), on_event: if quiet { None } else { Some(&mut events) } };
        grid.run(&plan, store.as_ref(), &mut exec, &mut on_grid)
    } else {
        let mut exec = Workers::new(a.jobs)?;
        grid.run(&plan, store.as_ref(), &mut exec, &mut on_grid)
    };
    progress.borrow_mut().end_line();
    // Finished pairs are worth keeping even when others failed: a rerun resumes from them.
    if store.as_ref().is_some_and(|s| s.has_any()) {
        if let Some(d) = out_dir.take() {
            d.keep();
        }
    }
    let ranking = combine(&result?)?;
    for r in ranking.per_subject() {
        for (row, rep) in r.rows.iter().zip(&r.reports) {
            crate::cli::warn_undefined(&row.name, &rep.hierarchy);
        }
    }
    print!("{}", ranking.render(a.format));
    if let Some(dir) = &a.out {
        write_outputs(&ranking, dir, quiet)?;
    }
    if let Some(d) = out_dir {
        d.keep();
    }
    if !ranking.passes(a.min_slope, a.gate) {
        if let (Some(name), Some(m)) = (ranking.best_name(), a.min_slope) {
            let what = match (a.gate, a.brain.len() > 1) {
                (RankGate::Point, false) => "slope",
                (RankGate::Point, true) => "mean slope over subjects",
                (RankGate::Lower, false) => "slope interval's lower bound",
                (RankGate::Lower, true) => "lower bound of the slope's interval over subjects",
            };
            match ranking.gated_value(a.gate) {
                Some(x) => eprintln!("gate failed: the best network ({name}) has {what} {x:.3}, below --min-slope {m}"),
                None if ranking.best_undefined() => eprintln!(
                    "gate failed: no network has a defined hierarchy slope (see the warnings above); --min-slope {m} cannot be reached"
                ),
                None => eprintln!("gate failed: the best network ({name}) has no slope interval to gate on"),
            }
        }
        return Ok(GATE_FAILED);
    }
    Ok(0)
}

/// `12 s`, `3 min`, `2.5 h`.
fn human_seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// rank.json, each pair's report and the per-ROI depth chart(s).
fn write_outputs(ranking: &GridRanking, dir: &Path, quiet: bool) -> Result<()> {
    let per = ranking.per_subject();
    let several = per.len() > 1;
    let charts: Vec<PathBuf> = (0..per.len())
        .map(|s| dir.join(if several { format!("roi_depth.s{s}.png") } else { "roi_depth.png".to_string() }))
        .collect();
    // One set: every report, the charts and rank.json move in together or not at all.
    crate::data::write_into(dir, |stage| {
        for (s, r) in per.iter().enumerate() {
            for (row, rep) in r.rows.iter().zip(&r.reports) {
                let name =
                    if several { format!("report.{}.s{s}.json", row.index) } else { format!("report.{}.json", row.index) };
                rep.write_json(&stage.join(name))?;
            }
            r.roi_chart(&stage.join(charts[s].file_name().expect("a chart has a file name")))?;
        }
        let mut json = ranking.to_json();
        json.push('\n');
        crate::data::io::atomic_write(&stage.join("rank.json"), json.as_bytes())
    })?;
    if !quiet {
        let names: Vec<String> = charts.iter().map(|c| c.display().to_string()).collect();
        eprintln!("wrote {} and {}", dir.join("rank.json").display(), names.join(", "));
    }
    Ok(())
}

/// A worker process: fits one pair and writes its outcome.
fn worker(grid: &Grid, spec: &str, out: &Path) -> Result<()> {
    let bad = || Error::invalid(format!("--worker-pair `{spec}`: expected NETWORK:SUBJECT:DIGEST"));
    let mut parts = spec.splitn(3, ':');
    let network: usize = parts.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let subject: usize = parts.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let digest = parts.next().ok_or_else(bad)?.to_string();
    if network >= grid.networks.len() || subject >= grid.brains.len() {
        return Err(bad());
    }
    let plan = GridPlan { subjects: grid.subject_names()?, jobs: Vec::new() };
    let outcome = grid.fit_one(&plan, &PairJob { network, subject, digest }, None)?;
    crate::data::io::atomic_write(out, outcome.to_json().as_bytes())
}
