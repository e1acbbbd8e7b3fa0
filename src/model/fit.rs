//! The fitting protocol of DESIGN §3.5–§3.6: seeded split, mini-batches, AdamW with gradient
//! clipping, validation R² every epoch, best-epoch selection and early stopping.

use crate::data::{Brain, Features};
use crate::error::{Error, Result};
use crate::model::encoder::{Encoder, EncoderSpec, Readout};
use crate::model::epochs::EpochTracker;
use crate::model::loss::{regulariser, regulariser_weight, smooth_l1};
use crate::model::posenc::CoordNorm;
use crate::model::prepared::PreparedFeatures;
use crate::rng::Rng;
use crate::scores::stats::{pearson_per_voxel, r2_per_voxel};
use crate::scores::FitSummary;
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

/// Settings of a fit. Defaults follow DESIGN §3.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    pub seed: u64,
    /// Fraction of images held out for validation.
    pub val_fraction: f64,
    pub max_epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
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
    /// Hard limits, used by warm-started refits in the monitor.
    pub max_steps: Option<usize>,
    pub max_seconds: Option<f64>,
    pub readout: Readout,
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
        }
    }
}

impl FitConfig {
    /// Settings for small probe sets (a few thousand images or fewer, as in the synthetic demo
    /// and a training-loop monitor): DESIGN's lr 1e-3 at batch 8 needs tens of thousands of
    /// optimiser steps to converge, which such a set gives only after hundreds of epochs.
    /// A 10× learning rate with batch 32 converges in tens of epochs on those sizes; the
    /// regulariser fades over 300 steps instead of 2000 to match.
    pub fn fast() -> Self {
        Self { lr: 1e-2, batch_size: 32, reg_steps: 300, patience: 3, ..Self::default() }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid(m.to_string()));
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return bad("val_fraction must be in (0, 1)");
        }
        if self.batch_size == 0 || self.max_epochs == 0 || self.d == 0 || self.grid == 0 {
            return bad("batch size, epochs, D and grid must be positive");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) || self.weight_decay < 0.0 || self.clip_norm <= 0.0 {
            return bad("lr must be positive, weight decay non-negative, clip norm positive");
        }
        if self.beta <= 0.0 || self.reg_lambda < 0.0 {
            return bad("beta must be positive and the regulariser weight non-negative");
        }
        Ok(())
    }
}

/// The seeded train/validation split of the probe images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
}

