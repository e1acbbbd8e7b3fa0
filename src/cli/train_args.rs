//! Settings shared by every subcommand that fits or predicts: the training flags (`TrainArgs`,
//! with presets), the device (`DeviceArgs`) and the schedule line.

use crate::cli::uncertainty::UncertaintyArgs;
use crate::data::Precision;
use crate::engine::{Device, Estimator, Method};
use crate::error::{Error, Result};
use crate::model::{FieldNames, FitConfig, Preset, Resample};
use clap::Args;

/// Where a command that fits or predicts runs, and how it holds the features there.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where to run: `cpu` or `cuda:N` (a build with `--features cuda` and an NVIDIA driver).
    #[arg(long, value_name = "DEVICE", default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Precision the features are kept in: f32, f16 or bf16 (default: the precision of the
    /// features file, so 16-bit files stay 16-bit). f16 halves an f32 file's memory; values are
    /// widened to f32 where they are multiplied.
    #[arg(long, value_name = "PRECISION", value_parser = parse_precision)]
    pub store: Option<Precision>,
}

fn parse_precision(s: &str) -> std::result::Result<Precision, String> {
    s.parse::<Precision>().map_err(|e| e.to_string())
}

/// Only the syntax is checked here; whether the device can be used is the engine's check
/// (`Estimator::validate`), which gives the same one-line error from every entry point.
fn parse_device(s: &str) -> std::result::Result<Device, String> {
    Device::parse_syntax(s).map_err(|e| e.to_string())
}

fn parse_preset(s: &str) -> std::result::Result<Preset, String> {
    s.parse::<Preset>().map_err(|e| e.to_string())
}

/// Training settings shared by every subcommand that fits. Flags override the preset.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Starting point for the settings below: auto (the default: lr 1e-2, batch 32, warm-up over
    /// 150 steps; patience and epochs follow the number of probe images), design (DESIGN §3.5 exactly: lr
    /// 1e-3, batch 8, warm-up over 2000 steps, for ~10 000 images) or fast (lr 1e-2, batch 32,
    /// warm-up over 300 steps).
    #[arg(long, value_name = "PRESET", value_parser = parse_preset)]
    pub preset: Option<Preset>,
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
    /// The units each layer's features are fitted in: `common` (every layer's local maps and
    /// global tokens scaled to a root mean square of 1 over the probe set, so that a layer's
    /// units cannot decide which voxels choose it; every preset's but `design`) or `raw` (as
    /// they come, DESIGN §3). Saved with the encoder.
    #[arg(long, value_name = "UNITS", value_parser = ["common", "raw"])]
    pub layer_units: Option<String>,
}

fn parse_resample(s: &str) -> std::result::Result<Resample, String> {
    Resample::parse(s).map_err(|e| match e {
        crate::error::Error::InvalidArgument { msg, .. } => msg,
        other => other.to_string(),
    })
}

/// The probe-set size the flags are checked at before the inputs are read (any size would do:
/// every schedule a preset produces is valid).
pub const FLAG_CHECK_IMAGES: usize = 1000;

impl TrainArgs {
    /// The preset the settings start from (`auto` unless `--preset` names another).
    pub fn preset(&self) -> Preset {
        self.preset.unwrap_or_default()
    }

    /// The first flag given that only the FactorTopy fit uses (its schedule, its model and how
    /// it prepares the features), if any: the ridge baseline takes only `--seed` and
    /// `--val-fraction` (its split) from these flags.
    pub fn factortopy_only_flag(&self) -> Option<&'static str> {
        [
            ("--preset", self.preset.is_some()),
            ("--epochs", self.epochs.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--lr", self.lr.is_some()),
            ("--weight-decay", self.weight_decay.is_some()),
            ("--dim", self.d.is_some()),
            ("--grid", self.grid.is_some()),
            ("--patience", self.patience.is_some()),
            ("--reg-steps", self.reg_steps.is_some()),
            ("--resample", self.resample.is_some()),
            ("--layer-units", self.layer_units.is_some()),
        ]
        .into_iter()
        .find_map(|(flag, given)| given.then_some(flag))
    }

    /// The settings for a probe set of `n_images` images: the preset's schedule for that size
    /// (`Preset::config`, the one place defaults are resolved), then the flags given.
    pub fn config(&self, n_images: usize) -> FitConfig {
        let base = self.preset().config(n_images);
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
            normalise_layers: self.layer_units.as_deref().map_or(base.normalise_layers, |u| u == "common"),
            ..base
        }
    }
}

/// One line naming the schedule a fit runs (the default one depends on the probe-set size).
pub fn describe_schedule(preset: Preset, c: &FitConfig) -> String {
    format!(
        "schedule: preset {preset}: lr {}, batch {}, warm-up {} steps, patience {} epochs, at most {} epochs",
        c.lr, c.batch_size, c.reg_steps, c.patience, c.max_epochs
    )
}

/// The estimator of a command for a probe set of `n_images` images: method, device, training
/// flags, hierarchy weighting and the uncertainty flags.
pub fn estimator(
    method: Method,
    device: &DeviceArgs,
    train: &TrainArgs,
    n_images: usize,
    weighted: bool,
    uncertainty: &UncertaintyArgs,
) -> Estimator {
    let fit = FitConfig { store: device.store, ..train.config(n_images) };
    Estimator { weighted, uncertainty: uncertainty.config(), ..Estimator::new(method, device.device, fit) }
}

/// Checks a command's flags and device before any input is read, naming settings as the flags
/// do. The schedule is resolved once the probe-set size is known; the flags are checked on the
/// preset's schedule for a nominal size, since every schedule a preset produces is valid.
pub fn check_flags(
    method: Method,
    device: &DeviceArgs,
    train: &TrainArgs,
    weighted: bool,
    uncertainty: &UncertaintyArgs,
) -> Result<Estimator> {
    if method == Method::Ridge {
        // A flag that would change nothing is refused rather than ignored.
        let store = device.store.is_some().then_some("--store");
        if let Some(flag) = train.factortopy_only_flag().or(store) {
            return Err(Error::invalid_arg(
                flag,
                format!("{flag} applies to the factortopy method only; the ridge baseline does not use it"),
            ));
        }
    }
    let est = estimator(method, device, train, FLAG_CHECK_IMAGES, weighted, uncertainty);
    est.fit.validate_as(&FieldNames::CLI)?;
    est.validate()?;
    Ok(est)
}
