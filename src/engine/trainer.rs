//! The trainer interface: what one device's implementation of the DESIGN §3.5 optimisation
//! provides to the one training loop (`engine::train_loop`). The CPU trainers and the CUDA trainer
//! implement it; the loop owns the epochs, the batch order, validation, best-epoch selection and
//! early stopping, so those are written once.

use crate::error::Result;
use crate::model::Encoder;

pub trait Trainer {
    /// Starts an epoch: `order` is the shuffled list of training images. Steps refer to slices of
    /// it, so a device trainer can upload it once per epoch.
    fn set_order(&mut self, order: &[usize]) -> Result<()>;

    /// One optimiser step (forward, backward, gradient clipping at `cfg.clip_norm`, AdamW) on the
    /// images `order[offset..offset + len]`, with the regulariser at optimiser step `step`
    /// (DESIGN §3.5). Returns the loss before the update; a non-finite loss is an
    /// `Error::Numeric`.
    fn step(&mut self, offset: usize, len: usize, step: usize) -> Result<f64>;

    /// Predictions `[idx.len(), V]`, row-major, of the current parameters for the images `idx`.
    fn predict(&mut self, idx: &[usize]) -> Result<Vec<f32>>;

    /// Remembers the current parameters as the best so far.
    fn snapshot_best(&mut self) -> Result<()>;

    /// Writes the remembered best parameters into `encoder` (same spec as the trainer's).
    fn write_best_into(&mut self, encoder: &Encoder) -> Result<()>;
}
