//! `factortopy fit`: fit the encoder, write the report, the encoder, the selectors and the map.

use crate::cli::load_inputs;
use crate::error::Result;
use crate::model::{FitConfig, Progress};
use crate::cli::uncertainty::UncertaintyArgs;
use crate::pipeline::{fit_report_seeds, write_fit_outputs_with};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct FitArgs {
    /// Features file (safetensors, DESIGN §2).
    #[arg(long)]
    pub features: PathBuf,
    /// Brain file (safetensors, DESIGN §2).
    #[arg(long)]
    pub brain: PathBuf,
    /// Output directory (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Fitting method: factortopy (the encoder) or ridge (layer-wise ridge baseline).
    #[arg(long, value_enum, default_value_t = crate::cli::fit_ridge::Method::Factortopy)]
    pub method: crate::cli::fit_ridge::Method,
    #[command(flatten)]
    pub ridge: crate::cli::fit_ridge::RidgeArgs,
    /// Weight the hierarchy line by max(R², 0).
    #[arg(long)]
    pub weighted: bool,
    #[command(flatten)]
    pub uncertainty: UncertaintyArgs,
    /// Refit with K seeds (--seed, --seed + 1, ...) and report the spread of every headline
    /// number across them; the outputs are the first seed's fit.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub seeds: usize,
    /// No per-epoch progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Write no pictures (the maps and overview.png; `factortopy plot` draws them later).
    #[arg(long)]
    pub no_plots: bool,
}

/// Named starting points for the training settings.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// DESIGN §3.5: lr 1e-3, batch 8, regulariser over 2000 steps (large probe sets).
    Design,
    /// lr 1e-2, batch 32, regulariser over 300 steps (probe sets of a few thousand images).
    Fast,
}

/// Training settings shared by every subcommand that fits. Flags override the preset.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Starting point for the settings below.
    #[arg(long, value_enum, default_value_t = Preset::Design)]
    pub preset: Preset,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Maximum number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Bottleneck width D.
    #[arg(long = "dim")]
    pub d: Option<usize>,
    /// Local grid G.
    #[arg(long)]
    pub grid: Option<usize>,
    /// Fraction of images held out for validation and scoring.
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Epochs without improvement (after the regulariser has faded) before stopping.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Optimiser steps over which the warm-up regulariser fades.
    #[arg(long)]
    pub reg_steps: Option<usize>,
}

impl TrainArgs {
    pub fn config(&self) -> FitConfig {
        let base = match self.preset {
            Preset::Design => FitConfig::default(),
            Preset::Fast => FitConfig::fast(),
        };
        FitConfig {
            seed: self.seed,
            max_epochs: self.epochs.unwrap_or(base.max_epochs),
            batch_size: self.batch_size.unwrap_or(base.batch_size),
            lr: self.lr.unwrap_or(base.lr),
            weight_decay: self.weight_decay.unwrap_or(base.weight_decay),
            d: self.d.unwrap_or(base.d),
            grid: self.grid.unwrap_or(base.grid),
            val_fraction: self.val_fraction.unwrap_or(base.val_fraction),
            patience: self.patience.unwrap_or(base.patience),
            reg_steps: self.reg_steps.unwrap_or(base.reg_steps),
            ..base
        }
    }
}

pub fn print_progress(p: &Progress) {
    eprintln!(
        "epoch {:>3}/{}  step {:>6}  loss {:.4}  val R² {:.4}  (best {:.4} at epoch {})  {:.1} s",
        p.epoch, p.max_epochs, p.step, p.train_loss, p.val_r2, p.best_val_r2, p.best_epoch, p.seconds
    );
}

pub fn run(a: FitArgs) -> Result<i32> {
    if a.seeds == 0 {
        return Err(crate::error::Error::invalid("--seeds must be at least 1"));
    }
    if a.method == crate::cli::fit_ridge::Method::Ridge {
        if a.seeds > 1 {
            return Err(crate::error::Error::invalid("--seeds applies to the factortopy method (the ridge baseline has no random initialisation)"));
        }
        return crate::cli::fit_ridge::run(&a.features, &a.brain, &a.out, &a.train, a.weighted, a.quiet, &a.ridge, a.uncertainty.config());
    }
    let (features, brain) = load_inputs(&a.features, &a.brain)?;
    // Check the destination before fitting so a long fit never ends in an unwritable directory,
    // but after validating the inputs so bad inputs leave nothing behind.
    crate::data::io::ensure_output_dir(&a.out)?;
    let cfg = a.train.config();
    eprintln!(
        "fitting {} ({} layers) to {} voxels on {} images",
        features.model,
        features.n_layers(),
        brain.n_voxels(),
        brain.n_images()
    );
    let unc = a.uncertainty.config();
    unc.validate()?;
    let mut cb = print_progress;
    let quiet = a.quiet;
    let mut seed_cb = |seed: u64, r: &crate::scores::Report| {
        if !quiet {
            eprintln!("seed {seed}: slope {:.3}  spearman {:.3}  mean R² {:.4}", r.hierarchy.slope, r.hierarchy.spearman, r.r2.mean);
        }
    };
    let job = fit_report_seeds(
        &features,
        &brain,
        &cfg,
        a.weighted,
        &unc,
        a.seeds,
        if a.quiet { None } else { Some(&mut cb) },
        Some(&mut seed_cb),
    )?;
    let plots = crate::plot::PlotOptions::default();
    let out = write_fit_outputs_with(&a.out, &job, &brain, (!a.no_plots).then_some(&plots))?;
    println!("{}", job.report.headline());
    println!("report:    {}", out.report.display());
    for p in &out.pictures {
        println!("picture:   {}", p.display());
    }
    println!("encoder:   {}", out.encoder.display());
    println!("selectors: {}", out.selectors.display());
    Ok(0)
}
