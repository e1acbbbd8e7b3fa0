//! Correction of the bias that measurement noise introduces in the hierarchy's headline numbers
//! (slope, b0, b1, Spearman ρ) by simulation–extrapolation (SIMEX; Cook & Stefanski 1994,
//! JASA 89:1314), with `fit --seeds K --bias-correct simex`.
//!
//! Why: an interval built from fits to the noisy data alone (refit-free bootstrap, spread over
//! seeds) describes where another fit *to the same noisy data* lands. Calibration on planted data asks
//! for the number that the same pipeline reaches on noise-free data, and on planted data the
//! noisy fits sit systematically away from it (docs/uncertainty.md). SIMEX measures how a number
//! moves when noise of known variance is added and extrapolates back to no noise at all.
//!
//! **Noise variance per voxel.** The brain's noise ceiling NC_v is the explainable fraction of
//! the response variance (DESIGN §2, R² units), so the noise variance is
//! `σ²_v = (1 − NC_v)·Var(y_v)` (population variance over all images). The noise ceiling is
//! chosen over the fit's residuals because residuals also contain whatever the model cannot
//! express, which is not measurement noise; a voxel with NC 0 is all noise (adding noise leaves
//! its standardised distribution unchanged), NC 1 gets none.
//!
//! **Simulation.** For each λ of [`LAMBDAS`] and each of the K fit seeds, the responses become
//! `y_v + √(λ·σ²_v)·ε` (ε standard normal, a stream per (λ, seed, voxel)), rescaled per voxel to
//! the original mean and variance (so a z-scored brain stays z-scored, as loading would make
//! it), and the same pipeline refits them. The total noise variance is then `(1 + λ)·σ²_v`, so
//! λ = −1 is no noise.
//!
//! **Extrapolation and interval.** The n = K·(1 + |LAMBDAS|) points `(λ_i, x_i)` (λ = 0 being the
//! K fits to the data as given) are fitted by ordinary least squares with a polynomial of
//! degree p in λ ([`DEGREE`] = 2, the quadratic extrapolant usual in the SIMEX literature), and
//! the corrected number is its value at λ = −1, `x̂ = aᵀβ̂` with `a = (1, −1, 1)`. The interval
//! is a prediction interval for one fit of the noise-free data:
//!
//! `x̂ ± t_{n−p−1, (1+level)/2} · √( σ̂²·(1 + aᵀ(XᵀX)⁻¹a) + mean_k(w_k) )`
//!
//! with `σ̂² = RSS/(n − p − 1)` the residual variance (fit-to-fit and added-noise spread), `X` the
//! n×(p+1) design `[1, λ_i, λ_i²]` and `w_k` the refit-free bootstrap variance of fit k at λ = 0
//! (sampling of held-out images and voxels, as in [`crate::scores::seed_interval`]). With p = 0
//! and only the K fits at λ = 0 this is exactly the interval over seeds
//! (`mean ± t_{K−1}·√(s²·(1 + 1/K) + mean(w))`), so SIMEX extends that interval rather than
//! replacing it. Assumptions: the extrapolant describes how the number's mean moves with the
//! noise variance (a quadratic under-corrects a stronger curvature, the known conservative side
//! of SIMEX), the residuals are independent with one variance (the spread grows with λ, so the
//! pooled σ̂² overstates the spread of a noise-free fit: conservative), and the K fits at λ = 0
//! share one noise realisation (what the data's own noise did is seen only through the
//! bootstrap term).
//!
//! The other headline numbers (R², Pearson r, noise-normalised accuracy) measure prediction of
//! the noisy responses themselves; they keep their interval over seeds.

use serde::{Deserialize, Serialize};

use crate::data::{Array, Brain};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::scores::bootstrap::Interval;
use crate::scores::seed_interval::student_t_two_sided;

/// Added-noise multiples λ of each voxel's noise variance (λ = 0, the data as given, comes on
/// top): the grid of Cook & Stefanski's examples, spread over [0, 2].
pub const LAMBDAS: [f64; 3] = [0.5, 1.0, 2.0];

/// Degree of the extrapolant in λ.
pub const DEGREE: usize = 2;

/// Which correction of the noise's bias the headline numbers get.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BiasCorrection {
    /// None: intervals describe fits to the data as given.
    #[default]
    None,
    /// SIMEX (this module); needs K ≥ 2 seeds and a noise ceiling.
    Simex,
}