impl Split {
    pub fn new(n: usize, val_fraction: f64, seed: u64) -> Result<Self> {
        let n_val = ((n as f64 * val_fraction).round() as usize).max(2);
        if n < n_val + 2 {
            return Err(Error::invalid(format!(
                "{n} images are too few to hold out {n_val} for validation and still train"
            )));
        }
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
    pub epoch: usize,
    pub max_epochs: usize,
    pub step: usize,
    pub train_loss: f64,
    pub val_r2: f64,
    pub best_val_r2: f64,
    pub best_epoch: usize,
    pub seconds: f64,
}

/// The brain side of a fit: z-scored responses as a tensor plus the positional encoding.
pub struct BrainTensors {
    /// `[N, V]`.
    pub responses: Tensor,
    /// `[V, 192]`.
    pub pe: Tensor,
    pub coord_norm: CoordNorm,
}

impl BrainTensors {
    pub fn new(brain: &Brain, coord_norm: Option<CoordNorm>) -> Result<Self> {
        let norm = match coord_norm {
            Some(n) => n,
            None => CoordNorm::from_coords(&brain.coords)?,
        };
        let pe = norm.encode(&brain.coords)?;
        let dev = Device::Cpu;
        Ok(Self {
            responses: Tensor::from_vec(brain.responses.data.clone(), brain.responses.shape.as_slice(), &dev)?,
            pe: Tensor::from_vec(pe.data, pe.shape.as_slice(), &dev)?,
            coord_norm: norm,
        })
    }
}

/// Result of a fit: the best-epoch encoder and its held-out quality.
pub struct FitOutcome {
    pub encoder: Encoder,
    pub summary: FitSummary,
    pub split: Split,
    /// Per-voxel R² and Pearson r on the validation images, at the best epoch.
    pub val_r2: Vec<f32>,
    pub val_pearson: Vec<f32>,
}

/// Fits a fresh encoder of `features` to `brain` (DESIGN §3.5–§3.6).
pub fn fit(
    features: &Features,
    brain: &Brain,
    cfg: &FitConfig,
    progress: Option<&mut dyn FnMut(&Progress)>,
) -> Result<FitOutcome> {
    cfg.validate()?;
    crate::data::check_pair(features, "features", brain, "brain")?;
    let start = FitStart::new(features, brain, cfg)?;
    train(start.encoder, &start.prepared, &start.bt, start.split, cfg, 0, progress)
}

/// What a fit of a fresh encoder starts from (DESIGN §3.5): the features resampled to the grid,
/// the brain as tensors, an encoder initialised from `cfg.seed` and the seeded train/validation
/// split. Shared by the CPU and GPU fits and the benchmarks.
pub struct FitStart {
    pub prepared: PreparedFeatures,
    pub bt: BrainTensors,
    pub encoder: Encoder,
    pub split: Split,
}

impl FitStart {
    pub fn new(features: &Features, brain: &Brain, cfg: &FitConfig) -> Result<Self> {
        let prepared = PreparedFeatures::new(features, cfg.grid)?;
        let bt = BrainTensors::new(brain, None)?;
        let spec = EncoderSpec {
            widths: prepared.widths.clone(),
            d: cfg.d,
            grid: cfg.grid,
            n_voxels: brain.n_voxels(),
            coord_norm: bt.coord_norm,
            layer_names: features.layer_names.clone(),
            model: features.model.clone(),
        };
        let encoder = Encoder::new(spec, cfg.seed)?;
        let split = Split::new(prepared.n_images, cfg.val_fraction, cfg.seed)?;
        Ok(Self { prepared, bt, encoder, split })
    }
}

/// Trains `encoder` in place from optimiser step `start_step` (the regulariser's clock), keeping
/// the best epoch by mean validation R².
pub fn train(
    encoder: Encoder,
    prepared: &PreparedFeatures,
    bt: &BrainTensors,
    split: Split,
    cfg: &FitConfig,
    start_step: usize,
    mut progress: Option<&mut dyn FnMut(&Progress)>,
) -> Result<FitOutcome> {
    cfg.validate()?;
    let mut state = TrainState::new(&encoder, cfg)?;
    let mut order_rng = Rng::derive(cfg.seed, "batches");
    let mut best = encoder.deep_copy()?;
    let mut epochs = EpochTracker::new(cfg, start_step);
    'epochs: for epoch in 1..=cfg.max_epochs {
        let mut order = split.train.clone();
        order_rng.shuffle(&mut order);
        epochs.begin_epoch();
        for batch in order.chunks(cfg.batch_size) {
            let loss = train_step(&encoder, prepared, bt, batch, cfg, epochs.step(), &mut state)?;
            if epochs.after_step(loss) {
                // A budgeted refit evaluates what it has and stops.
                let (r2, pr) = evaluate(&encoder, prepared, bt, &split.val)?;
                if epochs.record_budget_end(epoch, r2, pr) {
                    best = encoder.deep_copy()?;
                }
                break 'epochs;
            }
        }
        let (r2, pr) = evaluate(&encoder, prepared, bt, &split.val)?;
        if epochs.record_epoch(epoch, r2, pr, &mut progress) {
            best = encoder.deep_copy()?;
        }
        if epochs.should_stop() {
            break;
        }
    }
    encoder.assign_from(&best)?;
    Ok(epochs.finish(encoder, split))
}

/// The optimiser and the parameters it updates.
pub struct TrainState {
    opt: AdamW,
    vars: Vec<candle_core::Var>,
}

impl TrainState {
    pub fn new(encoder: &Encoder, cfg: &FitConfig) -> Result<Self> {
        let vars = encoder.vars();
        let opt = AdamW::new(
            vars.clone(),
            ParamsAdamW { lr: cfg.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: cfg.weight_decay },
        )?;
        Ok(Self { opt, vars })
    }
}

