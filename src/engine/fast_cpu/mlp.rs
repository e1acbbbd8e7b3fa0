//! The selector MLPs and heads of DESIGN §3.3, forward and backward, for all voxels at once.
//!
//! The three MLPs read the same positional encoding, so their first layers run as one product
//! `[V, 192] × [192, 3·H]`; the second and last layers are one product per MLP on column blocks
//! of the shared activations. GELU (erf form) and its derivative are evaluated together in the
//! forward with a vectorisable erfc/exp (absolute error below 1e-7), and the derivative is kept
//! for the backward. The heads (tanh, softmax, sigmoid) and the warm-up regulariser R of §3.5
//! are per voxel, as `kernels/selectors.cu`.

use super::gemm::{gemm_rows, rm, view};
use super::layout::Layout;
use crate::model::encoder::HIDDEN;
use crate::model::posenc::ENC_DIM;
use pulp::Arch;
use rayon::prelude::*;

/// Rows per parallel work item of the element-wise passes.
const ROWS: usize = 64;
/// Voxel rows per work item of the products over voxels.
const RB: usize = 512;
/// Output rows per work item of the weight-gradient products (reductions over all voxels).
const WB: usize = 32;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

/// `e^x` for x in [-87, 88] (clamped), relative error ~1e-7, branch-free so that loops over it
/// vectorise: `2^n · e^r` with `n = round(x/ln 2)` and a degree-7 Taylor polynomial for
/// `|r| ≤ ln 2 / 2`.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Adding 1.5·2^23 rounds to an integer (ties to even) held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let t = x * LOG2E + MAGIC;
    let n_bits = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let n = t - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    f32::from_bits((p.to_bits() as i32).wrapping_add(n_bits << 23) as u32)
}

/// `(gelu(x), gelu'(x))` with `gelu(x) = x·Φ(x)`, `gelu'(x) = Φ(x) + x·φ(x)`; Φ from the
/// Abramowitz–Stegun 7.1.26 erfc (absolute error ≤ 1.5e-7 on erf, so ≤ 7.5e-8 on Φ).
#[inline(always)]
pub fn gelu_and_grad(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let z = x.abs() * FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let e = exp_f32(-z * z);
    let erfc = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4])))) * e;
    let half = 0.5 * erfc;
    let cdf = if x >= 0.0 { 1.0 - half } else { half };
    (x * cdf, cdf + x * e * INV_SQRT_2PI)
}

/// Activations of the selector chain, kept for the backward; all `[V, 3·H]` except the heads.
pub struct MlpWork {
    /// Voxels V.
    pub v: usize,
    /// GELU outputs and derivatives of the first layers.
    h1: Vec<f32>,
    g1: Vec<f32>,
    /// Same for the second layers.
    h3: Vec<f32>,
    g3: Vec<f32>,
    /// Head inputs `[V, L + 3]`, head outputs (the readout's `sel`), their gradients.
    raw: Vec<f32>,
    /// Head outputs `[V, L + 3]`: the readout's `sel`.
    pub sel: Vec<f32>,
    /// Gradient of the loss with respect to `sel`.
    pub dsel: Vec<f32>,
    draw: Vec<f32>,
    /// Per-voxel terms of R.
    reg: Vec<f32>,
    /// Backward scratch `[V, 3·H]`.
    da3: Vec<f32>,
    da1: Vec<f32>,
    /// Column-sum partials for the bias gradients.
    partials: Vec<f64>,
}

impl MlpWork {
    /// Buffers for an encoder of layout `lay`.
    pub fn new(lay: &Layout) -> Self {
        let (v, sw, h3) = (lay.v, lay.sw(), 3 * HIDDEN);
        Self {
            v,
            h1: vec![0.0; v * h3],
            g1: vec![0.0; v * h3],
            h3: vec![0.0; v * h3],
            g3: vec![0.0; v * h3],
            raw: vec![0.0; v * sw],
            sel: vec![0.0; v * sw],
            dsel: vec![0.0; v * sw],
            draw: vec![0.0; v * sw],
            reg: vec![0.0; v],
            da3: vec![0.0; v * h3],
            da1: vec![0.0; v * h3],
            partials: vec![0.0; v.div_ceil(ROWS) * h3],
        }
    }

