//! Intervals that include the fit's own variability: from K fits of the same data
//! with different seeds (`fit --seeds K`), each with its refit-free bootstrap.
//!
//! Why not the refit-free bootstrap alone: it resamples held-out images and voxels of one fitted
//! encoder, so it cannot see how far another optimisation run (initialisation, batch order,
//! train/validation split) would land. On planted data that fit-to-fit spread of the slope is
//! 0.01–0.05, two to five times the refit-free interval's half-width, and the noise-free fit
//! that the interval should cover is itself one such run.
//!
//! The interval for a statistic with point values `x_1..x_K` (one per seed) and refit-free
//! bootstrap variances `w_1..w_K` is a prediction interval for one more fit:
//!
//! `mean(x) ± t_{K−1, (1+level)/2} · √( s²·(1 + 1/K) + mean(w) )`
//!
//! where `s²` is the sample variance of the `x_k` (divides by K − 1). With normal fit-to-fit
//! errors and no bootstrap term this is the textbook prediction interval: it covers an
//! independent further fit with probability `level` exactly, whatever the spread, because
//! Student's t accounts for estimating `s` from K fits. The bootstrap term adds the sampling of
//! held-out images and voxels that each fit's refit-free interval measures. The interval is
//! clipped to the statistic's range where it has one.

use crate::error::{Error, Result};
use crate::scores::bootstrap::Interval;
use crate::scores::stats;

/// `P(|T| ≤ t)` for Student's t with `df` ≥ 1 degrees of freedom (Abramowitz & Stegun 26.7.3 and
/// 26.7.4: finite sums in θ = atan(t/√df), exact for integer df).
pub fn student_t_central(t: f64, df: usize) -> f64 {
    assert!(df >= 1, "Student's t needs at least one degree of freedom");
    if t <= 0.0 {
        return 0.0;
    }
    if t.is_infinite() {
        return 1.0;
    }
    let theta = (t / (df as f64).sqrt()).atan();
    let (s, c) = theta.sin_cos();
    let c2 = c * c;
    if df % 2 == 1 {
        // (2/π)(θ + sinθ·(cosθ + (2/3)cos³θ + (2·4)/(1·3·5)… cos^{df−2}θ)); the sum is empty for df = 1.
        let mut sum = 0.0;
        if df > 1 {
            let mut term = c;
            sum = term;
            let mut k = 3;
            while k <= df - 2 {
                term *= c2 * (k - 1) as f64 / k as f64;
                sum += term;
                k += 2;
            }
        }
        (2.0 / std::f64::consts::PI) * (theta + s * sum)
    } else {
        // sinθ·(1 + (1/2)cos²θ + (1·3)/(2·4)cos⁴θ + … + (1·3…(df−3))/(2·4…(df−2)) cos^{df−2}θ).
        let mut term = 1.0;
        let mut sum = 1.0;
        let mut k = 2;
        while k <= df - 2 {
            term *= c2 * (k - 1) as f64 / k as f64;
            sum += term;
            k += 2;
        }
        s * sum
    }
    .clamp(0.0, 1.0)
}

