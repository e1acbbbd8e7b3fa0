//! Ridge regression with a per-target, cross-validated choice of the penalty: the scheme of
//! himalaya's `RidgeCV` (solver "svd"), reimplemented from its documented behaviour.
//!
//! Semantics (all checked against himalaya by `tests/himalaya/`):
//! - the model is `ŷ = x·W (+ b)` minimising `‖XW − Y‖² + α‖W‖²` column by column;
//! - for every fold the training rows are decomposed **once** and every α of the grid reuses
//!   that decomposition;
//! - the score of (fold, α, target) is the negative mean squared error on the fold's held-out
//!   rows (himalaya's default `l2_neg_loss`), averaged over folds in f64;
//! - ties go to the larger α (himalaya adds `1e-10·ln α` to the fold-averaged score), then to
//!   the first α in the grid;
//! - with `fit_intercept`, X and Y are centred with the training-part means of each fold (and
//!   with the full means for the refit), and `intercept = mean(Y) − mean(X)·W`;
//! - the final weights are refitted on **all** rows, each target with its own best α.
//!
//! How it is fast: the decomposition is a symmetric eigendecomposition of the smaller Gram
//! matrix (`XᵀX` when there are at least as many rows as features, the kernel `XXᵀ` otherwise),
//! in f64. Held-out predictions for penalty α are `A·diag(λ/(α+λ))·diag(1/λ)·B` with `A` the
//! held-out rows in the eigenbasis and `B` the projected training targets. The shrinkage factors
//! `λ_j/(α+λ_j)` of a whole α grid form a Cauchy-like matrix of low numerical rank, so the grid
//! is evaluated through its truncated SVD (rows normalised; components above 1e-9, far below
//! f32 rounding): `R` products instead of one per α, with `R ≈ 8–12` for a 20-value grid. The
//! residuals of every α are then formed and squared in one cache-resident pass.

use rayon::prelude::*;

use crate::baseline::linalg::{gemm_f32, gemm_f64, rm, rm_cols, rm_cols_mut, rm_mut, sym_eig, thin_svd};
use crate::data::Array;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Accuracy of the low-rank evaluation of the shrinkage factors, relative to each α's row.
const SHRINK_TOL: f64 = 1e-9;
/// Weight of the tie-break toward larger penalties, as in himalaya.
const TIE_BREAK: f64 = 1e-10;

/// How the rows are split for cross-validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Folds {
    /// scikit-learn's `KFold(k)` without shuffling (what himalaya does with `cv=k`): k
    /// contiguous blocks of rows, the first `n % k` blocks one row larger.
    KFold(usize),
    /// The held-out rows of each fold; each fold trains on all other rows.
    Given(Vec<Vec<usize>>),
}

/// Settings of [`ridge_cv`]. The defaults are himalaya's `RidgeCV()` defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RidgeCv {
    /// Penalty grid (positive, finite).
    pub alphas: Vec<f64>,
    /// How the rows are split for cross-validation.
    pub folds: Folds,
    /// Centre X and Y (per fold) and fit an intercept.
    pub fit_intercept: bool,
    /// Targets processed together (memory bound); 0 picks a size automatically.
    pub n_targets_batch: usize,
}

impl Default for RidgeCv {
    fn default() -> Self {
        Self { alphas: vec![0.1, 1.0], folds: Folds::KFold(5), fit_intercept: false, n_targets_batch: 0 }
    }
}

/// `n` log-spaced values from `10^lo` to `10^hi` (numpy's `logspace`).
pub fn logspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![10f64.powf(lo)],
        _ => (0..n).map(|i| 10f64.powf(lo + (hi - lo) * i as f64 / (n - 1) as f64)).collect(),
    }
}

/// Held-out rows of scikit-learn's `KFold(k)` on `n` rows (no shuffling).
pub fn kfold(n: usize, k: usize) -> Vec<Vec<usize>> {
    let k = k.max(1);
    let mut out = Vec::with_capacity(k);
    let mut start = 0;
    for f in 0..k {
        let size = n / k + usize::from(f < n % k);
        out.push((start..start + size).collect());
        start += size;
    }
    out
}

/// K folds of a seeded random permutation of `0..n` (each fold's indices sorted).
pub fn shuffled_kfold(n: usize, k: usize, seed: u64) -> Vec<Vec<usize>> {
    let perm = Rng::derive(seed, "ridge.folds").permutation(n);
    kfold(n, k)
        .into_iter()
        .map(|f| {
            let mut idx: Vec<usize> = f.into_iter().map(|i| perm[i]).collect();
            idx.sort_unstable();
            idx
        })
        .collect()
}