impl BiasCorrection {
    /// The name used by `--bias-correct` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BiasCorrection::None => "none",
            BiasCorrection::Simex => "simex",
        }
    }
}

impl std::str::FromStr for BiasCorrection {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(BiasCorrection::None),
            "simex" => Ok(BiasCorrection::Simex),
            _ => Err(Error::invalid(format!("unknown bias correction `{s}`; expected `none` or `simex`"))),
        }
    }
}

/// The corrected value of one number and the interval of the module documentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extrapolation {
    /// The value extrapolated to no noise.
    pub estimate: f64,
    /// Its interval.
    pub interval: Interval,
}

/// Fits `values` against `lambdas` by least squares with a polynomial of degree `degree` and
/// extrapolates to λ = −1, with the prediction interval of the module documentation at `level`
/// (`extra_variance` is the mean bootstrap variance; the interval is clipped to `range`).
/// `None` when a value is not finite, when there are fewer than `degree + 2` points (no residual
/// degree of freedom) or fewer than `degree + 1` distinct λ.
pub fn extrapolate(
    lambdas: &[f64],
    values: &[f64],
    degree: usize,
    extra_variance: f64,
    level: f64,
    range: Option<(f64, f64)>,
) -> Option<Extrapolation> {
    let n = values.len();
    let q = degree + 1;
    if lambdas.len() != n || n < q + 1 || values.iter().chain(lambdas).any(|x| !x.is_finite()) || !extra_variance.is_finite() {
        return None;
    }
    let mut distinct = lambdas.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < q {
        return None;
    }
    let row = |l: f64| (0..q).map(|j| l.powi(j as i32)).collect::<Vec<f64>>();
    let mut xtx = vec![vec![0.0; q]; q];
    let mut xty = vec![0.0; q];
    for (&l, &y) in lambdas.iter().zip(values) {
        let r = row(l);
        for i in 0..q {
            xty[i] += r[i] * y;
            for j in 0..q {
                xtx[i][j] += r[i] * r[j];
            }
        }
    }
    let inv = invert(&xtx)?;
    let beta: Vec<f64> = (0..q).map(|i| (0..q).map(|j| inv[i][j] * xty[j]).sum()).collect();
    let rss: f64 = lambdas
        .iter()
        .zip(values)
        .map(|(&l, &y)| {
            let fit: f64 = row(l).iter().zip(&beta).map(|(r, b)| r * b).sum();
            (y - fit) * (y - fit)
        })
        .sum();
    let df = n - q;
    let sigma2 = rss / df as f64;
    let a = row(-1.0);
    let estimate: f64 = a.iter().zip(&beta).map(|(a, b)| a * b).sum();
    let leverage: f64 = (0..q).map(|i| (0..q).map(|j| a[i] * inv[i][j] * a[j]).sum::<f64>()).sum();
    let half = student_t_two_sided(level, df) * (sigma2 * (1.0 + leverage) + extra_variance).sqrt();
    let (lo, hi) = range.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    Some(Extrapolation { estimate, interval: Interval { lo: (estimate - half).max(lo), hi: (estimate + half).min(hi) } })
}

/// Inverse of a small symmetric positive definite matrix by Gauss–Jordan elimination with
/// partial pivoting; `None` when it is singular to working precision.
fn invert(m: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let q = m.len();
    let scale = m.iter().flatten().fold(0.0f64, |s, x| s.max(x.abs()));
    let mut a: Vec<Vec<f64>> = m
        .iter()
        .enumerate()
        .map(|(i, r)| r.iter().copied().chain((0..q).map(|j| if i == j { 1.0 } else { 0.0 })).collect())
        .collect();
    for c in 0..q {
        let p = (c..q).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() <= 1e-12 * scale {
            return None;
        }
        a.swap(c, p);
        let d = a[c][c];
        a[c].iter_mut().for_each(|x| *x /= d);
        for i in 0..q {
            if i != c {
                let f = a[i][c];
                if f != 0.0 {
                    let pivot = a[c].clone();
                    a[i].iter_mut().zip(&pivot).for_each(|(x, p)| *x -= f * p);
                }
            }
        }
    }
    Some(a.into_iter().map(|r| r[q..].to_vec()).collect())
}

