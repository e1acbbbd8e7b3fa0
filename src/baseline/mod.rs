//! The layer-wise ridge baseline: a fast, closed-form estimate of which layer each
//! voxel reads from, and the sanity check for FactorTopy's maps.
//!
//! - [`ridge`]: ridge regression with per-target cross-validated penalties (the scheme of
//!   himalaya's `RidgeCV`), usable on any `X`, `Y`.
//! - [`layerwise`]: one ridge per layer from its global token to every voxel, the best layer per
//!   voxel, the DESIGN §4 scores of that one-hot choice, and its agreement with a FactorTopy fit.

#![warn(missing_docs)]

pub mod config;
pub(crate) mod linalg;
pub mod ridge;

pub use ridge::{kfold, logspace, ridge_cv, shuffled_kfold, Folds, RidgeCv, RidgeCvFit};
pub mod layerwise;

pub use config::RidgeBaselineConfig;
pub use layerwise::{
    agreement, fit_ridge_baseline, one_hot_selections, write_ridge_outputs, write_ridge_outputs_with, Agreement, LayerSummary,
    RidgeBaseline, RidgeOutputs, RidgeSummary, RoiAgreement,
};
