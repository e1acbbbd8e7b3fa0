//! The candle trainer: the CPU implementation of the DESIGN §3.5 optimisation written as the
//! plain formula (candle autograd through the objective, candle's AdamW, PyTorch-style global
//! gradient clipping). It is the oracle the hand-written trainers are tested against, and the
//! CPU trainer until a faster one is chosen by the engine.

use crate::engine::predict::predict_cpu;
use crate::engine::trainer::{Trainer, ADAMW_BETAS, ADAMW_EPS};
use crate::error::{Error, Result};
use crate::model::loss::{regulariser, regulariser_weight, smooth_l1};
use crate::model::{BrainTensors, Encoder, FitConfig, PreparedFeatures};
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

/// Trains a working copy of an encoder with candle on the CPU.
pub struct CandleTrainer<'a> {
    encoder: Encoder,
    best: Encoder,
    prepared: &'a PreparedFeatures,
    bt: &'a BrainTensors,
    cfg: FitConfig,
    state: TrainState,
    order: Vec<usize>,
}

impl<'a> CandleTrainer<'a> {
    /// A trainer starting from `encoder`'s parameters (which it does not modify until
    /// `write_best_into`).
    pub fn new(encoder: &Encoder, prepared: &'a PreparedFeatures, bt: &'a BrainTensors, cfg: &FitConfig) -> Result<Self> {
        cfg.validate()?;
        let working = encoder.deep_copy()?;
        let best = encoder.deep_copy()?;
        let state = TrainState::new(&working, cfg)?;
        Ok(Self { encoder: working, best, prepared, bt, cfg: cfg.clone(), state, order: Vec::new() })
    }

    /// The parameters being trained (for tests that compare trainers step by step).
    pub fn current(&self) -> &Encoder {
        &self.encoder
    }
}

impl Trainer for CandleTrainer<'_> {
    fn set_order(&mut self, order: &[usize]) -> Result<()> {
        if let Some(&bad) = order.iter().find(|&&i| i >= self.prepared.n_images()) {
            return Err(Error::invalid(format!("image index {bad} out of range for {} images", self.prepared.n_images())));
        }
        self.order = order.to_vec();
        Ok(())
    }

    fn step(&mut self, offset: usize, len: usize, step: usize) -> Result<f64> {
        let batch = self.order.get(offset..offset + len).ok_or_else(|| {
            Error::invalid(format!("batch {offset}..{} outside an epoch of {} images", offset + len, self.order.len()))
        })?;
        train_step(&self.encoder, self.prepared, self.bt, batch, &self.cfg, step, &mut self.state)
    }

    fn predict(&mut self, idx: &[usize]) -> Result<Vec<f32>> {
        predict_cpu(&self.encoder, self.prepared, &self.bt.pe, idx)
    }

    fn snapshot_best(&mut self) -> Result<()> {
        self.best.assign_from(&self.encoder)
    }

    fn write_best_into(&mut self, encoder: &Encoder) -> Result<()> {
        encoder.assign_from(&self.best)
    }
}

/// The optimiser and the parameters it updates.
pub struct TrainState {
    opt: AdamW,
    vars: Vec<candle_core::Var>,
}

impl TrainState {
    /// candle's AdamW over the encoder's parameters, with the settings' learning rate and decay.
    pub fn new(encoder: &Encoder, cfg: &FitConfig) -> Result<Self> {
        let vars = encoder.vars();
        let opt = AdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr: cfg.lr,
                beta1: ADAMW_BETAS.0,
                beta2: ADAMW_BETAS.1,
                eps: ADAMW_EPS,
                weight_decay: cfg.weight_decay,
            },
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
    let v = bt.responses.shape.get(1).copied().unwrap_or(0);
    let rows = crate::engine::trainer::rows(&bt.responses.data, v, batch);
    let target = Tensor::from_vec(rows, (batch.len(), v), &Device::Cpu)?;
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


#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::tiny;
    use crate::rng::Rng;

    /// Candle autograd through the whole objective (fused readout, alignment, selector MLPs and
    /// heads, smooth-L1, regulariser) against central finite differences along random
    /// directions, one parameter tensor at a time.
    #[test]
    fn objective_gradient_matches_finite_differences() {
        let (prepared, bt, enc) = tiny(3, 2, 4);
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
            // A unit direction: a step of `eps` then moves the parameters by `eps` in total, small
            // enough to stay clear of the bilinear taps' kinks, large enough for f32 losses.
            let dir: Vec<f32> = (0..k).map(|_| rng.normal() as f32).collect();
            let norm = dir.iter().map(|x| x * x).sum::<f32>().sqrt();
            let dir: Vec<f32> = dir.iter().map(|x| x / norm).collect();
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
            let tol = 1e-4 + 1e-2 * analytic.abs().max(numeric.abs());
            assert!((analytic - numeric).abs() < tol, "{name}: autograd {analytic} vs finite difference {numeric}");
        }
    }

    #[test]
    fn clipping_scales_to_the_norm() {
        let v = candle_core::Var::new(&[3.0f32, 4.0], &Device::Cpu).unwrap();
        let loss = (v.as_tensor() * &Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap()).unwrap().sum_all().unwrap();
        let mut grads = loss.backward().unwrap();
        let norm = clip_gradients(&mut grads, std::slice::from_ref(&v), 0.5).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let g = grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!((g[0] - 0.3).abs() < 1e-5 && (g[1] - 0.4).abs() < 1e-5, "{g:?}");
    }
}
