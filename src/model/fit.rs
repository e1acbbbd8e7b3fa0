//! What a fit is made of (DESIGN §3.5–§3.6): its settings, the seeded train/validation split,
//! the brain as tensors, the fresh starting point and the summary. The training loop that uses
//! them is `crate::engine`.

use crate::data::{Brain, FeatureSource, Precision};
use crate::error::{Error, Result};
use crate::model::encoder::{Encoder, EncoderSpec, Readout};
use crate::model::posenc::CoordNorm;
use crate::model::prepared::PreparedFeatures;
use crate::model::resample::Resample;
use crate::rng::Rng;
use candle_core::{Device, Tensor};

/// Settings of a fit. Defaults follow DESIGN §3, except the grid resampling: `auto` (area
/// averaging where a map shrinks) rather than §3.1's plain bilinear, which [`FitConfig::design`]
/// keeps.
///
/// It serialises (serde) as a report's `settings.fit` (docs/formats.md): `normalise_layers` as
/// `layer_units` (`"common"` or `"raw"`), an unbounded or non-finite `max_seconds` as `null`,
/// without `store` (how the features are held in memory, so that a 16-bit file fitted with and
/// without `--store f16` gives the same report; it reads back as `None`). Reading settings
/// written before `resample` and `layer_units` existed gives what those fits used: `bilinear`
/// and `raw`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FitConfig {
    /// Seed of the split, the initialisation and the order of the batches: the same inputs and
    /// seed give the same fit on the same backend.
    pub seed: u64,
    /// Fraction of images held out for validation.
    pub val_fraction: f64,
    /// Maximum number of epochs.
    pub max_epochs: usize,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub clip_norm: f64,
    /// Smooth-L1 threshold β.
    pub beta: f64,
    /// Regulariser weight λ.
    pub reg_lambda: f64,
    /// Optimiser steps T over which the regulariser fades to zero.
    pub reg_steps: usize,
    /// Epochs without improvement of validation R² (after the regulariser has faded) before
    /// stopping.
    pub patience: usize,
    /// Smallest improvement of mean validation R² that counts.
    pub min_delta: f64,
    /// Bottleneck width D.
    pub d: usize,
    /// Local grid G.
    pub grid: usize,
    /// Hard limit on optimiser steps, used by warm-started refits in the monitor.
    pub max_steps: Option<usize>,
    /// Hard limit on wall-clock seconds (makes a fit depend on the machine's speed).
    #[serde(serialize_with = "finite_or_null")]
    pub max_seconds: Option<f64>,
    /// Which implementation of the readout of DESIGN §3.4 prediction uses.
    pub readout: Readout,
    /// How each layer's map is resized to the grid (§3.1 is `Bilinear`; see `model::resample`).
    #[serde(default = "design_resample")]
    pub resample: Resample,
    /// The precision the resampled features are kept in while fitting (`None`: the precision
    /// they arrive in, so 16-bit features stay 16-bit); they are widened to f32 an image at a
    /// time where they are multiplied.
    #[serde(skip)]
    pub store: Option<Precision>,
    /// Put every layer's features in common units before fitting
    /// ([`PreparedFeatures::normalise`]; the factors are saved in the encoder): a layer's units
    /// then cannot decide the fit. DESIGN §3 fits the features as they come.
    #[serde(rename = "layer_units", default, with = "layer_units")]
    pub normalise_layers: bool,
}

/// What settings from before the resampling became a setting were fitted with (DESIGN §3.1).
fn design_resample() -> Resample {
    Resample::Bilinear
}

/// A limit that is not a finite number is no limit: written as `null`, never as a non-number.
fn finite_or_null<S: serde::Serializer>(x: &Option<f64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&x.filter(|v| v.is_finite()), s)
}

/// `normalise_layers` as the units the layers were fitted in, the name reports use.
mod layer_units {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(common: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if *common { "common" } else { "raw" })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match String::deserialize(d)?.as_str() {
            "common" => Ok(true),
            "raw" => Ok(false),
            other => Err(D::Error::custom(format!("unknown layer_units `{other}`; expected `common` or `raw`"))),
        }
    }
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            val_fraction: 0.1,
            max_epochs: 40,
            batch_size: 8,
            lr: 1e-3,
            weight_decay: 0.01,
            clip_norm: 0.5,
            beta: 0.1,
            reg_lambda: 0.1,
            reg_steps: 2000,
            patience: 5,
            min_delta: 1e-4,
            d: 128,
            grid: 8,
            max_steps: None,
            max_seconds: None,
            readout: Readout::Fused,
            resample: Resample::Auto,
            store: None,
            normalise_layers: true,
        }
    }
}