/// Each voxel's noise variance `(1 − NC_v)·Var(y_v)` (population variance over images); an error
/// naming the brain when it has no noise ceiling.
pub fn noise_variances(brain: &Brain) -> Result<Vec<f64>> {
    let nc = brain.noise_ceiling.as_ref().ok_or_else(|| {
        Error::invalid(
            "--bias-correct simex needs the brain's noise ceiling (tensor `noise_ceiling`): the noise variance of \
             each voxel is (1 − NC)·Var(responses)",
        )
    })?;
    let (_, var) = moments(&brain.responses);
    Ok(var.iter().zip(nc).map(|(&v, &c)| (1.0 - c as f64).clamp(0.0, 1.0) * v).collect())
}

/// Per-voxel mean and population variance of `[N, V]` responses, in f64.
fn moments(r: &Array) -> (Vec<f64>, Vec<f64>) {
    let v = r.shape[1];
    let n = r.shape[0].max(1) as f64;
    let mut mean = vec![0f64; v];
    for row in r.data.chunks_exact(v) {
        row.iter().zip(&mut mean).for_each(|(&x, m)| *m += x as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0f64; v];
    for row in r.data.chunks_exact(v) {
        row.iter().zip(&mean).zip(&mut var).for_each(|((&x, m), s)| *s += (x as f64 - m) * (x as f64 - m));
    }
    var.iter_mut().for_each(|s| *s /= n);
    (mean, var)
}

/// `brain` with noise of variance `lambda·noise_var[v]` added to each voxel's responses and each
/// voxel rescaled to its original mean and variance. The noise of voxel v is the stream
/// `Rng::derive(seed, "simex.{label}.{v}")`, so the result depends only on these arguments.
pub fn perturbed(brain: &Brain, noise_var: &[f64], lambda: f64, seed: u64, label: &str) -> Result<Brain> {
    let v = brain.n_voxels();
    if noise_var.len() != v || !(lambda >= 0.0 && lambda.is_finite()) {
        return Err(Error::invalid(format!(
            "SIMEX: {} noise variances for {v} voxels at λ = {lambda}",
            noise_var.len()
        )));
    }
    let (mean, var) = moments(&brain.responses);
    let mut out = brain.clone();
    let r = std::sync::Arc::make_mut(&mut out.responses);
    let n = r.shape[0];
    for (j, &s2) in noise_var.iter().enumerate() {
        let sd = (lambda * s2).sqrt();
        if sd == 0.0 {
            continue;
        }
        let mut rng = Rng::derive(seed, &format!("simex.{label}.{j}"));
        let col: Vec<f64> = (0..n).map(|i| r.data[i * v + j] as f64 + sd * rng.normal()).collect();
        let m = col.iter().sum::<f64>() / n as f64;
        let s = (col.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64).sqrt();
        let k = if s > 0.0 { (var[j] / (s * s)).sqrt() } else { 0.0 };
        for (i, x) in col.iter().enumerate() {
            r.data[i * v + j] = (mean[j] + (x - m) * k) as f32;
        }
    }
    if let Some(i) = r.first_non_finite() {
        return Err(Error::invalid(format!("SIMEX: the perturbed responses overflowed at [image {}, voxel {}]", i / v, i % v)));
    }
    Ok(out)
}

/// One corrected number in the report: the value extrapolated to no noise and the mean over the
/// K fits at each λ (the first, λ = 0, is the uncorrected mean over seeds).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SimexNumber {
    /// The value extrapolated to no noise.
    pub corrected: f64,
    /// Mean over the K fits at each λ of `SimexSummary::lambdas`.
    pub means: Vec<f64>,
}

