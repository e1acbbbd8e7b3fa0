//! What the training loop hands back.

use crate::model::{Encoder, FitSummary, Split};

/// Result of a fit: the best-epoch encoder and its held-out quality.
pub struct FitOutcome {
    /// The encoder at its best epoch.
    pub encoder: Encoder,
    /// How the fit went.
    pub summary: FitSummary,
    /// The train/validation split it used.
    pub split: Split,
    /// Per-voxel R² on the validation images, at the best epoch.
    pub val_r2: Vec<f32>,
    /// Per-voxel Pearson r on the validation images, at the best epoch.
    pub val_pearson: Vec<f32>,
}
