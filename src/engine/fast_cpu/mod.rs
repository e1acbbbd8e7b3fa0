//! The fast CPU trainer (autograd's graph costs more than the arithmetic at these sizes): an explicit forward and backward of the whole model of
//! DESIGN §3 on flat host buffers, no autograd graph on the hot path. It mirrors the CUDA trainer
//! (`cuda::trainer::GpuTrainer`): one flat buffer each for the parameters, gradients and AdamW
//! moments ([`layout`]); the three selector MLPs as one chain sharing the positional encoding
//! ([`mlp`]); the channel alignment as small faer products straight from the resampled features
//! ([`align`]); the readout as blocked matrix products over voxels grouped by the cells their
//! bilinear taps read, regrouped every step ([`block_readout`], [`blocks`]); then clipping and
//! AdamW ([`adamw`]). Every buffer is allocated when the trainer is built or by the first step;
//! later steps allocate nothing but small lists of slices (per layer, per voxel block).
//!
//! Parallel work runs on rayon's global pool; every reduction is summed per fixed block and the
//! blocks in a fixed order, and faer's products partition their outputs deterministically, so
//! the same inputs and seed give the same numbers on the same machine.
//!
//! The candle trainer (`engine::candle_cpu`, candle autograd) stays the oracle: the tests compare
//! every gradient of this trainer with candle's autograd on the unfused formula.

pub mod adamw;
pub mod align;
pub mod block_readout;
pub mod blocks;
pub mod fixed_readout;
pub mod gemm;
pub mod layout;
pub mod mlp;
mod predictor;
#[cfg(test)]
mod tests;

pub use layout::NamedValues;
pub use predictor::FastPredictor;

use crate::engine::Trainer;
use crate::error::{Error, Result};
use crate::model::encoder::{Encoder, EncoderSpec};
use crate::model::fit::{BrainTensors, FitConfig};
use crate::model::loss::regulariser_weight;
use crate::model::posenc::ENC_DIM;
use crate::model::prepared::PreparedFeatures;
use crate::model::readout::Dims;
use fixed_readout::FixedReadout;
use layout::Layout;
use mlp::MlpWork;
use block_readout::{BlockReadout, Inputs};
use blocks::TapTable;
use rayon::prelude::*;

/// Images per forward pass when predicting: the cell-major maps of 64 images at L 12, D 128
/// are 26 MB, and each block's Ω rows are read once per pass.
pub const EVAL_CHUNK: usize = 64;

/// Checks that the features, the brain and the encoder belong together.
fn check_inputs(spec: &EncoderSpec, prepared: &PreparedFeatures, n: usize, v: usize, pe_len: usize) -> Result<()> {
    prepared.check_matches(spec)?;
    // The alignment reads the values image by image on the host.
    prepared.load_host()?;
    if n != prepared.n_images() || v != spec.n_voxels {
        return Err(Error::mismatch(format!(
            "responses are [{n}, {v}] but the features have {} images and the encoder {} voxels",
            prepared.n_images(), spec.n_voxels
        )));
    }
    if pe_len != spec.n_voxels * ENC_DIM {
        return Err(Error::mismatch(format!(
            "the positional encoding has {pe_len} values, expected [{}, {ENC_DIM}]",
            spec.n_voxels
        )));
    }
    Ok(())
}

/// Predictions `[idx.len(), V]` of a fixed readout (shared by the trainer's validation and
/// [`FastPredictor`]): aligns `EVAL_CHUNK` images at a time into `maps` (cell-major) and
/// multiplies them with [`FixedReadout`].
fn predict_with(
    lay: &Layout,
    grid: usize,
    params: &[f32],
    readout: &FixedReadout,
    x: &PreparedFeatures,
    idx: &[usize],
    maps: &mut [f32],
) -> Vec<f32> {
    let v = lay.v;
    let per_image = (grid * grid + 1) * lay.l * lay.d;
    let mut out = vec![0f32; idx.len() * v];
    for (chunk, dst) in idx.chunks(EVAL_CHUNK).zip(out.chunks_mut(EVAL_CHUNK * v)) {
        align::forward_cell_major(lay, grid * grid, params, x, chunk, maps);
        readout.forward(&maps[..chunk.len() * per_image], chunk.len(), dst);
    }
    out
}

/// The fixed readout of the current selector outputs `sel` and readout parameters.
fn fixed_readout(lay: &Layout, grid: usize, params: &[f32], sel: &[f32]) -> Result<FixedReadout> {
    FixedReadout::new(sel, &params[lay.wc..lay.wc + lay.v * (lay.d + 1)], lay.v, lay.l, lay.d, grid)
}

fn check_indices(idx: &[usize], n: usize) -> Result<()> {
    match idx.iter().find(|&&i| i >= n) {
        Some(i) => Err(Error::invalid(format!("image index {i} out of range for {n} images"))),
        None => Ok(()),
    }
}

