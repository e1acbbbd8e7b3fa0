//! What the training loop hands back.

use crate::model::{Encoder, FitSummary, Split};

/// Result of a fit: the best-epoch encoder and its held-out quality.
pub struct FitOutcome {
    pub encoder: Encoder,
    pub summary: FitSummary,
    pub split: Split,
    /// Per-voxel R² and Pearson r on the validation images, at the best epoch.
    pub val_r2: Vec<f32>,
    pub val_pearson: Vec<f32>,
}
