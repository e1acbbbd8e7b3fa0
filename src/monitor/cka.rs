//! Linear CKA with the unbiased HSIC estimator (DESIGN §5; Song et al. 2012, as used by Nguyen,
//! Raghu and Kornblith 2021), computed in feature space so that no N×N Gram matrix is formed.
//!
//! For features `X` `[n, p]` and `Y` `[n, q]` with linear kernels `K = XXᵀ`, `L = YYᵀ`, let `K̃`,
//! `L̃` be the Gram matrices with their diagonals set to zero. The unbiased estimator is
//!
//! ```text
//! HSIC₁(K, L) = [ tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1 ] / (n(n−3))
//! ```
//!
//! and `CKA = HSIC₁(K, L) / √(HSIC₁(K, K) · HSIC₁(L, L))`. With `a_i = ‖x_i‖²`, `s = Xᵀ1`:
//! `tr(K̃L̃) = ‖XᵀY‖²_F − aᵀb`, `1ᵀK̃1 = ‖s‖² − Σa`, `K̃1 = Xs − a`. Cost `O(n·p·q)` instead of
//! `O(n²·(p+q))`, and only the `[p, q]` cross-product is materialised.
//!
//! The estimator is invariant to adding a constant row to `X` (its U-centring cancels kernel
//! terms of the form `f(x) + f(x') + c`), so features are column-centred first: this changes
//! nothing in exact arithmetic and removes the cancellation that large feature means (ReLU
//! outputs, for example) would otherwise cause in `‖XᵀY‖² − aᵀb`.

use crate::data::{Array, FeatureSource};
use crate::engine::fast_cpu::gemm::{gemm, gemm_rows, rm, view_mut};
use faer::Par;
use crate::error::{Error, Result};

/// The statistics of one side of the comparison (one layer's features), computed once.
#[derive(Debug, Clone)]
pub struct GramStats {
    /// Number of images (rows).
    pub n: usize,
    /// Number of features (columns).
    pub p: usize,
    /// Column-centred features `[n, p]` f32, row-major.
    x: Vec<f32>,
    /// `a_i = ‖x_i‖²`.
    a: Vec<f64>,
    /// `K̃1 = Xs − a`.
    u: Vec<f64>,
    /// `1ᵀK̃1`.
    ones: f64,
    /// `HSIC₁(K, K)`.
    pub hsic_self: f64,
}

/// Column-centres `[n, p]` row-major data in f64 and returns it as f32.
fn centre(data: &[f32], n: usize, p: usize) -> Vec<f32> {
    let mut mean = vec![0f64; p];
    for row in data.chunks_exact(p) {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += x as f64;
        }
    }
    for m in &mut mean {
        *m /= n as f64;
    }
    let mut out = Vec::with_capacity(n * p);
    for row in data.chunks_exact(p) {
        out.extend(row.iter().zip(&mean).map(|(&x, &m)| (x as f64 - m) as f32));
    }
    out
}

/// Output rows per work item of the products below: fixed, so every element is summed in the
/// same order whatever the thread count.
const ROW_BLOCK: usize = 32;

/// `‖XᵀY‖²_F` (accumulated in f64) for row-major `x` `[n, p]` and `y` `[n, q]`: one faer
/// product per block of output rows on rayon's pool (SIMD GEMM, no spinning barrier).
fn cross_frob2(x: &[f32], p: usize, y: &[f32], q: usize, n: usize) -> Result<f64> {
    let mut prod: Vec<f32> = crate::data::limits::try_zeroed("CKA cross-product [p, q]", p * q)?;
    gemm_rows(&mut prod, 0, p, q, q, false, rm(x, n, p).transpose(), rm(y, n, q), ROW_BLOCK);
    Ok(prod.iter().map(|&v| (v as f64) * (v as f64)).sum())
}

