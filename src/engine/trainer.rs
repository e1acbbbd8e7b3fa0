//! The trainer interface: what one device's implementation of the DESIGN §3.5 optimisation
//! provides to the one training loop (`engine::train_loop`). The CPU trainers and the CUDA trainer
//! implement it; the loop owns the epochs, the batch order, validation, best-epoch selection and
//! early stopping, so those are written once.

use crate::engine::epochs::EpochTracker;
use crate::engine::outcome::FitOutcome;
use crate::error::Result;
use crate::model::{Encoder, FitConfig, Progress, Split};
use crate::rng::Rng;
use crate::stats::{pearson_per_voxel, r2_per_voxel};

/// AdamW's moment decay rates (β1, β2): PyTorch's defaults, which DESIGN §3.5 uses. Every
/// trainer takes them from here.
pub const ADAMW_BETAS: (f64, f64) = (0.9, 0.999);
/// AdamW's ε, PyTorch's default.
pub const ADAMW_EPS: f64 = 1e-8;

/// One device's implementation of the optimisation (see the module docs).
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

/// The training loop of DESIGN §3.5–§3.6, the one every device runs: seeded batch order, one
/// optimiser step per batch, validation R² every epoch, best-epoch snapshots, early stopping and
/// the step/time budgets of warm-started refits. `encoder` is the starting point the trainer was
/// built from; it receives the best epoch's parameters. `start_step` is the regulariser's clock
/// (non-zero for a refit that continues a schedule). `responses` are the brain's z-scored
/// responses `[N, V]`, row-major, from which the validation targets are taken.
pub fn train_loop(
    trainer: &mut dyn Trainer,
    encoder: Encoder,
    responses: &[f32],
    split: Split,
    cfg: &FitConfig,
    start_step: usize,
    mut progress: Option<&mut dyn FnMut(&Progress)>,
) -> Result<FitOutcome> {
    cfg.validate()?;
    let v = encoder.spec.n_voxels;
    let val_targets = rows(responses, v, &split.val);
    let n_val = split.val.len();
    let score = |t: &mut dyn Trainer| -> Result<(Vec<f32>, Vec<f32>)> {
        let pred = t.predict(&split.val)?;
        Ok((r2_per_voxel(&pred, &val_targets, n_val, v), pearson_per_voxel(&pred, &val_targets, n_val, v)))
    };
    let mut order_rng = Rng::derive(cfg.seed, "batches");
    trainer.snapshot_best()?;
    let mut epochs = EpochTracker::new(cfg, start_step);
    'epochs: for epoch in 1..=cfg.max_epochs {
        let mut order = split.train.clone();
        order_rng.shuffle(&mut order);
        trainer.set_order(&order)?;
        epochs.begin_epoch();
        let mut offset = 0usize;
        for batch in order.chunks(cfg.batch_size) {
            let loss = trainer.step(offset, batch.len(), epochs.step())?;
            offset += batch.len();
            if epochs.after_step(loss) {
                // A budgeted refit evaluates what it has and stops.
                let (r2, pr) = score(trainer)?;
                if epochs.record_budget_end(epoch, r2, pr) {
                    trainer.snapshot_best()?;
                }
                break 'epochs;
            }
        }
        let (r2, pr) = score(trainer)?;
        if epochs.record_epoch(epoch, r2, pr, &mut progress) {
            trainer.snapshot_best()?;
        }
        if epochs.should_stop() {
            break;
        }
    }
    trainer.write_best_into(&encoder)?;
    Ok(epochs.finish(encoder, split))
}

/// Rows `idx` of a row-major `[N, v]` matrix.
pub fn rows(data: &[f32], v: usize, idx: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * v);
    for &i in idx {
        out.extend_from_slice(&data[i * v..(i + 1) * v]);
    }
    out
}
