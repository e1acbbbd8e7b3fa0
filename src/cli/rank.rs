//! `factortopy rank`: fit several networks against one brain (same split and seed), print one
//! row per network sorted by the alignment slope, with the slope's interval, its permutation
//! p-value and a paired test against the next row, and exit with status 3 when the best network
//! is below `--min-slope` (a CI gate; `--gate lower` compares the interval's lower bound).

use std::path::PathBuf;

use clap::Args;

use crate::cli::fit::parse_method;
use crate::cli::progress::FitProgress;
use crate::cli::train_args::{check_flags, describe_schedule, DeviceArgs, TrainArgs};
use crate::data::{Brain, FeatureSource};
use crate::error::{Error, Result};
use crate::cli::uncertainty::UncertaintyArgs;
use crate::engine::Method;
use crate::rank::{rank_with_progress, RankConfig, RankFormat, RankGate};

/// Exit status when the best network is below `--min-slope`.
pub const GATE_FAILED: i32 = 3;

fn parse_format(s: &str) -> std::result::Result<RankFormat, String> {
    s.parse::<RankFormat>().map_err(|e| match e {
        Error::InvalidArgument(m) => m,
        other => other.to_string(),
    })
}

fn parse_gate(s: &str) -> std::result::Result<RankGate, String> {
    s.parse::<RankGate>().map_err(|e| match e {
        Error::InvalidArgument(m) => m,
        other => other.to_string(),
    })
}

/// Rank networks by how brain-like their hierarchy is.
///
/// Every features file is fitted against the same brain with the same split and seed. The rows
/// (name from the file's `model` metadata, slope with its bootstrap interval and permutation
/// p-value, b0, b1, Spearman, mean and median held-out R², noise-normalised accuracy where the
/// brain has a noise ceiling, fit time, and a paired bootstrap test of the slope difference with
/// the next row) are sorted by slope, best first. Exit status 3 when the best slope (or, with
/// --gate lower, its interval's lower bound) is below --min-slope.
#[derive(Args, Debug)]
pub struct RankArgs {
    /// Brain file (safetensors, DESIGN §2).
    #[arg(long)]
    pub brain: PathBuf,
    /// Features files, one per network.
    #[arg(required = true, value_name = "FEATURES")]
    pub features: Vec<PathBuf>,
    /// Fail (exit status 3) when the best network's slope is below this.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub min_slope: Option<f64>,
    /// What --min-slope is compared with: point (the best slope) or lower (the lower bound of
    /// its bootstrap interval: the slope must be above the threshold beyond the noise).
    #[arg(long, value_name = "GATE", default_value = "point", value_parser = parse_gate)]
    pub gate: RankGate,
    /// Output format: table, json or markdown.
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = parse_format)]
    pub format: RankFormat,
    /// How each network is fitted: factortopy (the encoder) or ridge (layer-wise ridge baseline).
    #[arg(long, value_name = "METHOD", default_value = "factortopy", value_parser = parse_method)]
    pub method: Method,
    /// Also write rank.json, one report per network and roi_depth.png (mean depth per ROI, one
    /// line per network) into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
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
}