/// `‖XᵀX‖²_F` for row-major `x` `[n, p]`: the product is symmetric, so each block of output
/// rows computes only its columns from the diagonal on and counts the entries right of its
/// diagonal block twice (a little over half the multiply-adds of [`cross_frob2`]).
fn self_frob2(x: &[f32], p: usize, n: usize) -> Result<f64> {
    use rayon::prelude::*;
    let blocks: Vec<usize> = (0..p).step_by(ROW_BLOCK).collect();
    let parts = blocks
        .par_iter()
        .map(|&r0| -> Result<f64> {
            let rows = ROW_BLOCK.min(p - r0);
            let cols = p - r0;
            let mut prod: Vec<f32> = crate::data::limits::try_zeroed("CKA self-product block", rows * cols)?;
            let xt = rm(x, n, p).transpose();
            gemm(view_mut(&mut prod, 0, rows, cols, cols), false, xt.subrows(r0, rows), xt.transpose().subcols(r0, cols), Par::Seq);
            Ok(prod
                .chunks_exact(cols)
                .map(|row| {
                    let sq = |v: &[f32]| v.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
                    sq(&row[..rows]) + 2.0 * sq(&row[rows..])
                })
                .sum())
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(parts.iter().sum())
}

fn hsic(n: usize, tr_kl: f64, ones_k: f64, ones_l: f64, u_dot_v: f64) -> f64 {
    let n = n as f64;
    (tr_kl + ones_k * ones_l / ((n - 1.0) * (n - 2.0)) - 2.0 / (n - 2.0) * u_dot_v) / (n * (n - 3.0))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl GramStats {
    /// Statistics of `[n, p]` features. Needs `n ≥ 4` (the estimator divides by `n − 3`).
    pub fn new(features: &Array) -> Result<Self> {
        if features.shape.len() != 2 || features.data.len() != features.shape.iter().product::<usize>() {
            return Err(Error::invalid(format!(
                "CKA needs [images, channels] features, got shape {:?}",
                features.shape
            )));
        }
        let (n, p) = (features.shape[0], features.shape[1]);
        if n < 4 || p == 0 {
            return Err(Error::invalid(format!(
                "CKA needs at least 4 images and 1 channel, got {n} images and {p} channels"
            )));
        }
        let c = centre(&features.data, n, p);
        let mut a = Vec::with_capacity(n);
        let mut s = vec![0f64; p];
        for row in c.chunks_exact(p) {
            let mut ai = 0f64;
            for (sk, &x) in s.iter_mut().zip(row) {
                let x = x as f64;
                ai += x * x;
                *sk += x;
            }
            a.push(ai);
        }
        let u: Vec<f64> = c
            .chunks_exact(p)
            .zip(&a)
            .map(|(row, &ai)| row.iter().zip(&s).map(|(&x, &sk)| x as f64 * sk).sum::<f64>() - ai)
            .collect();
        let ones = dot(&s, &s) - a.iter().sum::<f64>();
        let tr_kk = self_frob2(&c, p, n)? - dot(&a, &a);
        let hsic_self = hsic(n, tr_kk, ones, ones, dot(&u, &u));
        Ok(Self { n, p, x: c, a, u, ones, hsic_self })
    }

    /// `HSIC₁` between these features and `other`'s (same images, in the same order).
    pub fn hsic_with(&self, other: &GramStats) -> Result<f64> {
        if self.n != other.n {
            return Err(Error::mismatch(format!(
                "CKA compares features of the same images: {} images against {}",
                self.n, other.n
            )));
        }
        let tr = cross_frob2(&self.x, self.p, &other.x, other.p, self.n)? - dot(&self.a, &other.a);
        Ok(hsic(self.n, tr, self.ones, other.ones, dot(&self.u, &other.u)))
    }

    /// Linear CKA against `other`. A side whose features are constant over the images (or
    /// otherwise carry no variance the estimator can see) has no similarity to anything: 0.
    pub fn cka(&self, other: &GramStats) -> Result<f64> {
        let denom = self.hsic_self * other.hsic_self;
        if !(self.hsic_self > 0.0 && other.hsic_self > 0.0 && denom.is_finite()) {
            return Ok(0.0);
        }
        let v = self.hsic_with(other)? / denom.sqrt();
        Ok(if v.is_finite() { v } else { 0.0 })
    }
}

/// Per-layer CKA of `features`' global tokens against `reference` (one [`GramStats`] per layer,
/// same images): the monitor's drift. In parallel over layers: each layer's statistics have
/// serial `O(n·p)` parts beside their products, and the layers are independent (the same
/// result on any thread count).
pub fn layer_cka(reference: &[GramStats], features: &dyn FeatureSource) -> Result<Vec<f64>> {
    use rayon::prelude::*;
    if features.n_layers() != reference.len() {
        return Err(Error::mismatch(format!(
            "CKA: {} layers against a reference of {}",
            features.n_layers(),
            reference.len()
        )));
    }
    reference.par_iter().enumerate().map(|(l, r)| r.cka(&GramStats::new(&features.global_tokens(l)?)?)).collect()
}

/// Linear CKA (unbiased HSIC) between two `[n, p]` / `[n, q]` feature matrices.
pub fn linear_cka(x: &Array, y: &Array) -> Result<f64> {
    GramStats::new(x)?.cka(&GramStats::new(y)?)
}

/// The direct `O(n²)` computation from the Gram matrices, without centring: the oracle the fast
/// path is tested against.
pub fn linear_cka_direct(x: &Array, y: &Array) -> f64 {
    let gram = |a: &Array| -> Vec<f64> {
        let (n, p) = (a.shape[0], a.shape[1]);
        let mut k = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    k[i * n + j] = (0..p).map(|c| a.data[i * p + c] as f64 * a.data[j * p + c] as f64).sum();
                }
            }
        }
        k
    };
    let n = x.shape[0];
    let hsic_direct = |k: &[f64], l: &[f64]| -> f64 {
        let tr: f64 = k.iter().zip(l).map(|(a, b)| a * b).sum();
        let sk: f64 = k.iter().sum();
        let sl: f64 = l.iter().sum();
        let k1: Vec<f64> = k.chunks(n).map(|r| r.iter().sum()).collect();
        let l1: Vec<f64> = l.chunks(n).map(|r| r.iter().sum()).collect();
        hsic(n, tr, sk, sl, dot(&k1, &l1))
    };
    let (k, l) = (gram(x), gram(y));
    hsic_direct(&k, &l) / (hsic_direct(&k, &k) * hsic_direct(&l, &l)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn randn(n: usize, p: usize, rng: &mut Rng) -> Array {
        Array::new(vec![n, p], (0..n * p).map(|_| rng.normal() as f32).collect()).unwrap()
    }

    /// `x · Rᵀ` for a random orthogonal `R` (Gram–Schmidt on a Gaussian matrix).
    fn rotate(x: &Array, rng: &mut Rng) -> Array {
        let p = x.shape[1];
        let mut q: Vec<Vec<f64>> = Vec::new();
        while q.len() < p {
            let mut v: Vec<f64> = (0..p).map(|_| rng.normal()).collect();
            for b in &q {
                let d: f64 = v.iter().zip(b).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(b).for_each(|(a, b)| *a -= d * b);
            }
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            v.iter_mut().for_each(|a| *a /= norm);
            q.push(v);
        }
        let n = x.shape[0];
        let mut out = vec![0f32; n * p];
        for i in 0..n {
            for (r, row) in q.iter().enumerate() {
                out[i * p + r] = (0..p).map(|c| x.data[i * p + c] as f64 * row[c]).sum::<f64>() as f32;
            }
        }
        Array::new(vec![n, p], out).unwrap()
    }

    /// The symmetric self-product against the full cross product: widths below, at and past
    /// one row block, and a block boundary that leaves a short last block.
    #[test]
    fn self_product_uses_symmetry_exactly() {
        let mut rng = Rng::new(4);
        for p in [1, 7, 32, 45, 70] {
            let x = randn(23, p, &mut rng);
            let full = cross_frob2(&x.data, p, &x.data, p, 23).unwrap();
            let half = self_frob2(&x.data, p, 23).unwrap();
            assert!((full - half).abs() <= 1e-5 * full, "p {p}: {full} vs {half}");
        }
    }

    #[test]
    fn matches_the_direct_gram_computation() {
        let mut rng = Rng::new(1);
        let x = randn(40, 7, &mut rng);
        // Correlated with x, with an offset mean so centring matters for the fast path.
        let mut y = randn(40, 5, &mut rng);
        for i in 0..40 {
            for c in 0..5 {
                y.data[i * 5 + c] += 0.8 * x.data[i * 7 + c] + 3.0;
            }
        }
        let fast = linear_cka(&x, &y).unwrap();
        let direct = linear_cka_direct(&x, &y);
        assert!((fast - direct).abs() < 1e-5, "fast {fast} direct {direct}");
        assert!(fast > 0.2, "{fast}");
    }

    #[test]
    fn identical_is_one_unrelated_is_near_zero() {
        let mut rng = Rng::new(2);
        let x = randn(500, 32, &mut rng);
        assert!((linear_cka(&x, &x).unwrap() - 1.0).abs() < 1e-6);
        let y = randn(500, 32, &mut rng);
        let c = linear_cka(&x, &y).unwrap();
        // Unbiased: centred on 0, with spread ~ 1/n.
        assert!(c.abs() < 0.02, "{c}");
    }

    #[test]
    fn invariant_to_rotation_scaling_and_offsets() {
        let mut rng = Rng::new(3);
        let x = randn(200, 16, &mut rng);
        let mut y = randn(200, 16, &mut rng);
        for (v, &xv) in y.data.iter_mut().zip(&x.data) {
            *v = 0.5 * *v + xv;
        }
        let base = linear_cka(&x, &y).unwrap();
        let rot = rotate(&y, &mut rng);
        assert!((linear_cka(&x, &rot).unwrap() - base).abs() < 1e-5);
        let mut scaled = y.clone();
        scaled.data.iter_mut().for_each(|v| *v *= 7.5);
        assert!((linear_cka(&x, &scaled).unwrap() - base).abs() < 1e-5);
        let mut shifted = y.clone();
        shifted.data.iter_mut().for_each(|v| *v += 100.0);
        assert!((linear_cka(&x, &shifted).unwrap() - base).abs() < 1e-4);
        // Symmetric.
        assert!((linear_cka(&y, &x).unwrap() - base).abs() < 1e-6);
    }

    #[test]
    fn constant_features_and_tiny_inputs() {
        let mut rng = Rng::new(4);
        let x = randn(10, 3, &mut rng);
        let k = Array::new(vec![10, 3], vec![2.0; 30]).unwrap();
        assert_eq!(linear_cka(&x, &k).unwrap(), 0.0);
        assert!(GramStats::new(&randn(3, 3, &mut rng)).is_err());
        assert!(linear_cka(&x, &randn(11, 3, &mut rng)).is_err());
    }
}