/// A fitted cross-validated ridge.
#[derive(Debug, Clone)]
pub struct RidgeCvFit {
    /// Columns of X.
    pub n_features: usize,
    /// Columns of Y.
    pub n_targets: usize,
    /// The penalty grid searched.
    pub alphas: Vec<f64>,
    /// Index into `alphas` of each target's best penalty.
    pub best_alpha_index: Vec<usize>,
    /// Each target's best penalty.
    pub best_alphas: Vec<f64>,
    /// Fold-averaged score (negative mean squared error) at the best penalty, without the
    /// tie-break term.
    pub cv_scores: Vec<f64>,
    /// `[n_features, n_targets]` row-major weights, refitted on all rows.
    pub coef: Vec<f32>,
    /// `[n_targets]`; zeros without `fit_intercept`.
    pub intercept: Vec<f32>,
    /// Feature and target means of the training rows (zeros without `fit_intercept`); `predict`
    /// centres with them, which loses fewer digits than adding `intercept` to raw products.
    pub x_mean: Vec<f64>,
    /// Target means of the training rows.
    pub y_mean: Vec<f32>,
}

impl RidgeCvFit {
    /// Predictions `[m, n_targets]` (row-major) for the `[m, n_features]` rows `x`.
    pub fn predict(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let (p, t) = (self.n_features, self.n_targets);
        if x.len() != m * p {
            return Err(Error::mismatch(format!(
                "predict: {} values for {m} rows of {p} features",
                x.len()
            )));
        }
        let mut out = vec![0.0f32; m * t];
        if self.x_mean.iter().all(|&v| v == 0.0) {
            gemm_f32(rm_mut(&mut out, m, t), false, rm(x, m, p), rm(&self.coef, p, t));
        } else {
            let xc: Vec<f32> = x
                .par_chunks(p.max(1))
                .flat_map_iter(|r| r.iter().zip(&self.x_mean).map(|(&v, &mu)| (v as f64 - mu) as f32))
                .collect();
            gemm_f32(rm_mut(&mut out, m, t), false, rm(&xc, m, p), rm(&self.coef, p, t));
        }
        if self.y_mean.iter().any(|&b| b != 0.0) {
            out.par_chunks_mut(t.max(1)).for_each(|row| {
                row.iter_mut().zip(&self.y_mean).for_each(|(y, b)| *y += b);
            });
        }
        Ok(out)
    }
}

/// One decomposition of (centred) rows: predictions for new centred rows `Xn` with penalty α
/// are `(Xn·proj)·diag(1/(α+λ))·(eᵀ·Y)`, and the weights are `proj·diag(1/(α+λ))·(eᵀ·Y)`.
struct Decomp {
    k: usize,
    /// Kept eigenvalues (numerically nonzero).
    lam: Vec<f64>,
    /// `[rows, k]`: `X·V` (rows ≥ features) or `U` (kernel form).
    e: Vec<f32>,
    /// `[p, k]`: `V` or `Xᵀ·U`, and the same in f64 (for the held-out rows of each fold).
    proj: Vec<f32>,
    proj64: Vec<f64>,
}

/// Rows `idx` of a row-major `[_, p]` matrix in f64, minus `mean` when given (centring in f64
/// keeps the digits that f32 would lose to a large offset).
fn gather_rows(x: &[f32], p: usize, idx: &[usize], mean: Option<&[f64]>) -> Vec<f64> {
    let mut out = vec![0.0f64; idx.len() * p];
    out.par_chunks_mut(p.max(1)).zip(idx.par_iter()).for_each(|(dst, &i)| {
        let src = &x[i * p..(i + 1) * p];
        match mean {
            Some(m) => dst.iter_mut().zip(src).zip(m).for_each(|((d, &s), &mu)| *d = s as f64 - mu),
            None => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s as f64),
        }
    });
    out
}

/// Column means of a row-major `[rows, p]` matrix.
fn col_means64(x: &[f64], rows: usize, p: usize) -> Vec<f64> {
    let mut m = vec![0.0f64; p];
    for r in x.chunks_exact(p.max(1)).take(rows) {
        m.iter_mut().zip(r).for_each(|(a, &v)| *a += v);
    }
    m.iter_mut().for_each(|a| *a /= rows.max(1) as f64);
    m
}