impl FitConfig {
    /// DESIGN §3 exactly, including §3.1's bilinear resampling: the `design` preset, which
    /// reproduces the paper's code and this library's reports from before `auto` existed.
    pub fn design() -> Self {
        Self { resample: Resample::Bilinear, normalise_layers: false, ..Self::default() }
    }

    /// Settings for small probe sets (a few thousand images or fewer, as in the synthetic demo
    /// and a training-loop monitor): DESIGN's lr 1e-3 at batch 8 needs tens of thousands of
    /// optimiser steps to converge, which such a set gives only after hundreds of epochs.
    /// A 10× learning rate with batch 32 converges in tens of epochs on those sizes; the
    /// regulariser fades over 300 steps instead of 2000 to match.
    pub fn fast() -> Self {
        Self { lr: 1e-2, batch_size: 32, reg_steps: 300, patience: 3, ..Self::default() }
    }

    /// Checks every setting, naming fields as the library, the C ABI and Python name them.
    pub fn validate(&self) -> Result<()> {
        self.validate_as(&FieldNames::LIBRARY)
    }

    /// Checks every setting, naming each as `names` says (a front end passes the names its user
    /// wrote: `--val-fraction`, `held_out_fraction`, ...). The one validation of fit settings:
    /// sizes against `data::limits` (so a huge `d` or `grid` is refused before anything is
    /// allocated), fractions and rates finite and in range (NaN is refused, not compared).
    pub fn validate_as(&self, names: &FieldNames) -> Result<()> {
        use crate::data::limits;
        limits::fraction(names.val_fraction, self.val_fraction)?;
        limits::positive_at_most(names.d, self.d, limits::MAX_D)?;
        limits::positive_at_most(names.grid, self.grid, limits::MAX_GRID)?;
        limits::positive_at_most(names.batch_size, self.batch_size, limits::MAX_BATCH)?;
        limits::positive_at_most(names.max_epochs, self.max_epochs, limits::MAX_EPOCHS)?;
        limits::at_most(names.patience, self.patience, limits::MAX_EPOCHS)?;
        if let Some(s) = self.max_steps {
            limits::positive_at_most("max_steps", s, limits::MAX_STEPS)?;
        }
        let finite = |what: &str, x: f64, ok: bool, want: &str| -> Result<()> {
            if x.is_finite() && ok {
                Ok(())
            } else {
                Err(Error::invalid_arg(what, format!("{what} must be {want}, got {x}")))
            }
        };
        finite(names.lr, self.lr, self.lr > 0.0, "positive and finite")?;
        finite(names.weight_decay, self.weight_decay, self.weight_decay >= 0.0, "non-negative and finite")?;
        finite("clip_norm", self.clip_norm, self.clip_norm > 0.0, "positive and finite")?;
        finite("beta", self.beta, self.beta > 0.0, "positive and finite")?;
        finite("reg_lambda", self.reg_lambda, self.reg_lambda >= 0.0, "non-negative and finite")?;
        finite("min_delta", self.min_delta, true, "finite")?;
        if let Some(s) = self.max_seconds {
            finite(names.max_seconds, s, s > 0.0, "positive and finite")?;
        }
        Ok(())
    }
}

/// How a front end names the fit settings in its error messages.
#[derive(Debug, Clone, Copy)]
pub struct FieldNames {
    /// The name of [`FitConfig::val_fraction`].
    pub val_fraction: &'static str,
    /// The name of [`FitConfig::d`].
    pub d: &'static str,
    /// The name of [`FitConfig::grid`].
    pub grid: &'static str,
    /// The name of [`FitConfig::batch_size`].
    pub batch_size: &'static str,
    /// The name of [`FitConfig::max_epochs`].
    pub max_epochs: &'static str,
    /// The name of [`FitConfig::patience`].
    pub patience: &'static str,
    /// The name of [`FitConfig::lr`].
    pub lr: &'static str,
    /// The name of [`FitConfig::weight_decay`].
    pub weight_decay: &'static str,
    /// The name of [`FitConfig::max_seconds`].
    pub max_seconds: &'static str,
}