/// The fast CPU training state. Borrows the resampled features (no copy).
pub struct FastCpuTrainer<'a> {
    spec: EncoderSpec,
    cfg: FitConfig,
    lay: Layout,
    prepared: &'a PreparedFeatures,
    /// `[N, V]` responses and `[V, 192]` positional encoding.
    responses: &'a [f32],
    pe: Vec<f32>,
    params: Vec<f32>,
    grads: Vec<f32>,
    adam_m: Vec<f32>,
    adam_v: Vec<f32>,
    best: Vec<f32>,
    adam_t: usize,
    order: Vec<usize>,
    mlp: MlpWork,
    taps: TapTable,
    maps: Vec<f32>,
    dmaps: Vec<f32>,
    pred: Vec<f32>,
    go: Vec<f32>,
    readout: BlockReadout,
    partials: Vec<f64>,
}

impl<'a> FastCpuTrainer<'a> {
    /// Packs the encoder's parameters and allocates every buffer of the step.
    pub fn new(encoder: &Encoder, prepared: &'a PreparedFeatures, bt: &'a BrainTensors, cfg: &FitConfig) -> Result<Self> {
        cfg.validate()?;
        let spec = encoder.spec.clone();
        let (n, v) = match bt.responses.shape[..] {
            [n, v] => (n, v),
            ref s => return Err(Error::invalid(format!("responses must be [N, V], got {s:?}"))),
        };
        let pe = bt.pe.flatten_all()?.to_vec1::<f32>()?;
        check_inputs(&spec, prepared, n, v, pe.len())?;
        let lay = Layout::new(&spec);
        let params = layout::pack(encoder, &lay)?;
        let bmax = cfg.batch_size.max(EVAL_CHUNK);
        let (l, d, gg) = (spec.n_layers(), spec.d, spec.grid * spec.grid);
        let per_image = l * (gg + 1) * d;
        let total = lay.total;
        Ok(Self {
            responses: &bt.responses.data,
            pe,
            grads: vec![0.0; total],
            adam_m: vec![0.0; total],
            adam_v: vec![0.0; total],
            best: params.clone(),
            params,
            adam_t: 0,
            order: Vec::with_capacity(n),
            mlp: MlpWork::new(&lay),
            taps: TapTable::new(v),
            maps: vec![0.0; bmax * per_image],
            dmaps: vec![0.0; cfg.batch_size * per_image],
            pred: vec![0.0; cfg.batch_size * v],
            go: vec![0.0; cfg.batch_size * v],
            readout: BlockReadout::default(),
            partials: vec![0.0; total.div_ceil(adamw::CHUNK).max(cfg.batch_size * v)],
            spec,
            cfg: cfg.clone(),
            lay,
            prepared,
        })
    }

    /// Bytes of host memory the trainer holds, not counting the borrowed features.
    pub fn bytes(&self) -> usize {
        let f32s = self.responses.len()
            + self.pe.len()
            + 5 * self.lay.total
            + self.maps.len()
            + self.dmaps.len()
            + self.pred.len()
            + self.go.len();
        4 * f32s + self.mlp.bytes() + 8 * self.partials.len() + self.taps.taps.len() * std::mem::size_of::<crate::model::readout::Taps>()
    }

    fn dims(&self, b: usize) -> Dims {
        Dims { b, l: self.spec.n_layers(), g: self.spec.grid, d: self.spec.d, v: self.spec.n_voxels }
    }

    /// Forward and backward of the objective (DESIGN §3.5) on `order[offset..offset + len]` at
    /// optimiser step `step`: fills `grads`, returns the loss.
    fn forward_backward(&mut self, offset: usize, len: usize, step: usize) -> Result<f64> {
        if len == 0 || len > self.cfg.batch_size || offset + len > self.order.len() {
            return Err(Error::invalid(format!(
                "batch of {len} at {offset} does not fit (order holds {}, batch size {})",
                self.order.len(),
                self.cfg.batch_size
            )));
        }
        let reg_w = regulariser_weight(self.cfg.reg_lambda, step, self.cfg.reg_steps);
        let dims = self.dims(len);
        let (v, gg) = (dims.v, dims.g * dims.g);
        let lay = &self.lay;
        let idx = &self.order[offset..offset + len];
        let x = self.prepared;

        let reg = mlp::forward(lay, &self.params, &self.pe, &mut self.mlp);
        self.taps.update(&self.mlp.sel, lay.sw(), dims.g);
        align::forward(lay, gg, &self.params, x, idx, &mut self.maps);
        let per_image = dims.l * dims.cells() * dims.d;
        let (wc_at, wc_len) = (lay.wc, v * (dims.d + 1));
        let ops = Inputs {
            d: dims,
            maps: &self.maps[..len * per_image],
            sel: &self.mlp.sel,
            wc: &self.params[wc_at..wc_at + wc_len],
            taps: &self.taps.taps,
        };
        let nb = len * v;
        self.readout.forward(ops, &mut self.pred[..nb]);
        let data_loss = smooth_l1(
            &self.pred[..nb],
            self.responses,
            idx,
            v,
            self.cfg.beta as f32,
            &mut self.go[..nb],
            &mut self.partials,
        );
        let (before_wc, wc_and_after) = self.grads.split_at_mut(wc_at);
        self.readout.backward(ops, &self.go[..nb], &mut self.mlp.dsel, &mut wc_and_after[..wc_len], &mut self.dmaps);
        mlp::backward(lay, &self.params, &self.pe, &mut self.mlp, before_wc, reg_w as f32);
        align::backward(lay, gg, x, idx, &self.dmaps, before_wc);
        let loss = data_loss + if reg_w > 0.0 { reg_w * reg } else { 0.0 };
        if !loss.is_finite() {
            return Err(Error::Numeric(format!("the training loss became {loss} at step {step}")));
        }
        Ok(loss)
    }