fn to_f32(x: &[f64]) -> Vec<f32> {
    x.par_iter().map(|&v| v as f32).collect()
}

/// Decomposes centred rows `x` (`[rows, p]`, f64). The small factors (`e`, `proj`) are
/// formed in f64 and rounded once, so directions with small eigenvalues keep their digits; the
/// products with the targets are then done in f32.
fn decompose(x64: &[f64], rows: usize, p: usize) -> Result<Decomp> {
    let primal = rows >= p;
    let dim = if primal { p } else { rows };
    let mut g = vec![0.0f64; dim * dim];
    if primal {
        gemm_f64(rm_mut(&mut g, p, p), rm(x64, rows, p).transpose(), rm(x64, rows, p));
    } else {
        gemm_f64(rm_mut(&mut g, rows, rows), rm(x64, rows, p), rm(x64, rows, p).transpose());
    }
    let (vals, vecs) = sym_eig(&g, dim)?;
    drop(g);
    let top = vals.iter().cloned().fold(0.0f64, f64::max);
    let tol = top * (rows.max(p) as f64) * f64::EPSILON;
    let keep: Vec<usize> = (0..dim).rev().filter(|&j| vals[j] > tol && vals[j] > 0.0).collect();
    let k = keep.len();
    let lam: Vec<f64> = keep.iter().map(|&j| vals[j]).collect();
    // Kept eigenvectors as a row-major [dim, k] matrix.
    let mut w = vec![0.0f64; dim * k];
    for i in 0..dim {
        for (c, &j) in keep.iter().enumerate() {
            w[i * k + c] = vecs[i * dim + j];
        }
    }
    if primal {
        let mut e = vec![0.0f64; rows * k];
        gemm_f64(rm_mut(&mut e, rows, k), rm(x64, rows, p), rm(&w, p, k));
        Ok(Decomp { k, lam, e: to_f32(&e), proj: to_f32(&w), proj64: w })
    } else {
        let mut proj = vec![0.0f64; p * k];
        gemm_f64(rm_mut(&mut proj, p, k), rm(x64, rows, p).transpose(), rm(&w, rows, k));
        Ok(Decomp { k, lam, e: to_f32(&w), proj: to_f32(&proj), proj64: proj })
    }
}

/// The α grid through a low-rank basis: held-out predictions for `alphas[a]` are
/// `Σ_r coef[a, r] · A·diag(psi[r])·B`.
struct ShrinkBasis {
    r: usize,
    /// `[n_alphas, r]`.
    coef: Vec<f32>,
    /// `[r, k]`.
    psi: Vec<f32>,
}

fn shrink_basis(lam: &[f64], alphas: &[f64]) -> Result<ShrinkBasis> {
    let (na, k) = (alphas.len(), lam.len());
    let direct = || {
        let mut coef = vec![0.0f32; na * na];
        for a in 0..na {
            coef[a * na + a] = 1.0;
        }
        let psi = alphas.iter().flat_map(|&al| lam.iter().map(move |&l| (1.0 / (al + l)) as f32)).collect();
        ShrinkBasis { r: na, coef, psi }
    };
    if na <= 2 || k == 0 {
        return Ok(direct());
    }
    // Rows normalised to unit length, so that every α (also those that shrink everything to
    // almost zero) is represented to the same relative accuracy.
    let mut f: Vec<f64> = alphas.iter().flat_map(|&al| lam.iter().map(move |&l| l / (al + l))).collect();
    let norms: Vec<f64> = f.chunks(k).map(|r| r.iter().map(|x| x * x).sum::<f64>().sqrt()).collect();
    for (r, &nrm) in f.chunks_mut(k).zip(&norms) {
        r.iter_mut().for_each(|x| *x /= nrm);
    }
    let (u, s, v) = thin_svd(&f, na, k)?;
    let rank = s.len();
    let r = s.iter().filter(|&&x| x > SHRINK_TOL).count().max(1);
    if r >= na {
        return Ok(direct());
    }
    let mut coef = vec![0.0f32; na * r];
    for a in 0..na {
        for c in 0..r {
            coef[a * r + c] = (norms[a] * u[a * rank + c] * s[c]) as f32;
        }
    }
    let mut psi = vec![0.0f32; r * k];
    for c in 0..r {
        for j in 0..k {
            psi[c * k + j] = (v[j * rank + c] / lam[j]) as f32;
        }
    }
    Ok(ShrinkBasis { r, coef, psi })
}