impl FieldNames {
    /// The field names of `FitConfig`, `ft_fit_options` and Python's `FitOptions`.
    pub const LIBRARY: FieldNames = FieldNames {
        val_fraction: "val_fraction",
        d: "d",
        grid: "grid",
        batch_size: "batch_size",
        max_epochs: "max_epochs",
        patience: "patience",
        lr: "lr",
        weight_decay: "weight_decay",
        max_seconds: "max_seconds",
    };
    /// The command line's flags.
    pub const CLI: FieldNames = FieldNames {
        val_fraction: "--val-fraction",
        d: "--dim",
        grid: "--grid",
        batch_size: "--batch-size",
        max_epochs: "--epochs",
        patience: "--patience",
        lr: "--lr",
        weight_decay: "--weight-decay",
        max_seconds: "max_seconds",
    };

    /// The same names with the held-out fraction called `name` (the monitor's
    /// `held_out_fraction`).
    pub const fn held_out_as(self, name: &'static str) -> FieldNames {
        FieldNames { val_fraction: name, ..self }
    }
}

/// The seeded train/validation split of the probe images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Indices of the training images, ascending.
    pub train: Vec<usize>,
    /// Indices of the held-out images, ascending.
    pub val: Vec<usize>,
}

impl Split {
    /// The split of `n` images with `val_fraction` of them held out, drawn from `seed`.
    pub fn new(n: usize, val_fraction: f64, seed: u64) -> Result<Self> {
        Self::named("val_fraction", n, val_fraction, seed)
    }

    /// [`Split::new`] with the fraction named `what` in errors (`held_out_fraction`,
    /// `--val-fraction`, an encoder file's metadata).
    pub fn named(what: &str, n: usize, val_fraction: f64, seed: u64) -> Result<Self> {
        let n_val = crate::data::limits::held_out(what, n, val_fraction)?;
        let perm = Rng::derive(seed, "split").permutation(n);
        let mut val = perm[..n_val].to_vec();
        let mut train = perm[n_val..].to_vec();
        val.sort_unstable();
        train.sort_unstable();
        Ok(Self { train, val })
    }
}

/// What the training loop reports after every epoch.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The epoch just finished, counted from 1.
    pub epoch: usize,
    /// The epoch limit.
    pub max_epochs: usize,
    /// Optimiser steps so far.
    pub step: usize,
    /// Mean training loss of the epoch.
    pub train_loss: f64,
    /// Mean validation R² after the epoch.
    pub val_r2: f64,
    /// The best mean validation R² so far.
    pub best_val_r2: f64,
    /// The epoch that reached it.
    pub best_epoch: usize,
    /// Seconds since the fit started.
    pub seconds: f64,
}

/// The brain side of a fit: z-scored responses as a tensor plus the positional encoding.
pub struct BrainTensors {
    /// `[N, V]`, row-major: the brain's own array, shared (the trainers borrow it), so a
    /// subject's responses are held once.
    pub responses: std::sync::Arc<crate::data::Array>,
    /// `[V, 192]`: the sinusoidal encoding of the voxels' positions (DESIGN §3.3).
    pub pe: Tensor,
    /// The coordinate normalisation the encoding used (stored with the encoder).
    pub coord_norm: CoordNorm,
}

impl BrainTensors {
    /// The brain's tensors; `coord_norm` reuses a saved encoder's normalisation, `None`
    /// computes it from the brain's coordinates.
    pub fn new(brain: &Brain, coord_norm: Option<CoordNorm>) -> Result<Self> {
        let norm = match coord_norm {
            Some(n) => n,
            None => CoordNorm::from_coords(&brain.coords)?,
        };
        let pe = norm.encode(&brain.coords)?;
        let dev = Device::Cpu;
        Ok(Self {
            responses: brain.responses.clone(),
            pe: Tensor::from_vec(pe.data, pe.shape.as_slice(), &dev)?,
            coord_norm: norm,
        })
    }
}

/// How a fit went (DESIGN §3.6): stored in the report and the encoder file.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct FitSummary {
    /// The fit's seed.
    pub seed: u64,
    /// Training images.
    pub n_train: usize,
    /// Held-out images.
    pub n_val: usize,
    /// Epochs run before the limit or early stopping.
    pub epochs_run: usize,
    /// The epoch whose parameters were kept.
    pub best_epoch: usize,
    /// Its mean validation R².
    pub best_val_r2: f64,
    /// Optimiser steps run.
    pub steps: usize,
}

