//! `factortopy fit`: fit the encoder, write the report, the encoder, the selectors and the map.

use crate::cli::load_inputs;
use crate::error::Result;
use crate::model::{FitConfig, Progress};
use crate::pipeline::{fit_report, write_fit_outputs};
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
    /// Weight the hierarchy line by max(R², 0).
    #[arg(long)]
    pub weighted: bool,
    /// No per-epoch progress lines.
    #[arg(long)]
    pub quiet: bool,
}

/// Training settings shared by every subcommand that fits.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Maximum number of epochs.
    #[arg(long, default_value_t = FitConfig::default().max_epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = FitConfig::default().batch_size)]
    pub batch_size: usize,
    #[arg(long, default_value_t = FitConfig::default().lr)]
    pub lr: f64,
    #[arg(long, default_value_t = FitConfig::default().weight_decay)]
    pub weight_decay: f64,
    /// Bottleneck width D.
    #[arg(long = "dim", default_value_t = FitConfig::default().d)]
    pub d: usize,
    /// Local grid G.
    #[arg(long, default_value_t = FitConfig::default().grid)]
    pub grid: usize,
    #[arg(long, default_value_t = FitConfig::default().val_fraction)]
    pub val_fraction: f64,
    /// Epochs without improvement before stopping.
    #[arg(long, default_value_t = FitConfig::default().patience)]
    pub patience: usize,
    /// Optimiser steps over which the warm-up regulariser fades.
    #[arg(long, default_value_t = FitConfig::default().reg_steps)]
    pub reg_steps: usize,
}

impl TrainArgs {
    pub fn config(&self) -> FitConfig {
        FitConfig {
            seed: self.seed,
            max_epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            d: self.d,
            grid: self.grid,
            val_fraction: self.val_fraction,
            patience: self.patience,
            reg_steps: self.reg_steps,
            ..FitConfig::default()
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
    // Check the destination first so a long fit never ends in an unwritable directory.
    crate::data::io::ensure_output_dir(&a.out)?;
    let (features, brain) = load_inputs(&a.features, &a.brain)?;
    let cfg = a.train.config();
    eprintln!(
        "fitting {} ({} layers) to {} voxels on {} images",
        features.model,
        features.n_layers(),
        brain.n_voxels(),
        brain.n_images()
    );
    let mut cb = print_progress;
    let job = fit_report(&features, &brain, &cfg, a.weighted, if a.quiet { None } else { Some(&mut cb) })?;
    let out = write_fit_outputs(&a.out, &job, &brain)?;
    println!("{}", job.report.headline());
    println!("report:    {}", out.report.display());
    println!("layer map: {}", out.layer_map.display());
    println!("encoder:   {}", out.encoder.display());
    println!("selectors: {}", out.selectors.display());
    Ok(0)
}