/// One optimiser step (forward, backward, clipped AdamW) on the images `batch` at regulariser
/// step `step`; returns the loss. Public for the benchmarks.
pub fn train_step(
    encoder: &Encoder,
    prepared: &PreparedFeatures,
    bt: &BrainTensors,
    batch: &[usize],
    cfg: &FitConfig,
    step: usize,
    state: &mut TrainState,
) -> Result<f64> {
    let loss = objective(encoder, prepared, bt, batch, cfg, step)?;
    let value = loss.to_scalar::<f32>()? as f64;
    if !value.is_finite() {
        return Err(Error::Numeric(format!("the training loss became {value} at step {step}")));
    }
    let mut grads = loss.backward()?;
    clip_gradients(&mut grads, &state.vars, cfg.clip_norm)?;
    state.opt.step(&grads)?;
    Ok(value)
}

/// The training objective of DESIGN §3.5 on one batch of images at optimiser step `step`.
pub fn objective(
    encoder: &Encoder,
    prepared: &PreparedFeatures,
    bt: &BrainTensors,
    batch: &[usize],
    cfg: &FitConfig,
    step: usize,
) -> Result<Tensor> {
    let (locals, globals) = prepared.batch(batch)?;
    let ids = Tensor::from_vec(batch.iter().map(|&i| i as u32).collect::<Vec<_>>(), batch.len(), &Device::Cpu)?;
    let target = bt.responses.index_select(&ids, 0)?;
    let sel = encoder.selectors(&bt.pe)?;
    let maps = encoder.align(&locals, &globals)?;
    let pred = encoder.predict(&maps, &sel, cfg.readout)?;
    let mut loss = smooth_l1(&(pred - target)?, cfg.beta)?.mean_all()?;
    let w = regulariser_weight(cfg.reg_lambda, step, cfg.reg_steps);
    if w > 0.0 {
        loss = (loss + (regulariser(&sel.probs, &sel.scale)? * w)?)?;
    }
    Ok(loss)
}

/// Scales all gradients together so their global L2 norm is at most `max_norm` (as PyTorch's
/// `clip_grad_norm_`, with its 1e-6 guard).
pub fn clip_gradients(grads: &mut candle_core::backprop::GradStore, vars: &[candle_core::Var], max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = total.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * coef)?);
            }
        }
    }
    Ok(norm)
}