/// What a fit of a fresh encoder starts from (DESIGN §3.5): the features resampled to the grid,
/// the brain as tensors, an encoder initialised from `cfg.seed` and the seeded train/validation
/// split. Shared by the CPU and GPU fits and the benchmarks.
pub struct FitStart {
    /// The features resampled to the grid (and in common units when the settings say so).
    pub prepared: PreparedFeatures,
    /// The brain's responses and positional encoding.
    pub bt: BrainTensors,
    /// The freshly initialised encoder.
    pub encoder: Encoder,
    /// The train/validation split.
    pub split: Split,
}

impl FitStart {
    /// Prepares the features (on the host), the brain, the encoder and the split for `cfg`.
    pub fn new(features: &dyn FeatureSource, brain: &Brain, cfg: &FitConfig) -> Result<Self> {
        let prepared = PreparedFeatures::new(features, cfg.grid, cfg.resample, cfg.store)?;
        Self::with_prepared(features, brain, cfg, prepared)
    }

    /// [`FitStart::new`] with the features already resampled to `cfg`'s grid (on the host or on
    /// the device the fit runs on: `crate::engine::prepare`), in the units they arrive in.
    pub fn with_prepared(features: &dyn FeatureSource, brain: &Brain, cfg: &FitConfig, mut prepared: PreparedFeatures) -> Result<Self> {
        if prepared.grid() != cfg.grid || prepared.resample() != cfg.resample || prepared.n_images() != features.n_images() {
            return Err(Error::mismatch(format!(
                "prepared features ({} images, grid {}, {} resampling) are not the fit's ({} images, grid {}, {} resampling)",
                prepared.n_images(),
                prepared.grid(),
                prepared.resample(),
                features.n_images(),
                cfg.grid,
                cfg.resample
            )));
        }
        if prepared.units().iter().any(|u| !u.is_identity()) {
            return Err(Error::invalid("a fit starts from features in the units they arrive in"));
        }
        let layer_units = if cfg.normalise_layers { Some(prepared.normalise()?) } else { None };
        let bt = BrainTensors::new(brain, None)?;
        let spec = EncoderSpec {
            widths: prepared.widths().to_vec(),
            d: cfg.d,
            grid: cfg.grid,
            resample: cfg.resample,
            n_voxels: brain.n_voxels(),
            coord_norm: bt.coord_norm,
            layer_names: features.layer_names().to_vec(),
            model: features.model().to_string(),
            layer_units,
        };
        let encoder = Encoder::new(spec, cfg.seed)?;
        let split = Split::new(prepared.n_images(), cfg.val_fraction, cfg.seed)?;
        Ok(Self { prepared, bt, encoder, split })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused setting is an `InvalidArgument` naming it as the front end does.
    #[test]
    fn refused_settings_are_named() {
        let cases: [(FitConfig, &str, &str); 6] = [
            (FitConfig { lr: -1.0, ..FitConfig::default() }, "lr", "--lr"),
            (FitConfig { val_fraction: f64::NAN, ..FitConfig::default() }, "val_fraction", "--val-fraction"),
            (FitConfig { d: 0, ..FitConfig::default() }, "d", "--dim"),
            (FitConfig { max_epochs: 0, ..FitConfig::default() }, "max_epochs", "--epochs"),
            (FitConfig { beta: 0.0, ..FitConfig::default() }, "beta", "beta"),
            (FitConfig { max_steps: Some(0), ..FitConfig::default() }, "max_steps", "max_steps"),
        ];
        for (cfg, library, cli) in cases {
            let e = cfg.validate().unwrap_err();
            assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
            assert_eq!(e.argument(), Some(library), "{e}");
            assert!(e.to_string().contains(library), "{e}");
            assert_eq!(cfg.validate_as(&FieldNames::CLI).unwrap_err().argument(), Some(cli));
        }
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let a = Split::new(100, 0.1, 5).unwrap();
        assert_eq!(a, Split::new(100, 0.1, 5).unwrap());
        assert_ne!(a, Split::new(100, 0.1, 6).unwrap());
        assert_eq!(a.val.len(), 10);
        let mut all: Vec<usize> = a.train.iter().chain(&a.val).copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert!(Split::new(3, 0.1, 0).is_err());
    }
}