/// What `report.json` says about the correction (`uncertainty.simex`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SimexSummary {
    /// Added-noise multiples, starting with 0 (the data as given).
    pub lambdas: Vec<f64>,
    /// Degree of the polynomial extrapolant in λ (2: quadratic).
    pub degree: usize,
    /// Fits at each λ (the K seeds).
    pub fits_per_lambda: usize,
    /// Fits in all: K·(1 + number of added-noise levels).
    pub n_fits: usize,
    /// The corrected hierarchy slope.
    pub slope: Option<SimexNumber>,
    /// The corrected b0.
    pub b0: Option<SimexNumber>,
    /// The corrected b1.
    pub b1: Option<SimexNumber>,
    /// The corrected Spearman ρ.
    pub spearman: Option<SimexNumber>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::seed_interval::{seeds_interval, OverSeeds};

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// A statistic with known quadratic dependence x(λ) = 0.8 + 0.05λ − 0.01λ² recovers
    /// x(−1) = 0.8 − 0.05 − 0.01 = 0.74 exactly, and with no residual spread and no bootstrap
    /// term the interval has zero width.
    #[test]
    fn exact_quadratic_is_recovered() {
        let f = |l: f64| 0.8 + 0.05 * l - 0.01 * l * l;
        let lambdas: Vec<f64> = [0.0, 0.5, 1.0, 2.0].iter().flat_map(|&l| [l, l]).collect();
        let values: Vec<f64> = lambdas.iter().map(|&l| f(l)).collect();
        let e = extrapolate(&lambdas, &values, 2, 0.0, 0.95, None).unwrap();
        assert!(close(e.estimate, 0.74, 1e-12), "{e:?}");
        assert!(close(e.interval.lo, 0.74, 1e-6) && close(e.interval.hi, 0.74, 1e-6), "{e:?}");
        // A linear extrapolant of the same points misses the curvature.
        let lin = extrapolate(&lambdas, &values, 1, 0.0, 0.95, None).unwrap();
        assert!(lin.estimate > 0.745, "{lin:?}");
    }

    /// Worked by hand: λ = 0, 0, 1, 1, 2, 2 with values 0.90, 0.92, 0.95, 0.97, 1.00, 1.02 and a
    /// straight line (degree 1). Means per λ 0.91, 0.96, 1.01 lie on 0.91 + 0.05λ, so
    /// β̂ = (0.91, 0.05), x̂(−1) = 0.86; residuals ±0.01 → RSS = 6·0.0001 = 0.0006, df = 4,
    /// σ̂² = 0.00015. XᵀX = [[6, 6], [6, 10]], det 24, inverse [[10, −6], [−6, 6]]/24, so with
    /// a = (1, −1): aᵀ(XᵀX)⁻¹a = (10 + 12 + 6)/24 = 7/6. t₄ = 2.776445; with bootstrap variance
    /// 0.0001 the half-width is 2.776445·√(0.00015·13/6 + 0.0001) = 2.776445·√0.000425.
    #[test]
    fn straight_line_by_hand() {
        let lambdas = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0];
        let values = [0.90, 0.92, 0.95, 0.97, 1.00, 1.02];
        let e = extrapolate(&lambdas, &values, 1, 0.0001, 0.95, None).unwrap();
        let half = 2.7764451051977934 * 0.000425f64.sqrt();
        assert!(close(e.estimate, 0.86, 1e-12), "{e:?}");
        assert!(close(e.interval.lo, 0.86 - half, 1e-9) && close(e.interval.hi, 0.86 + half, 1e-9), "{e:?}");
        // Clipped to a range.
        let c = extrapolate(&lambdas, &values, 1, 0.0001, 0.95, Some((-1.0, 0.9))).unwrap();
        assert_eq!(c.interval.hi, 0.9);
    }

    /// Degree 0 on the fits at λ = 0 alone is the interval over seeds.
    #[test]
    fn degree_zero_is_the_interval_over_seeds() {
        let points = [0.80, 0.86, 0.92];
        let w = [0.0001, 0.0002, 0.0003];
        let s = seeds_interval(&OverSeeds { points: &points, bootstrap_variances: Some(&w), range: None }, 0.95).unwrap();
        let e = extrapolate(&[0.0; 3], &points, 0, 0.0002, 0.95, None).unwrap();
        assert!(close(e.estimate, 0.86, 1e-12));
        assert!(close(e.interval.lo, s.lo, 1e-9) && close(e.interval.hi, s.hi, 1e-9), "{e:?} vs {s:?}");
    }

    #[test]
    fn undefined_cases() {
        let l = [0.0, 0.5, 1.0, 2.0];
        assert!(extrapolate(&l, &[0.1, 0.2, 0.3, 0.4], 2, 0.0, 0.95, None).is_some());
        // No residual degree of freedom, too few distinct λ, a NaN, mismatched lengths.
        assert!(extrapolate(&l[..3], &[0.1, 0.2, 0.3], 2, 0.0, 0.95, None).is_none());
        assert!(extrapolate(&[0.0, 0.0, 1.0, 1.0], &[0.1, 0.2, 0.3, 0.4], 2, 0.0, 0.95, None).is_none());
        assert!(extrapolate(&l, &[0.1, f64::NAN, 0.3, 0.4], 2, 0.0, 0.95, None).is_none());
        assert!(extrapolate(&l, &[0.1, 0.2, 0.3], 2, 0.0, 0.95, None).is_none());
        assert!(extrapolate(&l, &[0.1, 0.2, 0.3, 0.4], 2, f64::NAN, 0.95, None).is_none());
    }

    /// Coverage by simulation: points from a quadratic in λ plus normal errors; the interval
    /// covers an independent draw at λ = −1 at the nominal rate (the textbook property of an OLS
    /// prediction interval, which the formula must reproduce).
    #[test]
    fn interval_covers_a_draw_at_minus_one_at_the_nominal_rate() {
        let mut rng = Rng::new(11);
        let f = |l: f64| 0.8 + 0.05 * l - 0.01 * l * l;
        let lambdas: Vec<f64> = [0.0, 0.5, 1.0, 2.0].iter().flat_map(|&l| [l, l, l]).collect();
        let trials = 20_000;
        let mut hit = 0;
        for _ in 0..trials {
            let values: Vec<f64> = lambdas.iter().map(|&l| f(l) + 0.03 * rng.normal()).collect();
            let new = f(-1.0) + 0.03 * rng.normal();
            hit += extrapolate(&lambdas, &values, 2, 0.0, 0.9, None).unwrap().interval.contains(new) as usize;
        }
        let rate = hit as f64 / trials as f64;
        assert!((rate - 0.9).abs() < 0.0085, "coverage {rate}");
    }

    fn brain(nc: Option<Vec<f32>>) -> Brain {
        let (n, v) = (200, 3);
        let mut rng = Rng::new(3);
        let data: Vec<f32> = (0..n * v).map(|i| (2.0 + (i % v) as f64 + rng.normal()) as f32).collect();
        Brain {
            responses: Array::new(vec![n, v], data).unwrap().into(),
            coords: Array::new(vec![v, 3], vec![0.0; v * 3]).unwrap(),
            roi: vec![0; v],
            noise_ceiling: nc,
            flat: None,
            hemisphere: None,
            roi_names: vec!["V1".into()],
            roi_levels: vec![0],
            stimulus_ids: None,
            subject: None,
        }
    }

    /// The noise variance is (1 − NC)·Var(y); perturbed voxels keep their mean and variance,
    /// move away from the original by the added noise (correlation √(1/(1 + λ(1 − NC))) in
    /// expectation for a unit-variance voxel), a voxel with NC 1 is untouched, and the result is
    /// deterministic for a seed and label.
    #[test]
    fn noise_variances_and_perturbation() {
        let b = brain(Some(vec![0.25, 1.0, 0.0]));
        let (m0, v0) = moments(&b.responses);
        let nv = noise_variances(&b).unwrap();
        assert!(close(nv[0], 0.75 * v0[0], 1e-12) && nv[1] == 0.0 && close(nv[2], v0[2], 1e-12));
        let p = perturbed(&b, &nv, 1.0, 7, "x").unwrap();
        let (m1, v1) = moments(&p.responses);
        for j in 0..3 {
            assert!(close(m1[j], m0[j], 1e-5) && close(v1[j], v0[j], 1e-4 * v0[j]), "voxel {j}");
        }
        let col = |a: &Array, j: usize| (0..200).map(|i| a.data[i * 3 + j] as f64).collect::<Vec<_>>();
        assert_eq!(col(&p.responses, 1), col(&b.responses, 1));
        let r = crate::stats::pearson(&col(&p.responses, 0), &col(&b.responses, 0));
        // Expected √(1/1.75) = 0.756; 200 images give a standard error near 0.03.
        assert!((r - (1.0f64 / 1.75).sqrt()).abs() < 0.12, "r {r}");
        assert_eq!(perturbed(&b, &nv, 1.0, 7, "x").unwrap().responses, p.responses);
        assert_ne!(perturbed(&b, &nv, 1.0, 8, "x").unwrap().responses, p.responses);
        assert_ne!(perturbed(&b, &nv, 1.0, 7, "y").unwrap().responses, p.responses);
        assert!(noise_variances(&brain(None)).unwrap_err().to_string().contains("noise ceiling"));
        assert!(perturbed(&b, &nv[..2], 1.0, 7, "x").is_err());
        assert!(perturbed(&b, &nv, -0.5, 7, "x").is_err());
        assert_eq!("SIMEX".parse::<BiasCorrection>().unwrap(), BiasCorrection::Simex);
        assert!("jackknife".parse::<BiasCorrection>().is_err());
    }
}