    /// Bytes held (for the memory budget in the benchmark's report).
    pub fn bytes(&self) -> usize {
        4 * (self.h1.len() * 6 + self.raw.len() * 4 + self.reg.len()) + 8 * self.partials.len()
    }
}

/// `x += bias` row-wise, then `(h, g) = (gelu(x), gelu'(x))`, in parallel over row blocks.
fn bias_gelu(x: &[f32], bias: &[f32], h: &mut [f32], g: &mut [f32], cols: usize) {
    let arch = Arch::new();
    h.par_chunks_mut(ROWS * cols).zip(g.par_chunks_mut(ROWS * cols)).enumerate().for_each(|(ci, (hc, gc))| {
        let xc = &x[ci * ROWS * cols..ci * ROWS * cols + hc.len()];
        arch.dispatch(|| {
            for ((xr, hr), gr) in xc.chunks_exact(cols).zip(hc.chunks_exact_mut(cols)).zip(gc.chunks_exact_mut(cols)) {
                for (((&xi, &bi), hi), gi) in xr.iter().zip(bias).zip(hr.iter_mut()).zip(gr.iter_mut()) {
                    let (a, b) = gelu_and_grad(xi + bi);
                    *hi = a;
                    *gi = b;
                }
            }
        });
    });
}

/// `d *= g` element-wise, in parallel.
fn mul_in_place(d: &mut [f32], g: &[f32]) {
    let arch = Arch::new();
    d.par_chunks_mut(ROWS * 3 * HIDDEN).zip(g.par_chunks(ROWS * 3 * HIDDEN)).for_each(|(dc, gc)| {
        arch.dispatch(|| {
            for (a, &b) in dc.iter_mut().zip(gc) {
                *a *= b;
            }
        });
    });
}

/// Column sums of `x` `[rows, cols]` into `out` (overwritten): per fixed block of rows in f64,
/// then the blocks in order, so the result does not depend on scheduling.
fn column_sums(x: &[f32], rows: usize, cols: usize, partials: &mut [f64], out: &mut [f32]) {
    let blocks = rows.div_ceil(ROWS);
    partials[..blocks * cols].par_chunks_mut(cols).enumerate().for_each(|(bi, p)| {
        p.fill(0.0);
        for r in bi * ROWS..((bi + 1) * ROWS).min(rows) {
            for (pi, &xi) in p.iter_mut().zip(&x[r * cols..(r + 1) * cols]) {
                *pi += xi as f64;
            }
        }
    });
    for (c, o) in out.iter_mut().enumerate() {
        *o = (0..blocks).map(|bi| partials[bi * cols + c]).sum::<f64>() as f32;
    }
}

/// Selector MLPs and heads for all voxels: fills the activations, `sel` and the regulariser
/// terms; returns R (DESIGN §3.5) summed in a fixed order.
pub fn forward(lay: &Layout, params: &[f32], pe: &[f32], w: &mut MlpWork) -> f64 {
    let (v, h, sw) = (lay.v, HIDDEN, lay.sw());
    let h3 = 3 * h;
    // First layers, all three MLPs in one product: A1 = pe · W1ᵀ, [V, 3H].
    gemm_rows(&mut w.da1, 0, v, h3, h3, false, rm(pe, v, ENC_DIM), view(params, lay.w1, h3, ENC_DIM, ENC_DIM).transpose(), RB);
    bias_gelu(&w.da1, &params[lay.b1..lay.b1 + h3], &mut w.h1, &mut w.g1, h3);
    // Second layers: one product per MLP on its column block.
    for m in 0..3 {
        let w3 = view(params, lay.w3 + m * h * h, h, h, h).transpose();
        gemm_rows(&mut w.da3, m * h, v, h, h3, false, view(&w.h1, m * h, v, h, h3), w3, RB);
    }
    bias_gelu(&w.da3, &params[lay.b3..lay.b3 + h3], &mut w.h3, &mut w.g3, h3);
    for m in 0..3 {
        let (k, col) = lay.head(m);
        let w5 = view(params, lay.w5 + col * h, k, h, h).transpose();
        gemm_rows(&mut w.raw, col, v, k, sw, false, view(&w.h3, m * h, v, h, h3), w5, RB);
    }
    heads_forward(lay.l, &w.raw, &mut w.sel, &mut w.reg);
    // Sum of the per-voxel terms in fixed blocks, then in order.
    let sums: Vec<f64> = w.reg.par_chunks(ROWS * 16).map(|c| c.iter().map(|&x| x as f64).sum::<f64>()).collect();
    sums.iter().sum::<f64>() / v as f64
}