/// A fold, prepared once for all target batches.
struct FoldPlan {
    train: Vec<usize>,
    test: Vec<usize>,
    dec: Decomp,
    /// `[n_test, k]`: centred held-out rows in the eigenbasis.
    a: Vec<f32>,
    basis: ShrinkBasis,
}

fn validate(x: &Array, y: &Array, cfg: &RidgeCv) -> Result<(usize, usize, usize)> {
    if x.shape.len() != 2 || y.shape.len() != 2 {
        return Err(Error::shape("X, Y", format!(
            "ridge: X and Y must be 2-D, got shapes {:?} and {:?}",
            x.shape, y.shape
        )));
    }
    let (n, p, t) = (x.shape[0], x.shape[1], y.shape[1]);
    if y.shape[0] != n {
        return Err(Error::mismatch(format!("ridge: X has {n} rows but Y has {}", y.shape[0])));
    }
    if x.data.len() != n * p || y.data.len() != n * t {
        return Err(Error::invalid("ridge: array data does not match its shape"));
    }
    if n < 2 || p == 0 || t == 0 {
        return Err(Error::invalid(format!(
            "ridge: need at least 2 rows, 1 feature and 1 target (got {n} × {p} → {t})"
        )));
    }
    if cfg.alphas.is_empty() || cfg.alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
        return Err(Error::invalid(format!(
            "ridge: the penalty grid must be non-empty, positive and finite, got {:?}",
            cfg.alphas
        )));
    }
    if let Some(i) = x.first_non_finite() {
        return Err(Error::invalid(format!("ridge: X has a non-finite value at {:?}", x.unravel(i))));
    }
    if let Some(i) = y.first_non_finite() {
        return Err(Error::invalid(format!("ridge: Y has a non-finite value at {:?}", y.unravel(i))));
    }
    Ok((n, p, t))
}

fn fold_sets(n: usize, folds: &Folds) -> Result<Vec<(Vec<usize>, Vec<usize>)>> {
    let tests = match folds {
        Folds::KFold(k) => {
            if *k < 2 || *k > n {
                return Err(Error::invalid(format!("ridge: {k} folds for {n} rows; need 2 ≤ folds ≤ rows")));
            }
            kfold(n, *k)
        }
        Folds::Given(f) => f.clone(),
    };
    if tests.is_empty() {
        return Err(Error::invalid("ridge: no cross-validation folds"));
    }
    let mut out = Vec::with_capacity(tests.len());
    for (fi, test) in tests.into_iter().enumerate() {
        let mut mark = vec![false; n];
        for &i in &test {
            if i >= n || mark[i] {
                return Err(Error::invalid(format!(
                    "ridge: fold {fi} lists row {i} twice or out of range (n = {n})"
                )));
            }
            mark[i] = true;
        }
        let train: Vec<usize> = (0..n).filter(|&i| !mark[i]).collect();
        if test.is_empty() || train.is_empty() {
            return Err(Error::invalid(format!("ridge: fold {fi} has an empty training or held-out part")));
        }
        out.push((train, test));
    }
    Ok(out)
}

/// Columns per parallel work item of the scoring pass.
const CHUNK: usize = 64;

/// Adds `Σ_rows (y − μ − Σ_r coef[a,r]·M_r)²` for every α into `err` (`[n_alphas, tb]`).
#[allow(clippy::too_many_arguments)] // the slices and sizes of one scoring pass; no struct would outlive the call
fn score_batch(
    m: &[f32],
    yte: &[f32],
    mu: &[f32],
    nte: usize,
    tb: usize,
    basis: &ShrinkBasis,
    n_alphas: usize,
    err: &mut [f64],
) {
    let r = basis.r;
    let chunks = tb.div_ceil(CHUNK);
    let parts: Vec<Vec<f64>> = (0..chunks)
        .into_par_iter()
        .map(|ci| {
            let c0 = ci * CHUNK;
            let cw = CHUNK.min(tb - c0);
            let mut acc = vec![0.0f64; n_alphas * cw];
            let mut pred = vec![0.0f32; cw];
            for i in 0..nte {
                let y = &yte[i * tb + c0..i * tb + c0 + cw];
                let mu = &mu[c0..c0 + cw];
                for a in 0..n_alphas {
                    pred.iter_mut().for_each(|v| *v = 0.0);
                    for q in 0..r {
                        let w = basis.coef[a * r + q];
                        let row = &m[(q * nte + i) * tb + c0..(q * nte + i) * tb + c0 + cw];
                        pred.iter_mut().zip(row).for_each(|(p, &x)| *p += w * x);
                    }
                    let acc_a = &mut acc[a * cw..(a + 1) * cw];
                    // Residuals in f64: where every α predicts almost nothing, the scores
                    // differ by less than f32 resolves, and the tie-break must still see them.
                    for c in 0..cw {
                        let d = (y[c] as f64 - mu[c] as f64) - pred[c] as f64;
                        acc_a[c] += d * d;
                    }
                }
            }
            acc
        })
        .collect();
    for (ci, acc) in parts.into_iter().enumerate() {
        let c0 = ci * CHUNK;
        let cw = CHUNK.min(tb - c0);
        for a in 0..n_alphas {
            for c in 0..cw {
                err[a * tb + c0 + c] += acc[a * cw + c];
            }
        }
    }
}