    /// The objective and its unclipped gradients on `batch` at `step`, without updating
    /// anything: `(loss, [(parameter name, gradient)])` in `Encoder::named_vars` order. For tests
    /// against candle's autograd. Overwrites the batch order.
    pub fn loss_and_gradients(&mut self, batch: &[usize], step: usize) -> Result<(f64, NamedValues)> {
        self.set_order(batch)?;
        let loss = self.forward_backward(0, batch.len(), step)?;
        Ok((loss, layout::unpack(&self.lay, &self.grads)))
    }

    /// Current parameters as `(name, values)` in `Encoder::named_vars` order.
    pub fn parameters(&self) -> NamedValues {
        layout::unpack(&self.lay, &self.params)
    }

    /// Writes the current parameters into `encoder` (same spec).
    pub fn write_current_into(&self, encoder: &Encoder) -> Result<()> {
        layout::write_into(encoder, &self.lay, &self.params)
    }
}

/// Mean smooth-L1 of `pred − responses[idx]` over the batch and voxels; writes its gradient
/// with respect to `pred` into `go`. Summed per image in f64, images in order.
fn smooth_l1(
    pred: &[f32],
    responses: &[f32],
    idx: &[usize],
    v: usize,
    beta: f32,
    go: &mut [f32],
    partials: &mut [f64],
) -> f64 {
    let inv = 1.0 / (idx.len() * v) as f32;
    go.par_chunks_mut(v).zip(partials[..idx.len()].par_iter_mut()).enumerate().for_each(|(b, (g, part))| {
        let target = &responses[idx[b] * v..(idx[b] + 1) * v];
        let p = &pred[b * v..(b + 1) * v];
        let mut sum = 0f64;
        for ((gi, &pi), &ti) in g.iter_mut().zip(p).zip(target) {
            let e = pi - ti;
            let a = e.abs();
            let (loss, grad) = if a < beta { (0.5 * e * e / beta, e / beta) } else { (a - 0.5 * beta, e.signum()) };
            sum += loss as f64;
            *gi = grad * inv;
        }
        *part = sum;
    });
    partials[..idx.len()].iter().sum::<f64>() / (idx.len() * v) as f64
}

impl Trainer for FastCpuTrainer<'_> {
    fn set_order(&mut self, order: &[usize]) -> Result<()> {
        check_indices(order, self.prepared.n_images())?;
        self.order.clear();
        self.order.extend_from_slice(order);
        Ok(())
    }

    fn step(&mut self, offset: usize, len: usize, step: usize) -> Result<f64> {
        let loss = self.forward_backward(offset, len, step)?;
        let norm = adamw::sqnorm(&self.grads, &mut self.partials).sqrt();
        self.adam_t += 1;
        let hp = adamw::Hyper {
            lr: self.cfg.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: self.cfg.weight_decay,
            max_norm: self.cfg.clip_norm,
        };
        adamw::update(&hp, self.adam_t, norm, &mut self.params, &self.grads, &mut self.adam_m, &mut self.adam_v);
        Ok(loss)
    }

    fn predict(&mut self, idx: &[usize]) -> Result<Vec<f32>> {
        check_indices(idx, self.prepared.n_images())?;
        let x = self.prepared;
        mlp::forward(&self.lay, &self.params, &self.pe, &mut self.mlp);
        let readout = fixed_readout(&self.lay, self.spec.grid, &self.params, &self.mlp.sel)?;
        Ok(predict_with(&self.lay, self.spec.grid, &self.params, &readout, x, idx, &mut self.maps))
    }

    fn snapshot_best(&mut self) -> Result<()> {
        self.best.copy_from_slice(&self.params);
        Ok(())
    }

    fn write_best_into(&mut self, encoder: &Encoder) -> Result<()> {
        if encoder.spec != self.spec {
            return Err(Error::mismatch("the encoder to write into has a different spec from the trainer's"));
        }
        layout::write_into(encoder, &self.lay, &self.best)
    }
}