/// Backward of the heads and MLPs from `w.dsel` (the readout's gradient with respect to the head
/// outputs) plus `reg_weight` times the gradient of R; writes the MLP parameters' gradients.
pub fn backward(lay: &Layout, params: &[f32], pe: &[f32], w: &mut MlpWork, grads: &mut [f32], reg_weight: f32) {
    let (v, h, sw) = (lay.v, HIDDEN, lay.sw());
    let h3 = 3 * h;
    heads_backward(lay.l, &w.sel, &w.dsel, &mut w.draw, reg_weight);
    for m in 0..3 {
        let (k, col) = lay.head(m);
        // dW5 [K, H] = d rawᵀ · h3; d h3 [V, H] = d raw · W5.
        let (draw, h3m) = (view(&w.draw, col, v, k, sw), view(&w.h3, m * h, v, h, h3));
        gemm_rows(grads, lay.w5 + col * h, k, h, h, false, draw.transpose(), h3m, WB);
        gemm_rows(&mut w.da3, m * h, v, h, h3, false, draw, view(params, lay.w5 + col * h, k, h, h), RB);
    }
    mul_in_place(&mut w.da3, &w.g3);
    column_sums(&w.da3, v, h3, &mut w.partials, &mut grads[lay.b3..lay.b3 + h3]);
    for m in 0..3 {
        // dW3 = d a3ᵀ · h1; d h1 = d a3 · W3.
        let (da3, h1m) = (view(&w.da3, m * h, v, h, h3), view(&w.h1, m * h, v, h, h3));
        gemm_rows(grads, lay.w3 + m * h * h, h, h, h, false, da3.transpose(), h1m, WB);
        gemm_rows(&mut w.da1, m * h, v, h, h3, false, da3, view(params, lay.w3 + m * h * h, h, h, h), RB);
    }
    mul_in_place(&mut w.da1, &w.g1);
    column_sums(&w.da1, v, h3, &mut w.partials, &mut grads[lay.b1..lay.b1 + h3]);
    // dW1 [3H, 192] = d a1ᵀ · pe, all three MLPs in one product.
    gemm_rows(grads, lay.w1, h3, ENC_DIM, ENC_DIM, false, rm(&w.da1, v, h3).transpose(), rm(pe, v, ENC_DIM), WB);
}

/// tanh, softmax and sigmoid of one voxel's head inputs; returns its term of R.
#[inline(always)]
fn head_row(l: usize, r: &[f32], o: &mut [f32]) -> f32 {
    o[0] = r[0].tanh();
    o[1] = r[1].tanh();
    let mx = r[2..2 + l].iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut z = 0f32;
    for i in 0..l {
        let e = (r[2 + i] - mx).exp();
        o[2 + i] = e;
        z += e;
    }
    let mut negent = 0f32;
    for i in 0..l {
        let p = o[2 + i] / z;
        o[2 + i] = p;
        negent += p * (p + 1e-8).ln();
    }
    let s = 1.0 / (1.0 + (-r[2 + l]).exp());
    o[2 + l] = s;
    let entropy = if l >= 2 { negent / (l as f32).ln() } else { 0.0 };
    entropy + (s - 0.5) * (s - 0.5)
}

