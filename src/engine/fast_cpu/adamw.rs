//! Global-norm gradient clipping and AdamW on the flat buffers, as candle-nn's AdamW after
//! PyTorch's `clip_grad_norm_` (and `kernels/elementwise.cu`): the gradient is scaled by
//! `min(1, max_norm/(‖g‖ + 1e-6))`, then `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
//! `θ ← θ·(1 − lr·λ) − lr·m̂/(√v̂ + ε)`.

use pulp::Arch;
use rayon::prelude::*;

/// Elements per parallel work item.
pub const CHUNK: usize = 1 << 14;

/// The optimiser's settings.
#[derive(Debug, Clone, Copy)]
pub struct Hyper {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay rate β1.
    pub beta1: f64,
    /// Second-moment decay rate β2.
    pub beta2: f64,
    /// ε added to the second moment's square root.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Gradient norm clip.
    pub max_norm: f64,
}

/// `‖g‖²`, summed per fixed chunk (eight lanes in f64) and then over chunks in order.
pub fn sqnorm(g: &[f32], partials: &mut [f64]) -> f64 {
    let n = g.len().div_ceil(CHUNK);
    partials[..n].par_iter_mut().zip(g.par_chunks(CHUNK)).for_each(|(p, c)| {
        let mut acc = [0f64; 8];
        let mut it = c.chunks_exact(8);
        for x in &mut it {
            for i in 0..8 {
                acc[i] += (x[i] as f64) * (x[i] as f64);
            }
        }
        for (i, &x) in it.remainder().iter().enumerate() {
            acc[i] += (x as f64) * (x as f64);
        }
        *p = acc.iter().sum();
    });
    partials[..n].iter().sum()
}

/// One clipped AdamW update at step `t` (counted from 1) given the gradient norm.
pub fn update(hp: &Hyper, t: usize, norm: f64, params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32]) {
    let t_i = i32::try_from(t).unwrap_or(i32::MAX);
    let scale_m = (1.0 / (1.0 - hp.beta1.powi(t_i))) as f32;
    let scale_v = (1.0 / (1.0 - hp.beta2.powi(t_i))) as f32;
    let coef = (hp.max_norm / (norm + 1e-6)).min(1.0) as f32;
    let (lr, b1, b2, eps) = (hp.lr as f32, hp.beta1 as f32, hp.beta2 as f32, hp.eps as f32);
    let decay = 1.0 - (hp.lr * hp.weight_decay) as f32;
    let arch = Arch::new();
    params
        .par_chunks_mut(CHUNK)
        .zip(grads.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            arch.dispatch(|| {
                for (((pi, &gi), mi), vi) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let g = gi * coef;
                    let mn = b1 * *mi + (1.0 - b1) * g;
                    let vn = b2 * *vi + (1.0 - b2) * g * g;
                    *mi = mn;
                    *vi = vn;
                    *pi = *pi * decay - lr * ((mn * scale_m) / ((vn * scale_v).sqrt() + eps));
                }
            });
        });
}
