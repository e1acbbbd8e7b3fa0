//! `factortopy monitor`: replay the saved features of successive checkpoints against the
//! reference network and write the forgetting history and curves (DESIGN §5).

use std::path::PathBuf;

use clap::Args;

use crate::cli::progress::FitProgress;
use crate::cli::train_args::{describe_schedule, DeviceArgs, TrainArgs, FLAG_CHECK_IMAGES};
use crate::data::{Brain, FeatureSource};
use crate::error::{Error, Result};
use crate::monitor::{Monitor, MonitorConfig};

/// Replay checkpoints' probe-set features against the network before fine-tuning.
///
/// Fits the reference encoder on --reference (or loads --encoder), observes the reference itself
/// as step 0 and then each checkpoint in order, and writes DIR/history.jsonl (one JSON object
/// per observation), DIR/forgetting.png (forgetting over steps, overall and per ROI),
/// DIR/cka.png (per-layer CKA against the reference) and DIR/monitor.safetensors (the monitor
/// state, loadable to continue).
#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Brain file (safetensors, DESIGN §2).
    #[arg(long)]
    pub brain: PathBuf,
    /// Features of the network before fine-tuning (step 0).
    #[arg(long)]
    pub reference: PathBuf,
    /// Output directory (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Features files of successive checkpoints, in training order.
    #[arg(required = true, value_name = "FEATURES")]
    pub checkpoints: Vec<PathBuf>,
    /// Use this saved reference encoder (from `factortopy fit`) instead of fitting one.
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    /// Training steps of the checkpoints, comma-separated (default 1, 2, 3, ...).
    #[arg(long, value_delimiter = ',', value_name = "STEPS")]
    pub steps: Vec<u64>,
    /// Refit the encoder every this many observations (0 = never).
    #[arg(long, default_value_t = 0)]
    pub refit_every: usize,
    /// Optimiser steps of one refit.
    #[arg(long, default_value_t = MonitorConfig::default().refit_max_steps)]
    pub refit_steps: usize,
    /// Time limit of one refit in seconds.
    #[arg(long)]
    pub refit_seconds: Option<f64>,
    /// Forgetting above which `should_stop` is raised.
    #[arg(long, default_value_t = MonitorConfig::default().forgetting_threshold)]
    pub threshold: f64,
    /// Reference fit settings; --val-fraction is the held-out fraction retention is measured on.
    #[command(flatten)]
    pub train: TrainArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Weight the hierarchy line of refits by max(R², 0).
    #[arg(long)]
    pub weighted: bool,
    /// Exit with status 3 if any checkpoint raises `should_stop`.
    #[arg(long)]
    pub fail_on_stop: bool,
    /// No progress of the reference fit (the bar on a terminal, one line per epoch otherwise).
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: MonitorArgs) -> Result<i32> {
    if !a.steps.is_empty() && a.steps.len() != a.checkpoints.len() {
        return Err(Error::invalid(format!(
            "--steps lists {} steps for {} checkpoint files",
            a.steps.len(),
            a.checkpoints.len()
        )));
    }
    // The reference fit's schedule follows the probe-set size, known once the brain is read.
    let config_for = |n_images: usize| {
        let fit = crate::model::FitConfig { store: a.device.store, ..a.train.config(n_images) };
        MonitorConfig {
        held_out_fraction: fit.val_fraction,
        fit,
        refit_every: a.refit_every,
        refit_max_steps: a.refit_steps,
        refit_max_seconds: a.refit_seconds,
        forgetting_threshold: a.threshold,
        weighted: a.weighted,
        device: a.device.device,
    }
    };
    // The held-out fraction is the --val-fraction flag here. Every schedule a preset produces is
    // valid, so the flags are checked before any input is read on a nominal size.
    config_for(FLAG_CHECK_IMAGES).validate_as(&crate::model::FieldNames::CLI)?;
    let brain = Brain::load(&a.brain)?;
    let config = config_for(brain.n_images());
    let reference = crate::data::FeatureFile::open(&a.reference)?;
    crate::data::check_pair(&reference, &a.reference.display().to_string(), &brain, &a.brain.display().to_string())?;
    if a.encoder.is_none() {
        crate::data::limits::held_out("--val-fraction", brain.n_images(), config.held_out_fraction)?;
    }
    // Every checkpoint is loaded and checked against the brain and the reference before --out
    // is touched (one at a time, so memory holds one checkpoint), so a bad file fails fast and
    // leaves the previous outputs alone.
    for path in &a.checkpoints {
        let f = crate::data::FeatureFile::open(path)?;
        let origin = path.display().to_string();
        crate::data::check_pair(&f, &origin, &brain, &a.brain.display().to_string())?;
        crate::monitor::check_same_network(&f, &origin, &reference)?;
    }
    let out_dir = crate::data::OutputDir::prepare(&a.out)?;
    let mut monitor = match &a.encoder {
        Some(p) => Monitor::from_encoder_file(&brain, &reference, p, config)?,
        None => {
            eprintln!(
                "fitting the reference encoder: {} ({} layers), {} voxels, {} images",
                reference.model(),
                reference.n_layers(),
                brain.n_voxels(),
                brain.n_images()
            );
            if !a.quiet {
                eprintln!("{}", describe_schedule(a.train.preset(), &config.fit));
            }
            let mut progress = FitProgress::stderr(a.quiet);
            let mut cb = |p: &crate::model::Progress| progress.epoch(p);
            Monitor::new(&brain, &reference, config, if a.quiet { None } else { Some(&mut cb) })?
        }
    };
    eprintln!(
        "reference encoder: held-out R² {:.4} on {} images",
        monitor.reference_r2(),
        monitor.held_out().len()
    );
    let print = |r: &crate::monitor::StepReport, name: &str| {
        if let Some(f) = &r.refit {
            crate::cli::warn_undefined(&format!("step {} refit", r.step), &f.hierarchy);
        }
        let refit = match &r.refit {
            Some(f) => format!(
                "  refit: shift {:.3}, moved {:.1}%, slope {}",
                f.layer_shift,
                100.0 * f.argmax_moved,
                crate::scores::report::fmt_score(f.hierarchy.slope)
            ),
            None => String::new(),
        };
        println!(
            "step {:>8}  retention {:.4}  forgetting {:.4}  min CKA {:.4}{}{}  ({name})",
            r.step,
            r.retention,
            r.forgetting,
            r.min_cka(),
            if r.should_stop { "  STOP" } else { "" },
            refit
        );
    };
    let r0 = monitor.observe(0, &reference)?;
    print(&r0, &a.reference.display().to_string());
    drop(reference);
    for (k, path) in a.checkpoints.iter().enumerate() {
        let step = a.steps.get(k).copied().unwrap_or(k as u64 + 1);
        let f = crate::data::FeatureFile::open(path)?;
        let r = monitor.observe(step, &f)?;
        print(&r, &path.display().to_string());
    }
    // Only a run that observed every checkpoint writes, and its history, charts and state move
    // in as one set (`write_into`): a failure above or while writing any of them leaves the
    // previous history.jsonl, charts and state as they were.
    let history = a.out.join("history.jsonl");
    crate::data::write_into(&a.out, |stage| {
        monitor.write_history_jsonl(&stage.join("history.jsonl"))?;
        crate::monitor::write_curves(stage, &monitor)?;
        monitor.save(&stage.join("monitor.safetensors"))
    })?;
    out_dir.keep();
    println!("history:    {}", history.display());
    println!("forgetting: {}", a.out.join("forgetting.png").display());
    println!("state:      {}", a.out.join("monitor.safetensors").display());
    let stop = monitor.history().iter().any(|r| r.should_stop);
    Ok(if stop && a.fail_on_stop { 3 } else { 0 })
}
