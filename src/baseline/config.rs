//! The layer-wise ridge baseline's settings, apart from the fit so that a report can hold them
//! (`settings.ridge`) without the report depending on the fit.

use serde::{Deserialize, Serialize};

use crate::baseline::ridge::logspace;
use crate::model::FitConfig;
use crate::scores::uncertainty::UncertaintyConfig;

/// Settings of the layer-wise ridge baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RidgeBaselineConfig {
    /// Penalty grid; default `10^-1 … 10^8`, 19 values (features are z-scored).
    pub alphas: Vec<f64>,
    /// Cross-validation folds inside the training images.
    pub n_folds: usize,
    /// Seed of the train/validation split (as FactorTopy's) and of the folds.
    pub seed: u64,
    /// Fraction of images held out for validation (as FactorTopy's).
    pub val_fraction: f64,
    /// Z-score each feature with training statistics.
    pub standardize: bool,
    /// Voxels processed together (memory bound); 0 = automatic. Reports written before it
    /// was recorded read as 0.
    #[serde(default)]
    pub n_targets_batch: usize,
    /// Bootstrap and permutation settings of the report's uncertainty block.
    #[serde(default)]
    pub uncertainty: UncertaintyConfig,
}

impl Default for RidgeBaselineConfig {
    fn default() -> Self {
        Self {
            alphas: logspace(-1.0, 8.0, 19),
            n_folds: 5,
            seed: 0,
            val_fraction: FitConfig::default().val_fraction,
            standardize: true,
            n_targets_batch: 0,
            uncertainty: UncertaintyConfig::default(),
        }
    }
}

impl RidgeBaselineConfig {
    /// The defaults with the split of a FactorTopy configuration (seed, validation fraction).
    pub fn from_fit_config(cfg: &FitConfig) -> Self {
        Self { seed: cfg.seed, val_fraction: cfg.val_fraction, ..Self::default() }
    }
}
