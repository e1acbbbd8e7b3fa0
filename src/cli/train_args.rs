//! Settings shared by every subcommand that fits or predicts: the training flags (`TrainArgs`,
//! with presets), the device (`DeviceArgs`) and the progress lines.

use crate::cli::uncertainty::UncertaintyArgs;
use crate::engine::{Device, Estimator, FitEvent, Method};
use crate::model::{FitConfig, Progress, Resample};
use clap::Args;

/// The device flag of every command that fits or predicts.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where to run: `cpu` or `cuda:N` (a build with `--features cuda` and an NVIDIA driver).
    #[arg(long, value_name = "DEVICE", default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
}

/// Only the syntax is checked here; whether the device can be used is the engine's check
/// (`Estimator::validate`), which gives the same one-line error from every entry point.
fn parse_device(s: &str) -> std::result::Result<Device, String> {
    Device::parse_syntax(s).map_err(|e| e.to_string())
}

/// Named starting points for the training settings.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// DESIGN §3.5: lr 1e-3, batch 8, regulariser over 2000 steps (large probe sets), and
    /// §3.1's bilinear resampling: the paper's settings, reproducing earlier reports exactly.
    Design,
    /// lr 1e-2, batch 32, regulariser over 300 steps (probe sets of a few thousand images);
    /// `auto` resampling.
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
    /// How each layer's map is resized to the grid: `bilinear` (DESIGN §3.1, the `design`
    /// preset's), `area` (exact average of the pixels each cell covers) or `auto` (area where a
    /// map shrinks, bilinear where it grows; every other preset's). Saved with the encoder.
    #[arg(long, value_name = "METHOD", value_parser = parse_resample)]
    pub resample: Option<Resample>,
}

fn parse_resample(s: &str) -> std::result::Result<Resample, String> {
    Resample::parse(s).map_err(|e| match e {
        crate::error::Error::InvalidArgument(m) => m,
        other => other.to_string(),
    })
}

impl TrainArgs {
    pub fn config(&self) -> FitConfig {
        let base = match self.preset {
            Preset::Design => FitConfig::design(),
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
            resample: self.resample.unwrap_or(base.resample),
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


/// The estimator of a command: method, device, training flags, hierarchy weighting and the
/// uncertainty flags.
pub fn estimator(
    method: Method,
    device: &DeviceArgs,
    train: &TrainArgs,
    weighted: bool,
    uncertainty: &UncertaintyArgs,
) -> Estimator {
    Estimator { weighted, uncertainty: uncertainty.config(), ..Estimator::new(method, device.device, train.config()) }
}

/// Prints one progress line per epoch (FactorTopy) or layer (ridge) on stderr.
pub fn print_event(e: FitEvent<'_>) {
    match e {
        FitEvent::Epoch(p) => print_progress(p),
        FitEvent::RidgeLayer(s) => eprintln!(
            "layer {:>2} ({}, {} features): mean CV score {:.4}  mean held-out R² {:.4}  {:.1} s",
            s.layer, s.name, s.width, s.mean_cv_score, s.mean_val_r2, s.seconds
        ),
    }
}