/// Rows `idx`, columns `t0..t0+tb` of the row-major `[_, t]` matrix `y`.
fn gather_block(y: &[f32], t: usize, idx: &[usize], t0: usize, tb: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; idx.len() * tb];
    out.par_chunks_mut(tb).zip(idx.par_iter()).for_each(|(dst, &i)| {
        dst.copy_from_slice(&y[i * t + t0..i * t + t0 + tb]);
    });
    out
}

/// Column means of a row-major `[rows, tb]` block as f32.
fn block_means(b: &[f32], rows: usize, tb: usize) -> Vec<f32> {
    let mut m = vec![0.0f64; tb];
    for r in b.chunks_exact(tb).take(rows) {
        m.iter_mut().zip(r).for_each(|(a, &v)| *a += v as f64);
    }
    m.iter().map(|&s| (s / rows as f64) as f32).collect()
}

/// Fits ridge regressions from `x` (`[n, p]`) to every column of `y` (`[n, t]`), choosing each
/// target's penalty from `cfg.alphas` by cross-validation (see the module documentation).
pub fn ridge_cv(x: &Array, y: &Array, cfg: &RidgeCv) -> Result<RidgeCvFit> {
    let (n, p, t) = validate(x, y, cfg)?;
    let na = cfg.alphas.len();
    let folds = fold_sets(n, &cfg.folds)?;

    // One decomposition per fold, shared by the whole α grid and every target batch.
    let mut plans = Vec::with_capacity(folds.len());
    for (train, test) in folds {
        let xtr = gather_rows(&x.data, p, &train, None);
        let mean = cfg.fit_intercept.then(|| col_means64(&xtr, train.len(), p));
        let mut xtr = xtr;
        if let Some(m) = &mean {
            xtr.par_chunks_mut(p).for_each(|r| r.iter_mut().zip(m).for_each(|(v, mu)| *v -= mu));
        }
        let dec = decompose(&xtr, train.len(), p)?;
        drop(xtr);
        let xte = gather_rows(&x.data, p, &test, mean.as_deref());
        let mut a64 = vec![0.0f64; test.len() * dec.k];
        gemm_f64(rm_mut(&mut a64, test.len(), dec.k), rm(&xte, test.len(), p), rm(&dec.proj64, p, dec.k));
        let a = to_f32(&a64);
        let basis = shrink_basis(&dec.lam, &cfg.alphas)?;
        plans.push(FoldPlan { train, test, dec, a, basis });
    }
    // The refit on all rows.
    let all: Vec<usize> = (0..n).collect();
    let mut xc = gather_rows(&x.data, p, &all, None);
    let mean_x = if cfg.fit_intercept { col_means64(&xc, n, p) } else { vec![0.0; p] };
    if cfg.fit_intercept {
        xc.par_chunks_mut(p).for_each(|r| r.iter_mut().zip(&mean_x).for_each(|(v, mu)| *v -= mu));
    }
    let full = decompose(&xc, n, p)?;
    drop(xc);

    let tb = if cfg.n_targets_batch > 0 {
        cfg.n_targets_batch.min(t)
    } else {
        // About 96 MB of per-batch buffers.
        let per_target = plans
            .iter()
            .map(|f| f.basis.r * f.test.len() + f.train.len() + f.test.len() + 2 * f.dec.k + 2 * na)
            .max()
            .unwrap_or(1)
            .max(n + 2 * full.k);
        (24_000_000 / per_target).clamp(64, 8192).min(t)
    };

    let mut best_alpha_index = vec![0usize; t];
    let mut cv_scores = vec![0.0f64; t];
    let mut coef = vec![0.0f32; p * t];
    let mut intercept = vec![0.0f32; t];
    let mut y_mean = vec![0.0f32; t];
    let n_folds = plans.len() as f64;
    let log_alpha: Vec<f64> = cfg.alphas.iter().map(|a| a.ln()).collect();

    let mut t0 = 0;
    while t0 < t {
        let tb = tb.min(t - t0);
        // Fold-summed scores, [n_alphas, tb].
        let mut score = vec![0.0f64; na * tb];
        for plan in &plans {
            let (ntr, nte, k) = (plan.train.len(), plan.test.len(), plan.dec.k);
            let ytr = gather_block(&y.data, t, &plan.train, t0, tb);
            let mu = if cfg.fit_intercept { block_means(&ytr, ntr, tb) } else { vec![0.0; tb] };
            // B = eᵀ·Ytr; the columns of e are centred with the fit, so Ytr needs no centring.
            let mut b = vec![0.0f32; k * tb];
            gemm_f32(rm_mut(&mut b, k, tb), false, rm(&plan.dec.e, ntr, k).transpose(), rm(&ytr, ntr, tb));
            drop(ytr);
            let r = plan.basis.r;
            let mut m = vec![0.0f32; r * nte * tb];
            let mut bs = vec![0.0f32; k * tb];
            for q in 0..r {
                let psi = &plan.basis.psi[q * k..(q + 1) * k];
                bs.par_chunks_mut(tb).zip(b.par_chunks(tb)).zip(psi.par_iter()).for_each(|((d, s), &w)| {
                    d.iter_mut().zip(s).for_each(|(d, &s)| *d = w * s);
                });
                gemm_f32(
                    rm_mut(&mut m[q * nte * tb..(q + 1) * nte * tb], nte, tb),
                    false,
                    rm(&plan.a, nte, k),
                    rm(&bs, k, tb),
                );
            }
            drop(bs);
            let yte = gather_block(&y.data, t, &plan.test, t0, tb);
            let mut err = vec![0.0f64; na * tb];
            score_batch(&m, &yte, &mu, nte, tb, &plan.basis, na, &mut err);
            let inv = 1.0 / nte as f64;
            score.iter_mut().zip(&err).for_each(|(s, e)| *s -= e * inv);
        }
        // Best α per target: fold-mean score plus the tie-break toward larger α.
        let mut denom = vec![0.0f32; tb];
        for c in 0..tb {
            let mut best = (f64::NEG_INFINITY, 0usize);
            for a in 0..na {
                let s = score[a * tb + c] / n_folds + TIE_BREAK * log_alpha[a];
                if s > best.0 {
                    best = (s, a);
                }
            }
            best_alpha_index[t0 + c] = best.1;
            cv_scores[t0 + c] = score[best.1 * tb + c] / n_folds;
            denom[c] = cfg.alphas[best.1] as f32;
        }
        // Refit on all rows with each target's penalty.
        let k = full.k;
        let mut b = vec![0.0f32; k * tb];
        gemm_f32(rm_mut(&mut b, k, tb), false, rm(&full.e, n, k).transpose(), rm_cols(&y.data, n, t, t0, tb));
        b.par_chunks_mut(tb).zip(full.lam.par_iter()).for_each(|(row, &l)| {
            row.iter_mut().zip(&denom).for_each(|(v, &al)| *v = (*v as f64 / (al as f64 + l)) as f32);
        });
        gemm_f32(rm_cols_mut(&mut coef, p, t, t0, tb), false, rm(&full.proj, p, k), rm(&b, k, tb));
        if cfg.fit_intercept {
            let ym = block_means(&gather_block(&y.data, t, &all, t0, tb), n, tb);
            y_mean[t0..t0 + tb].copy_from_slice(&ym);
            for c in 0..tb {
                let dot: f64 = (0..p).map(|j| mean_x[j] * coef[j * t + t0 + c] as f64).sum();
                intercept[t0 + c] = (ym[c] as f64 - dot) as f32;
            }
        }
        t0 += tb;
    }
    let best_alphas = best_alpha_index.iter().map(|&i| cfg.alphas[i]).collect();
    Ok(RidgeCvFit {
        n_features: p,
        n_targets: t,
        alphas: cfg.alphas.clone(),
        best_alpha_index,
        best_alphas,
        cv_scores,
        coef,
        intercept,
        x_mean: mean_x,
        y_mean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn randn(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// Straightforward reference: per fold and α, solve (XᵀX + αI) w = Xᵀy in f64 by Cholesky.
    fn naive(x: &Array, y: &Array, cfg: &RidgeCv) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
        let (n, p, t) = (x.shape[0], x.shape[1], y.shape[1]);
        let xv = |i: usize, j: usize| x.data[i * p + j] as f64;
        let yv = |i: usize, j: usize| y.data[i * t + j] as f64;
        let solve = |rows: &[usize], alpha: f64| -> (Vec<f64>, Vec<f64>, Vec<f64>) {
            // returns weights [p, t], x mean, y mean
            let mx: Vec<f64> = (0..p)
                .map(|j| if cfg.fit_intercept { rows.iter().map(|&i| xv(i, j)).sum::<f64>() / rows.len() as f64 } else { 0.0 })
                .collect();
            let my: Vec<f64> = (0..t)
                .map(|j| if cfg.fit_intercept { rows.iter().map(|&i| yv(i, j)).sum::<f64>() / rows.len() as f64 } else { 0.0 })
                .collect();
            let mut g = vec![0.0; p * p];
            let mut c = vec![0.0; p * t];
            for &i in rows {
                for a in 0..p {
                    let xa = xv(i, a) - mx[a];
                    for b in 0..p {
                        g[a * p + b] += xa * (xv(i, b) - mx[b]);
                    }
                    for b in 0..t {
                        c[a * t + b] += xa * (yv(i, b) - my[b]);
                    }
                }
            }
            for a in 0..p {
                g[a * p + a] += alpha;
            }
            // Cholesky.
            let mut l = vec![0.0; p * p];
            for i in 0..p {
                for j in 0..=i {
                    let s: f64 = g[i * p + j] - (0..j).map(|k| l[i * p + k] * l[j * p + k]).sum::<f64>();
                    l[i * p + j] = if i == j { s.sqrt() } else { s / l[j * p + j] };
                }
            }
            let mut w = vec![0.0; p * t];
            for b in 0..t {
                let mut z = vec![0.0; p];
                for i in 0..p {
                    z[i] = (c[i * t + b] - (0..i).map(|k| l[i * p + k] * z[k]).sum::<f64>()) / l[i * p + i];
                }
                for i in (0..p).rev() {
                    let s: f64 = z[i] - (i + 1..p).map(|k| l[k * p + i] * w[k * t + b]).sum::<f64>();
                    w[i * t + b] = s / l[i * p + i];
                }
            }
            (w, mx, my)
        };
        let folds = fold_sets(n, &cfg.folds).unwrap();
        let na = cfg.alphas.len();
        let mut score = vec![0.0; na * t];
        for (train, test) in &folds {
            for (a, &al) in cfg.alphas.iter().enumerate() {
                let (w, mx, my) = solve(train, al);
                for b in 0..t {
                    let mut e = 0.0;
                    for &i in test {
                        let pred: f64 = my[b] + (0..p).map(|j| (xv(i, j) - mx[j]) * w[j * t + b]).sum::<f64>();
                        e += (yv(i, b) - pred).powi(2);
                    }
                    score[a * t + b] -= e / test.len() as f64 / folds.len() as f64;
                }
            }
        }
        let best: Vec<usize> = (0..t)
            .map(|b| {
                let mut bi = 0;
                for a in 1..na {
                    if score[a * t + b] + TIE_BREAK * cfg.alphas[a].ln() > score[bi * t + b] + TIE_BREAK * cfg.alphas[bi].ln() {
                        bi = a;
                    }
                }
                bi
            })
            .collect();
        let all: Vec<usize> = (0..n).collect();
        let mut coef = vec![0.0; p * t];
        let mut icpt = vec![0.0; t];
        for b in 0..t {
            let (w, mx, my) = solve(&all, cfg.alphas[best[b]]);
            for j in 0..p {
                coef[j * t + b] = w[j * t + b];
            }
            icpt[b] = my[b] - (0..p).map(|j| mx[j] * w[j * t + b]).sum::<f64>();
        }
        (best, coef, icpt)
    }

    fn data(n: usize, p: usize, t: usize, noise: f64, seed: u64) -> (Array, Array) {
        let mut rng = Rng::new(seed);
        let x = randn(&mut rng, n * p);
        let w: Vec<f32> = randn(&mut rng, p * t);
        let mut y = vec![0.0f32; n * t];
        for i in 0..n {
            for b in 0..t {
                // Targets with very different signal-to-noise, so different α win.
                let snr = 1.0 / (1.0 + b as f64);
                let s: f64 = (0..p).map(|j| x[i * p + j] as f64 * w[j * t + b] as f64).sum();
                y[i * t + b] = (snr * s + noise * rng.normal() + 0.3 * b as f64) as f32;
            }
        }
        (Array::new(vec![n, p], x).unwrap(), Array::new(vec![n, t], y).unwrap())
    }

    fn check_against_naive(n: usize, p: usize, t: usize, cfg: RidgeCv) {
        let (x, y) = data(n, p, t, 2.0, 7 + n as u64 + p as u64);
        let fit = ridge_cv(&x, &y, &cfg).unwrap();
        let (best, coef, icpt) = naive(&x, &y, &cfg);
        assert_eq!(fit.best_alpha_index, best, "n={n} p={p}");
        for (i, (&a, &b)) in fit.coef.iter().zip(&coef).enumerate() {
            assert!((a as f64 - b).abs() <= 2e-4 * (1.0 + b.abs()), "coef {i}: {a} vs {b}");
        }
        for (&a, &b) in fit.intercept.iter().zip(&icpt) {
            assert!((a as f64 - b).abs() <= 2e-4 * (1.0 + b.abs()), "intercept {a} vs {b}");
        }
        let pred = fit.predict(&x.data, n).unwrap();
        assert_eq!(pred.len(), n * t);
    }

    #[test]
    fn matches_naive_solver_primal_and_kernel() {
        let alphas = logspace(-2.0, 4.0, 13);
        // rows ≥ features (eigendecomposition of XᵀX), several batches of targets.
        check_against_naive(60, 8, 9, RidgeCv { alphas: alphas.clone(), folds: Folds::KFold(3), fit_intercept: true, n_targets_batch: 4 });
        check_against_naive(60, 8, 9, RidgeCv { alphas: alphas.clone(), folds: Folds::KFold(5), fit_intercept: false, n_targets_batch: 0 });
        // features > rows (kernel form), shuffled folds.
        check_against_naive(
            30,
            40,
            5,
            RidgeCv { alphas: alphas.clone(), folds: Folds::Given(shuffled_kfold(30, 3, 1)), fit_intercept: true, n_targets_batch: 0 },
        );
        // Two alphas: direct path.
        check_against_naive(40, 6, 3, RidgeCv { alphas: vec![0.1, 1.0], ..RidgeCv::default() });
    }

    #[test]
    fn kfold_matches_sklearn_layout() {
        assert_eq!(kfold(7, 3), vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]]);
        let f = shuffled_kfold(10, 3, 4);
        let mut all: Vec<usize> = f.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(f.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 3, 3]);
    }

    #[test]
    fn low_rank_grid_is_accurate() {
        let mut rng = Rng::new(3);
        let lam: Vec<f64> = (0..200).map(|_| 50.0 + 5000.0 * rng.uniform()).collect();
        let alphas = logspace(-3.0, 20.0, 20);
        let b = shrink_basis(&lam, &alphas).unwrap();
        assert!(b.r < alphas.len(), "rank {}", b.r);
        for (a, &al) in alphas.iter().enumerate() {
            for (j, &l) in lam.iter().enumerate() {
                let approx: f64 = (0..b.r).map(|q| b.coef[a * b.r + q] as f64 * b.psi[q * lam.len() + j] as f64).sum::<f64>() * l;
                let exact = l / (al + l);
                assert!((approx - exact).abs() < 1e-6, "α {al} λ {l}: {approx} vs {exact}");
            }
        }
    }

    #[test]
    fn rejects_bad_input() {
        let (x, y) = data(10, 3, 2, 1.0, 1);
        assert!(ridge_cv(&x, &y, &RidgeCv { alphas: vec![], ..RidgeCv::default() }).is_err());
        assert!(ridge_cv(&x, &y, &RidgeCv { alphas: vec![-1.0], ..RidgeCv::default() }).is_err());
        assert!(ridge_cv(&x, &y, &RidgeCv { folds: Folds::KFold(11), ..RidgeCv::default() }).is_err());
        assert!(ridge_cv(&x, &y, &RidgeCv { folds: Folds::Given(vec![vec![0, 0]]), ..RidgeCv::default() }).is_err());
        let y2 = Array::new(vec![9, 2], vec![0.0; 18]).unwrap();
        assert!(ridge_cv(&x, &y2, &RidgeCv::default()).is_err());
    }
}