pub fn run(a: RankArgs) -> Result<i32> {
    if let Some(m) = a.min_slope {
        if !m.is_finite() {
            return Err(Error::invalid(format!("--min-slope must be finite, got {m}")));
        }
    }
    let mut cfg = RankConfig { estimator: check_flags(a.method, &a.device, &a.train, a.weighted, &a.uncertainty)? };
    if a.gate == RankGate::Lower && a.min_slope.is_some() && cfg.estimator.uncertainty.bootstrap.n_resamples == 0 {
        return Err(Error::invalid("--gate lower needs intervals: --bootstrap must be positive"));
    }
    let brain = Brain::load(&a.brain)?;
    // Every network is fitted with the schedule for this probe-set size.
    cfg.estimator.fit = crate::model::FitConfig { store: a.device.store, ..a.train.config(brain.n_images()) };
    if a.method == Method::Factortopy && !a.quiet {
        eprintln!("{}", describe_schedule(a.train.preset, &cfg.estimator.fit));
    }
    let mut networks = Vec::with_capacity(a.features.len());
    for path in &a.features {
        // Headers only: each network's values are read when it is fitted, so one network is in
        // memory at a time.
        let f = crate::data::FeatureFile::open(path)?;
        crate::data::check_pair(&f, &path.display().to_string(), &brain, &a.brain.display().to_string())?;
        networks.push(f);
    }
    crate::data::limits::held_out("--val-fraction", brain.n_images(), cfg.estimator.fit.val_fraction)?;
    // Inputs checked; the destination before the fits (a failure from here on removes a folder
    // this run created while it is still empty).
    let out_dir = a.out.as_deref().map(crate::data::OutputDir::prepare).transpose()?;
    let refs: Vec<&dyn crate::data::FeatureSource> = networks.iter().map(|f| f as &dyn crate::data::FeatureSource).collect();
    let total = refs.len();
    let quiet = a.quiet;
    // One bar (terminal) or one line per epoch (otherwise) for each network's fit, prefixed with
    // the network; nothing with --quiet.
    let progress = std::cell::RefCell::new(FitProgress::stderr(quiet));
    progress.borrow_mut().set_ridge_layers(networks.first().map_or(0, |f| f.n_layers()));
    let mut cb = |i: usize, name: &str| {
        let mut p = progress.borrow_mut();
        p.message(&format!("[{}/{total}] fitting {name} ({})", i + 1, a.features[i].display()));
        p.set_prefix(format!("[{}/{total}] ", i + 1));
        p.set_ridge_layers(refs[i].n_layers());
        p.restart();
    };
    let mut events = |e: crate::engine::FitEvent<'_>| progress.borrow_mut().event(e);
    let ranking =
        rank_with_progress(&brain, &refs, &cfg, Some(&mut cb), if quiet { None } else { Some(&mut events) })?;
    progress.borrow_mut().end_line();
    for (row, rep) in ranking.rows.iter().zip(&ranking.reports) {
        crate::cli::warn_undefined(&row.name, &rep.hierarchy);
    }
    print!("{}", ranking.render(a.format));
    if let Some(dir) = &a.out {
        let chart = dir.join("roi_depth.png");
        // One set: every report, the chart and rank.json move in together or not at all.
        crate::data::write_into(dir, |stage| {
            for (row, rep) in ranking.rows.iter().zip(&ranking.reports) {
                rep.write_json(&stage.join(format!("report.{}.json", row.index)))?;
            }
            ranking.roi_chart(&stage.join("roi_depth.png"))?;
            let mut json = ranking.to_json();
            json.push('\n');
            crate::data::io::atomic_write(&stage.join("rank.json"), json.as_bytes())
        })?;
        if !quiet {
            eprintln!("wrote {} and {}", dir.join("rank.json").display(), chart.display());
        }
    }
    if let Some(d) = out_dir {
        d.keep();
    }
    if !ranking.passes(a.min_slope, a.gate) {
        let best = ranking.best().map(|b| b.name.clone());
        let value = ranking.gated_value(a.gate);
        if let (Some(name), Some(m)) = (best, a.min_slope) {
            let what = match a.gate {
                RankGate::Point => "slope",
                RankGate::Lower => "slope interval's lower bound",
            };
            match value {
                Some(x) => eprintln!("gate failed: the best network ({name}) has {what} {x:.3}, below --min-slope {m}"),
                None if ranking.best().is_some_and(|b| b.slope.is_none()) => eprintln!(
                    "gate failed: no network has a defined hierarchy slope (see the warnings above); --min-slope {m} cannot be reached"
                ),
                None => eprintln!("gate failed: the best network ({name}) has no slope interval to gate on"),
            }
        }
        return Ok(GATE_FAILED);
    }
    Ok(0)
}