fn heads_forward(l: usize, raw: &[f32], sel: &mut [f32], reg: &mut [f32]) {
    let sw = l + 3;
    sel.par_chunks_mut(ROWS * sw).zip(reg.par_chunks_mut(ROWS)).enumerate().for_each(|(ci, (sc, rc))| {
        for (j, (o, t)) in sc.chunks_exact_mut(sw).zip(rc.iter_mut()).enumerate() {
            let v = ci * ROWS + j;
            *t = head_row(l, &raw[v * sw..(v + 1) * sw], o);
        }
    });
}

/// d raw from d sel plus `reg_weight`·dR/d raw (R averaged over the V voxels).
fn heads_backward(l: usize, sel: &[f32], dsel: &[f32], draw: &mut [f32], reg_weight: f32) {
    let sw = l + 3;
    let v_count = sel.len() / sw;
    let ent_scale = if l >= 2 { reg_weight / ((l as f32).ln() * v_count as f32) } else { 0.0 };
    let spread_scale = reg_weight * 2.0 / v_count as f32;
    draw.par_chunks_mut(ROWS * sw).enumerate().for_each(|(ci, dc)| {
        for (j, dr) in dc.chunks_exact_mut(sw).enumerate() {
            let v = ci * ROWS + j;
            let o = &sel[v * sw..(v + 1) * sw];
            let g = &dsel[v * sw..(v + 1) * sw];
            dr[0] = g[0] * (1.0 - o[0] * o[0]);
            dr[1] = g[1] * (1.0 - o[1] * o[1]);
            // d/dp [p·log(p + ε)] = log(p + ε) + p/(p + ε).
            let mut dot = 0f32;
            for i in 0..l {
                let p = o[2 + i];
                let gp = g[2 + i] + ent_scale * ((p + 1e-8).ln() + p / (p + 1e-8));
                dr[2 + i] = gp;
                dot += p * gp;
            }
            for i in 0..l {
                dr[2 + i] = o[2 + i] * (dr[2 + i] - dot);
            }
            let s = o[2 + l];
            dr[2 + l] = (g[2 + l] + spread_scale * (s - 0.5)) * s * (1.0 - s);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_gelu_match_the_library_functions() {
        let mut worst_exp = 0f64;
        let mut worst_gelu = 0f64;
        let mut worst_grad = 0f64;
        for i in -4000..=4000 {
            let x = i as f32 * 0.02;
            let e = exp_f32(x) as f64;
            let want = (x as f64).exp();
            worst_exp = worst_exp.max(((e - want) / want).abs());
            let (g, dg) = gelu_and_grad(x);
            let xd = x as f64;
            let cdf = 0.5 * (1.0 + erf(xd / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
            worst_gelu = worst_gelu.max((g as f64 - xd * cdf).abs() / xd.abs().max(1.0));
            worst_grad = worst_grad.max((dg as f64 - (cdf + xd * pdf)).abs());
        }
        assert!(worst_exp < 3e-7, "exp relative error {worst_exp}");
        assert!(worst_gelu < 3e-7, "gelu error {worst_gelu}");
        assert!(worst_grad < 1e-6, "gelu' error {worst_grad}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(-200.0) > 0.0 && exp_f32(-200.0) < 1e-37);
    }

    /// erf to ~1e-15 by its Taylor series (|x| ≤ 3) or continued fraction, for the test above.
    fn erf(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc(x) ~ e^{-x²}/(x√π)·(1 − 1/(2x²) + 3/(4x⁴) − ...): enough at |x| > 3 for 1e-9.
            let a = x.abs();
            let s = 1.0 - 1.0 / (2.0 * a * a) + 3.0 / (4.0 * a.powi(4)) - 15.0 / (8.0 * a.powi(6));
            let erfc = (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * s;
            return x.signum() * (1.0 - erfc);
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }
}