/// The `t` with `P(|T| ≤ t) = level` for Student's t with `df` degrees of freedom (the
/// `(1 + level)/2` quantile), by bisection on [`student_t_central`] to 1e-12.
pub fn student_t_two_sided(level: f64, df: usize) -> f64 {
    assert!(level > 0.0 && level < 1.0 && df >= 1);
    let mut hi = 1.0;
    while student_t_central(hi, df) < level {
        hi *= 2.0;
    }
    let mut lo = 0.0;
    while hi - lo > 1e-12 * hi.max(1.0) {
        let mid = 0.5 * (lo + hi);
        if student_t_central(mid, df) < level {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// One statistic over K seeds: its point value in each fit and the variance of its refit-free
/// bootstrap replicates in each fit (`None` when no bootstrap ran).
#[derive(Debug, Clone, PartialEq)]
pub struct OverSeeds<'a> {
    /// The statistic's value in each of the K fits.
    pub points: &'a [f64],
    /// The variance of its refit-free bootstrap replicates in each fit.
    pub bootstrap_variances: Option<&'a [f64]>,
    /// The statistic's range, if it has one (the interval is clipped to it).
    pub range: Option<(f64, f64)>,
}

/// The prediction interval of the module documentation at `level`; `None` when fewer than two
/// fits, or when a point value or a bootstrap variance is undefined (not finite) in any fit.
pub fn seeds_interval(s: &OverSeeds, level: f64) -> Option<Interval> {
    let k = s.points.len();
    if k < 2 || s.points.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let w = match s.bootstrap_variances {
        Some(w) if w.len() != k || w.iter().any(|x| !x.is_finite()) => return None,
        Some(w) => stats::mean(w),
        None => 0.0,
    };
    let m = stats::mean(s.points);
    let ss: f64 = s.points.iter().map(|x| (x - m) * (x - m)).sum();
    let var_fit = ss / (k - 1) as f64;
    let half = student_t_two_sided(level, k - 1) * (var_fit * (1.0 + 1.0 / k as f64) + w).sqrt();
    let (lo, hi) = s.range.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    Some(Interval { lo: (m - half).max(lo), hi: (m + half).min(hi) })
}

/// Sample variance (divides by n − 1) of the finite replicates; NaN with fewer than two.
pub fn replicate_variance(replicates: &[f64]) -> f64 {
    let v: Vec<f64> = replicates.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return f64::NAN;
    }
    let m = stats::mean(&v);
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64
}

/// Splits `total` bootstrap resamples over `k` fits as evenly as possible (the first
/// `total mod k` fits get one more), at least 2 each when `total` > 0, so that the interval over
/// seeds costs about one fit's bootstrap. Errors on `k` = 0.
pub fn split_resamples(total: usize, k: usize) -> Result<Vec<usize>> {
    if k == 0 {
        return Err(Error::invalid("a split of bootstrap resamples over 0 fits"));
    }
    if total == 0 {
        return Ok(vec![0; k]);
    }
    Ok((0..k).map(|i| (total / k + usize::from(i < total % k)).max(2)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Against published quantiles (R's `qt(0.975, df)`, `qt(0.95, df)`) and the closed forms of
    /// df = 1 (Cauchy: tan(π·level/2)) and df = 2 (t/√(2 + t²)).
    #[test]
    fn student_t_quantiles_match_tables() {
        for (df, level, want) in [
            (1, 0.95, 12.706204736174707),
            (2, 0.95, 4.302652729749464),
            (3, 0.95, 3.182446305284263),
            (4, 0.95, 2.7764451051977934),
            (9, 0.95, 2.2621571627982053),
            (19, 0.95, 2.093024054408263),
            (30, 0.9, 1.697260886593957),
        ] {
            let t = student_t_two_sided(level, df);
            assert!(close(t, want, 1e-9 * want), "df {df} level {level}: {t} vs {want}");
        }
        for t in [0.3f64, 1.0, 4.0] {
            let cauchy = 2.0 / std::f64::consts::PI * t.atan();
            assert!(close(student_t_central(t, 1), cauchy, 1e-15));
            assert!(close(student_t_central(t, 2), t / (2.0 + t * t).sqrt(), 1e-15));
        }
        // Large df approaches the normal: P(|Z| ≤ 1.959963984540054) = 0.95.
        assert!(close(student_t_central(1.959963984540054, 100_000), 0.95, 1e-5));
    }

    /// A case worked by hand: points 0.80, 0.86, 0.92 (mean 0.86, s² = (0.06² + 0 + 0.06²)/2 =
    /// 0.0036), bootstrap variances 0.0001, 0.0002, 0.0003 (mean 0.0002); df 2, t = 4.302653;
    /// half-width = 4.302653·√(0.0036·4/3 + 0.0002) = 4.302653·√0.005 = 0.304243.
    #[test]
    fn prediction_interval_by_hand() {
        let points = [0.80, 0.86, 0.92];
        let w = [0.0001, 0.0002, 0.0003];
        let s = OverSeeds { points: &points, bootstrap_variances: Some(&w), range: None };
        let iv = seeds_interval(&s, 0.95).unwrap();
        let half = 4.302652729749464 * 0.005f64.sqrt();
        assert!(close(iv.lo, 0.86 - half, 1e-9) && close(iv.hi, 0.86 + half, 1e-9), "{iv:?}");
        assert!(close(half, 0.304243, 1e-6));
        // Clipped to a range; without bootstrap variances only the fit spread counts.
        let clipped = seeds_interval(&OverSeeds { range: Some((-1.0, 1.0)), ..s.clone() }, 0.95).unwrap();
        assert_eq!(clipped.hi, 1.0);
        let bare = seeds_interval(&OverSeeds { bootstrap_variances: None, ..s.clone() }, 0.95).unwrap();
        assert!(close(bare.hi - 0.86, 4.302652729749464 * 0.0048f64.sqrt(), 1e-9));
        // Undefined inputs give no interval.
        assert!(seeds_interval(&OverSeeds { points: &points[..1], ..s.clone() }, 0.95).is_none());
        let nan = [0.8, f64::NAN, 0.9];
        assert!(seeds_interval(&OverSeeds { points: &nan, ..s.clone() }, 0.95).is_none());
        assert!(seeds_interval(&OverSeeds { bootstrap_variances: Some(&nan), ..s.clone() }, 0.95).is_none());
        assert!(seeds_interval(&OverSeeds { bootstrap_variances: Some(&w[..2]), ..s }, 0.95).is_none());
    }

    /// Coverage by simulation: with normal fit-to-fit errors, the interval from K fits covers an
    /// independent further fit at the nominal rate (the property the calibration test relies on).
    #[test]
    fn prediction_interval_covers_a_further_fit_at_the_nominal_rate() {
        let mut rng = crate::rng::Rng::new(5);
        let trials = 20_000;
        for k in [2usize, 3, 5] {
            let mut hit = 0;
            for _ in 0..trials {
                let x: Vec<f64> = (0..k).map(|_| 0.7 + 0.04 * rng.normal()).collect();
                let new = 0.7 + 0.04 * rng.normal();
                let iv = seeds_interval(&OverSeeds { points: &x, bootstrap_variances: None, range: None }, 0.9).unwrap();
                hit += iv.contains(new) as usize;
            }
            // Binomial sd at p = 0.9: √(0.09/20000) = 0.0021; allow 4 sd.
            let rate = hit as f64 / trials as f64;
            assert!((rate - 0.9).abs() < 0.0085, "K = {k}: coverage {rate}");
        }
    }

    #[test]
    fn variances_and_splits() {
        // Mean 2, squared deviations 1 + 0 + 1 → 2/2 = 1; the NaN is left out.
        assert_eq!(replicate_variance(&[1.0, f64::NAN, 2.0, 3.0]), 1.0);
        assert!(replicate_variance(&[1.0, f64::NAN]).is_nan());
        assert_eq!(split_resamples(1000, 3).unwrap(), vec![334, 333, 333]);
        assert_eq!(split_resamples(200, 3).unwrap().iter().sum::<usize>(), 200);
        assert_eq!(split_resamples(3, 2).unwrap(), vec![2, 2]);
        assert_eq!(split_resamples(0, 4).unwrap(), vec![0; 4]);
        assert!(split_resamples(10, 0).is_err());
    }
}