/// Predictions `[idx.len(), V]` (row-major) for the images `idx`.
pub fn predict_images(encoder: &Encoder, prepared: &PreparedFeatures, pe: &Tensor, idx: &[usize]) -> Result<Vec<f32>> {
    let sel = encoder.selectors(pe)?;
    let packed = sel.packed()?;
    let wc = encoder.readout_params()?;
    let mut out = Vec::with_capacity(idx.len() * encoder.spec.n_voxels);
    for chunk in idx.chunks(64) {
        let (locals, globals) = prepared.batch(chunk)?;
        let maps = encoder.align(&locals, &globals)?;
        let pred = crate::model::readout::fused_readout(&maps, &packed, &wc, encoder.spec.grid)?;
        out.extend(pred.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Per-voxel R² and Pearson r of the encoder on the images `idx`.
pub fn evaluate(
    encoder: &Encoder,
    prepared: &PreparedFeatures,
    bt: &BrainTensors,
    idx: &[usize],
) -> Result<(Vec<f32>, Vec<f32>)> {
    let pred = predict_images(encoder, prepared, &bt.pe, idx)?;
    let ids = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), idx.len(), &Device::Cpu)?;
    let target = bt.responses.index_select(&ids, 0)?.flatten_all()?.to_vec1::<f32>()?;
    let v = encoder.spec.n_voxels;
    Ok((r2_per_voxel(&pred, &target, idx.len(), v), pearson_per_voxel(&pred, &target, idx.len(), v)))
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Array, LayerFeatures};
    use crate::model::encoder::EncoderSpec;

    fn tiny(seed: u64) -> (PreparedFeatures, BrainTensors, Encoder) {
        let mut rng = Rng::new(seed);
        let (n, v) = (6usize, 7usize);
        let mut randn = |shape: Vec<usize>| {
            let k: usize = shape.iter().product();
            Array::new(shape, (0..k).map(|_| rng.normal() as f32).collect()).unwrap()
        };
        let features = Features {
            model: "tiny".into(),
            layer_names: vec!["a".into(), "b".into()],
            stimulus_ids: None,
            layers: vec![
                LayerFeatures { local: randn(vec![n, 3, 4, 4]), global: Some(randn(vec![n, 3])) },
                LayerFeatures { local: randn(vec![n, 5, 2, 2]), global: None },
            ],
        };
        let responses = randn(vec![n, v]);
        let coords = randn(vec![v, 3]);
        let prepared = PreparedFeatures::new(&features, 2).unwrap();
        let norm = CoordNorm::from_coords(&coords).unwrap();
        let pe = norm.encode(&coords).unwrap();
        let bt = BrainTensors {
            responses: Tensor::from_vec(responses.data, (n, v), &Device::Cpu).unwrap(),
            pe: Tensor::from_vec(pe.data, pe.shape.as_slice(), &Device::Cpu).unwrap(),
            coord_norm: norm,
        };
        let spec = EncoderSpec {
            widths: prepared.widths.clone(),
            d: 4,
            grid: 2,
            n_voxels: v,
            coord_norm: norm,
            layer_names: features.layer_names.clone(),
            model: "tiny".into(),
        };
        let enc = Encoder::new(spec, seed).unwrap();
        // Away from initialisation, so every parameter (the MLPs' inner layers too) gets a
        // gradient: the zero last layers would otherwise block it.
        for (_, var) in enc.named_vars() {
            let dims = var.as_tensor().dims().to_vec();
            let k: usize = dims.iter().product();
            let vals: Vec<f32> = (0..k).map(|_| (rng.normal() * 0.3) as f32).collect();
            var.set(&Tensor::from_vec(vals, dims.as_slice(), &Device::Cpu).unwrap()).unwrap();
        }
        (prepared, bt, enc)
    }

    /// Candle autograd through the whole objective (fused readout, alignment, selector MLPs and
    /// heads, smooth-L1, regulariser) against central finite differences along random
    /// directions, one parameter tensor at a time.
    #[test]
    fn objective_gradient_matches_finite_differences() {
        let (prepared, bt, enc) = tiny(3);
        // A large β keeps every error on the quadratic branch, so the objective is smooth where
        // the finite difference looks; the regulariser is on at half weight.
        let cfg = FitConfig { beta: 10.0, reg_steps: 100, ..FitConfig::default() };
        let batch = [0usize, 2, 3, 5];
        let loss = objective(&enc, &prepared, &bt, &batch, &cfg, 50).unwrap();
        let grads = loss.backward().unwrap();
        let mut rng = Rng::new(11);
        for (name, var) in enc.named_vars() {
            let g = grads.get(var.as_tensor()).expect("every parameter has a gradient");
            let dims = var.as_tensor().dims().to_vec();
            let k: usize = dims.iter().product();
            let dir: Vec<f32> = (0..k).map(|_| rng.normal() as f32).collect();
            let dir_t = Tensor::from_vec(dir.clone(), dims.as_slice(), &Device::Cpu).unwrap();
            let analytic = (g * &dir_t).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
            let orig = var.as_tensor().copy().unwrap();
            let eps = 1e-2;
            let at = |sign: f64| {
                var.set(&(&orig + (&dir_t * (sign * eps)).unwrap()).unwrap()).unwrap();
                objective(&enc, &prepared, &bt, &batch, &cfg, 50).unwrap().to_scalar::<f32>().unwrap() as f64
            };
            let numeric = (at(1.0) - at(-1.0)) / (2.0 * eps);
            var.set(&orig).unwrap();
            let tol = 2e-3 + 1e-2 * analytic.abs().max(numeric.abs());
            assert!((analytic - numeric).abs() < tol, "{name}: autograd {analytic} vs finite difference {numeric}");
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

    #[test]
    fn clipping_scales_to_the_norm() {
        let v = candle_core::Var::new(&[3.0f32, 4.0], &Device::Cpu).unwrap();
        let loss = (v.as_tensor() * &Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap()).unwrap().sum_all().unwrap();
        let mut grads = loss.backward().unwrap();
        let norm = clip_gradients(&mut grads, &[v.clone()], 0.5).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let g = grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!((g[0] - 0.3).abs() < 1e-5 && (g[1] - 0.4).abs() < 1e-5, "{g:?}");
    }
}
