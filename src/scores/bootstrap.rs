//! Refit-free bootstrap of the headline scores (DESIGN §4 "Uncertainty").
//!
//! One resample draws, independently:
//! - **images**: the held-out images with replacement (multiplicities `c_i`, `Σ c_i = n`); every
//!   voxel's R² and Pearson r are recomputed from the held-out predictions and targets of those
//!   images, so the accuracy numbers need no refit;
//! - **voxels within ROIs**: each ROI's voxels with replacement, keeping its voxel count (a
//!   stratified bootstrap), and the hierarchy line and Spearman ρ are recomputed over them. When
//!   the line is weighted by `max(R², 0)`, the weights are the resample's image-resampled R².
//!
//! The draws of resample `b` come from streams derived from `(seed, b)` alone, so results do not
//! depend on the thread count, and two networks scored against the same brain and held-out
//! images with the same seed see exactly the same images and voxels in every resample: their
//! replicates are paired ([`paired_difference`]).
//!
//! The input is only `(pred [n, V], target [n, V])` of the held-out images, per-voxel depths and
//! the brain's ROIs: how the predictions were produced is the caller's business.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::scores::hierarchy::HierarchyScores;
use crate::scores::stats;

/// Held-out predictions and targets, row-major `[n, v]` (image-major, as the fit produces them).
#[derive(Debug, Clone, Copy)]
pub struct HeldOut<'a> {
    /// Predicted responses `[n, v]`.
    pub pred: &'a [f32],
    /// Measured responses `[n, v]`.
    pub target: &'a [f32],
    /// Held-out images.
    pub n: usize,
    /// Voxels.
    pub v: usize,
}

impl<'a> HeldOut<'a> {
    /// Checks the sizes (and that there are at least 2 images to resample).
    pub fn new(pred: &'a [f32], target: &'a [f32], n: usize, v: usize) -> Result<Self> {
        let want = n.checked_mul(v).ok_or_else(|| Error::invalid(format!("held-out size {n}×{v} overflows")))?;
        if pred.len() != want || target.len() != want {
            return Err(Error::mismatch(format!(
                "held-out predictions have {} values and targets {}, expected [{n}, {v}] = {want}",
                pred.len(),
                target.len()
            )));
        }
        if n < 2 {
            return Err(Error::invalid(format!("a bootstrap over images needs at least 2 held-out images, got {n}")));
        }
        Ok(Self { pred, target, n, v })
    }

    /// Per-voxel R² and Pearson r of these predictions (the point estimates the bootstrap
    /// resamples), exactly as the fit reports them.
    pub fn scores(&self) -> (Vec<f32>, Vec<f32>) {
        (
            stats::r2_per_voxel(self.pred, self.target, self.n, self.v),
            stats::pearson_per_voxel(self.pred, self.target, self.n, self.v),
        )
    }
}

/// A two-sided interval `[lo, hi]`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Interval {
    /// Whether `x` lies in `[lo, hi]`.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    /// Both bounds multiplied by `k` (a positive `k` keeps them ordered).
    pub fn scaled(self, k: f64) -> Self {
        Self { lo: self.lo * k, hi: self.hi * k }
    }
}

/// Quantile `q ∈ [0, 1]` of sorted values with linear interpolation between order statistics
/// (numpy's default, Hyndman–Fan type 7).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let i = pos.floor() as usize;
    let frac = pos - i as f64;
    if i + 1 >= n {
        sorted[n - 1]
    } else {
        sorted[i] + frac * (sorted[i + 1] - sorted[i])
    }
}

/// Percentile interval at `level` (e.g. 0.95 → the 2.5 % and 97.5 % quantiles) of the finite
/// replicates; `None` when fewer than two replicates are finite.
pub fn percentile_interval(replicates: &[f64], level: f64) -> Option<Interval> {
    let mut v: Vec<f64> = replicates.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let a = (1.0 - level) / 2.0;
    Some(Interval { lo: quantile_sorted(&v, a), hi: quantile_sorted(&v, 1.0 - a) })
}

/// Percentile interval of the finite replicates, moved so that their median sits on the point
/// estimate: `[θ̂ − (m* − q_lo), θ̂ + (q_hi − m*)]` with `m*` the replicates' median and
/// `q_lo`, `q_hi` their `(1 ∓ level)/2` quantiles. The width and the skew are the bootstrap's;
/// the shift removes what the resampling itself does to the statistic, so the interval always
/// holds the number it qualifies. That shift matters for held-out R²: recomputed on images drawn
/// with replacement it comes out low (duplicated images shrink each voxel's variance, and
/// `1/SS_tot` is convex), by about 2·(1 − R²)/n for n images, which at 80 held-out images put
/// the plain percentile interval wholly below the reported mean. For the hierarchy line, whose
/// voxel bootstrap is centred, the shift is negligible. Falls back to [`percentile_interval`]
/// when the point is undefined; `None` when fewer than two replicates are finite.
pub fn centred_interval(point: f64, replicates: &[f64], level: f64) -> Option<Interval> {
    if !point.is_finite() {
        return percentile_interval(replicates, level);
    }
    let mut v: Vec<f64> = replicates.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let a = (1.0 - level) / 2.0;
    let shift = point - quantile_sorted(&v, 0.5);
    Some(Interval { lo: quantile_sorted(&v, a) + shift, hi: quantile_sorted(&v, 1.0 - a) + shift })
}

/// Multiplicities of `n` items drawn `n` times with replacement.
fn draw_counts(rng: &mut Rng, n: usize) -> Vec<u32> {
    let mut c = vec![0u32; n];
    for _ in 0..n {
        c[rng.below(n)] += 1;
    }
    c
}

/// Voxel columns per block in [`resampled_scores`]: the rows of a block stay in cache.
const BLOCK: usize = 256;

/// Per-voxel R² and Pearson r over the held-out images counted `counts[i]` times each — the
/// scores of the data set that repeats image `i` `counts[i]` times. With all counts 1 this is
/// [`HeldOut::scores`]. A column that is constant over the drawn images gives 0, as in
/// [`stats::r2_score`] and [`stats::pearson`].
pub fn resampled_scores(h: &HeldOut, counts: &[u32]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(counts.len(), h.n, "one count per held-out image");
    let v = h.v;
    let rows: Vec<(usize, f64)> = counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(i, &c)| (i, c as f64)).collect();
    let total: f64 = rows.iter().map(|r| r.1).sum();
    let mut r2 = vec![0.0f32; v];
    let mut r = vec![0.0f32; v];
    let first = rows.first().map(|r| r.0).unwrap_or(0);
    for ((r2c, rc), b) in r2.chunks_mut(BLOCK).zip(r.chunks_mut(BLOCK)).zip(0..) {
        let (v0, w) = (b * BLOCK, r2c.len());
        let cols = |i: usize| i * v + v0..i * v + v0 + w;
        // One pass: sums of deviations from the first drawn image's values (a shift that keeps
        // the f64 sums well conditioned), from which the centred sums follow. A deviation is
        // exactly 0 only for an equal value, so a column constant over the drawn images is
        // detected exactly, as in `stats`.
        let t0: Vec<f64> = h.target[cols(first)].iter().map(|&x| x as f64).collect();
        let p0: Vec<f64> = h.pred[cols(first)].iter().map(|&x| x as f64).collect();
        let mut acc = vec![[0.0f64; 6]; w];
        let (mut t_var, mut p_var) = (vec![false; w], vec![false; w]);
        for &(i, c) in &rows {
            let (t, p) = (&h.target[cols(i)], &h.pred[cols(i)]);
            for j in 0..w {
                let (tv, pv) = (t[j] as f64, p[j] as f64);
                let (dt, dp, e) = (tv - t0[j], pv - p0[j], tv - pv);
                let a = &mut acc[j];
                a[0] += c * dt;
                a[1] += c * dp;
                a[2] += c * dt * dt;
                a[3] += c * dp * dp;
                a[4] += c * dt * dp;
                a[5] += c * e * e;
                t_var[j] |= dt != 0.0;
                p_var[j] |= dp != 0.0;
            }
        }
        for j in 0..w {
            let [st, sp, stt, spp, stp, sres] = acc[j];
            let ss_t = stt - st * st / total;
            let ss_p = spp - sp * sp / total;
            let s_tp = stp - st * sp / total;
            r2c[j] = if t_var[j] && ss_t > 0.0 { (1.0 - sres / ss_t) as f32 } else { 0.0 };
            rc[j] = if t_var[j] && p_var[j] && ss_t > 0.0 && ss_p > 0.0 {
                (s_tp / (ss_t * ss_p).sqrt()).clamp(-1.0, 1.0) as f32
            } else {
                0.0
            };
        }
    }
    (r2, r)
}

/// The accuracy numbers of one set of per-voxel scores: mean and median R² and r over all voxels
/// and, with a noise ceiling, the mean and median of `clip(max(r, 0)²/NC, 0, 1)` over voxels with
/// a positive finite ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccuracyPoint {
    /// Mean R².
    pub r2_mean: f64,
    /// Median R².
    pub r2_median: f64,
    /// Mean Pearson r.
    pub pearson_mean: f64,
    /// Median Pearson r.
    pub pearson_median: f64,
    /// Mean noise-normalised accuracy (NaN without a noise ceiling).
    pub normalized_mean: f64,
    /// Median noise-normalised accuracy (NaN without a noise ceiling).
    pub normalized_median: f64,
}

/// `clip(max(r, 0)² / NC, 0, 1)` for the voxels with a positive finite noise ceiling
/// (the Algonauts convention, DESIGN §4).
pub fn noise_normalized(pearson: &[f32], nc: &[f32]) -> Vec<f64> {
    pearson
        .iter()
        .zip(nc)
        .filter(|(_, &c)| c.is_finite() && c > 0.0)
        .map(|(&r, &c)| {
            let r = (r as f64).max(0.0);
            (r * r / c as f64).clamp(0.0, 1.0)
        })
        .collect()
}

fn mean_median(xs: &[f64]) -> (f64, f64) {
    (stats::mean(xs), stats::median(xs))
}

/// The [`AccuracyPoint`] of per-voxel R², Pearson r and, when given, noise ceilings.
pub fn accuracy_of(r2: &[f32], pearson: &[f32], nc: Option<&[f32]>) -> AccuracyPoint {
    let r2: Vec<f64> = r2.iter().map(|&x| x as f64).collect();
    let r: Vec<f64> = pearson.iter().map(|&x| x as f64).collect();
    let (nm, nmed) = match nc {
        Some(nc) => mean_median(&noise_normalized(pearson, nc)),
        None => (f64::NAN, f64::NAN),
    };
    let (a, b) = mean_median(&r2);
    let (c, d) = mean_median(&r);
    AccuracyPoint { r2_mean: a, r2_median: b, pearson_mean: c, pearson_median: d, normalized_mean: nm, normalized_median: nmed }
}

/// Settings of the bootstrap.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct BootstrapConfig {
    /// Number of resamples B (0 = no bootstrap).
    pub n_resamples: usize,
    /// Confidence level of the intervals, in (0, 1).
    pub level: f64,
    /// Seed of the resampling draws (independent of the fit's seed).
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self { n_resamples: 1000, level: 0.95, seed: 0 }
    }
}

impl BootstrapConfig {
    /// Checks that the level is in (0, 1) and that there are no resamples or at least 2.
    pub fn validate(&self) -> Result<()> {
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(Error::invalid_arg("level", format!("the confidence level must be in (0, 1), got {}", self.level)));
        }
        if self.n_resamples == 1 {
            return Err(Error::invalid_arg("n_resamples", "a bootstrap needs at least 2 resamples (or 0 for none)"));
        }
        crate::data::limits::at_most("bootstrap resamples (--bootstrap)", self.n_resamples, crate::data::limits::MAX_BOOTSTRAP)?;
        Ok(())
    }
}

/// The voxels the hierarchy line can use, grouped by ROI (the bootstrap's strata).
#[derive(Debug, Clone)]
pub struct RoiStrata {
    /// Voxel indices of each ROI that has any (ROI order).
    pub groups: Vec<Vec<usize>>,
}

impl RoiStrata {
    /// Groups the voxels by ROI label (-1: outside every ROI, left out).
    pub fn new(roi: &[i32], n_rois: usize) -> Result<Self> {
        let mut groups = vec![Vec::new(); n_rois];
        for (i, &r) in roi.iter().enumerate() {
            if r < 0 {
                continue;
            }
            let g = groups.get_mut(r as usize).ok_or_else(|| {
                Error::invalid(format!("voxel {i} has ROI index {r}, but only {n_rois} ROI levels are known"))
            })?;
            g.push(i);
        }
        groups.retain(|g| !g.is_empty());
        Ok(Self { groups })
    }

    /// One stratified resample: each ROI's voxels drawn with replacement, its count kept.
    fn draw(&self, rng: &mut Rng) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.groups.iter().map(Vec::len).sum());
        for g in &self.groups {
            for _ in 0..g.len() {
                out.push(g[rng.below(g.len())]);
            }
        }
        out
    }
}

/// The replicates of every headline number, one entry per resample (NaN where the statistic is
/// undefined in that resample, e.g. no noise ceiling). Kept in memory for paired comparisons and
/// never written to a report; a ranking's pair files carry them (NaN as `null`) so that pairs
/// fitted in other processes can still be compared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Replicates {
    /// Hierarchy slope.
    #[serde(with = "nan_as_null")]
    pub slope: Vec<f64>,
    /// Depth at the bottom of the hierarchy.
    #[serde(with = "nan_as_null")]
    pub b0: Vec<f64>,
    /// Depth at the top of the hierarchy.
    #[serde(with = "nan_as_null")]
    pub b1: Vec<f64>,
    /// Spearman ρ.
    #[serde(with = "nan_as_null")]
    pub spearman: Vec<f64>,
    /// Mean R².
    #[serde(with = "nan_as_null")]
    pub r2_mean: Vec<f64>,
    /// Median R².
    #[serde(with = "nan_as_null")]
    pub r2_median: Vec<f64>,
    /// Mean Pearson r.
    #[serde(with = "nan_as_null")]
    pub pearson_mean: Vec<f64>,
    /// Median Pearson r.
    #[serde(with = "nan_as_null")]
    pub pearson_median: Vec<f64>,
    /// Mean noise-normalised accuracy.
    #[serde(with = "nan_as_null")]
    pub normalized_mean: Vec<f64>,
    /// Median noise-normalised accuracy.
    #[serde(with = "nan_as_null")]
    pub normalized_median: Vec<f64>,
}

/// JSON has no NaN: an undefined replicate travels as `null` and comes back as NaN.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(|x| x.is_finite().then_some(*x)).collect::<Vec<Option<f64>>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    }
}

/// What one resample needs besides the draws.
pub struct BootstrapInputs<'a> {
    /// Per-voxel depth `d_v` (DESIGN §4).
    pub depth: &'a [f64],
    /// Per-voxel ROI label (-1 outside every ROI).
    pub roi: &'a [i32],
    /// Each ROI's hierarchy level.
    pub roi_levels: &'a [i32],
    /// Per-voxel noise ceiling, when known.
    pub noise_ceiling: Option<&'a [f32]>,
    /// Held-out predictions; without them the images are not resampled and the accuracy numbers
    /// get no interval.
    pub heldout: Option<HeldOut<'a>>,
    /// Point per-voxel R² (the weights when `weighted` and there is no `heldout`).
    pub r2: &'a [f32],
    /// Weight the hierarchy line by max(R², 0).
    pub weighted: bool,
}

/// The `(slope, b0, b1, spearman)` of scores, NaN where undefined.
fn line_values(s: &HierarchyScores) -> [f64; 4] {
    let v = |x: Option<f64>| x.unwrap_or(f64::NAN);
    [v(s.slope), v(s.b0), v(s.b1), v(s.spearman)]
}

/// Runs `cfg.n_resamples` resamples in parallel (deterministic for `cfg.seed`).
pub fn bootstrap(inp: &BootstrapInputs, cfg: &BootstrapConfig) -> Result<Replicates> {
    cfg.validate()?;
    let v = inp.roi.len();
    if inp.depth.len() != v || inp.r2.len() != v {
        return Err(Error::mismatch(format!("{} depths and {} R² values for {v} voxels", inp.depth.len(), inp.r2.len())));
    }
    if let Some(h) = &inp.heldout {
        if h.v != v {
            return Err(Error::mismatch(format!("held-out predictions cover {} voxels, the brain has {v}", h.v)));
        }
    }
    let strata = RoiStrata::new(inp.roi, inp.roi_levels.len())?;
    let rows: Vec<[f64; 10]> = (0..cfg.n_resamples)
        .into_par_iter()
        .map(|b| one_resample(inp, &strata, cfg.seed, b))
        .collect();
    let col = |k: usize| rows.iter().map(|r| r[k]).collect::<Vec<f64>>();
    Ok(Replicates {
        slope: col(0),
        b0: col(1),
        b1: col(2),
        spearman: col(3),
        r2_mean: col(4),
        r2_median: col(5),
        pearson_mean: col(6),
        pearson_median: col(7),
        normalized_mean: col(8),
        normalized_median: col(9),
    })
}

fn one_resample(inp: &BootstrapInputs, strata: &RoiStrata, seed: u64, b: usize) -> [f64; 10] {
    let mut out = [f64::NAN; 10];
    // Image-resampled per-voxel scores (or the point scores when there are no predictions).
    let resampled = inp.heldout.as_ref().map(|h| {
        let counts = draw_counts(&mut Rng::derive(seed, &format!("bootstrap.images.{b}")), h.n);
        resampled_scores(h, &counts)
    });
    if let Some((r2, r)) = &resampled {
        let a = accuracy_of(r2, r, inp.noise_ceiling);
        out[4..10].copy_from_slice(&[
            a.r2_mean,
            a.r2_median,
            a.pearson_mean,
            a.pearson_median,
            a.normalized_mean,
            a.normalized_median,
        ]);
    }
    let weights: &[f32] = resampled.as_ref().map(|(r2, _)| r2.as_slice()).unwrap_or(inp.r2);
    let idx = strata.draw(&mut Rng::derive(seed, &format!("bootstrap.voxels.{b}")));
    let depth: Vec<f64> = idx.iter().map(|&i| inp.depth[i]).collect();
    let roi: Vec<i32> = idx.iter().map(|&i| inp.roi[i]).collect();
    let w: Vec<f32> = idx.iter().map(|&i| weights[i]).collect();
    // An error here means every drawn voxel has weight 0: the line is undefined in this resample.
    if let Ok(s) = HierarchyScores::from_depth(&depth, &roi, inp.roi_levels, inp.weighted.then_some(&w[..])) {
        out[0..4].copy_from_slice(&line_values(&s));
    }
    out
}

/// A paired comparison of two networks' replicates of one statistic (same seed, same brain and
/// held-out images, so resample `b` of both saw the same images and voxels).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct PairedDifference {
    /// Point difference `a − b`.
    pub estimate: f64,
    /// Interval of the paired replicate differences, centred on the point difference
    /// ([`centred_interval`]).
    pub interval: Interval,
    /// Two-sided bootstrap p-value: `min(1, 2·min(P*(Δ ≤ 0), P*(Δ ≥ 0)))` over the resamples.
    pub p_value: f64,
    /// The interval excludes 0.
    pub significant: bool,
    /// Resamples where both were defined.
    pub n_resamples: usize,
}

/// Paired difference of `a − b` (point estimates `point_a`, `point_b`); `None` when fewer than
/// two resamples have both defined or the replicate counts differ.
pub fn paired_difference(point_a: f64, a: &[f64], point_b: f64, b: &[f64], level: f64) -> Option<PairedDifference> {
    if a.len() != b.len() || !point_a.is_finite() || !point_b.is_finite() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).filter(|x| x.is_finite()).collect();
    let interval = centred_interval(point_a - point_b, &d, level)?;
    let m = d.len() as f64;
    let le = d.iter().filter(|&&x| x <= 0.0).count() as f64 / m;
    let ge = d.iter().filter(|&&x| x >= 0.0).count() as f64 / m;
    Some(PairedDifference {
        estimate: point_a - point_b,
        interval,
        p_value: (2.0 * le.min(ge)).min(1.0),
        significant: !interval.contains(0.0),
        n_resamples: d.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    fn data(n: usize, v: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Rng::new(seed);
        let mut t = vec![0.0f32; n * v];
        let mut p = vec![0.0f32; n * v];
        for i in 0..n * v {
            let x = rng.normal();
            t[i] = x as f32;
            p[i] = (0.6 * x + 0.8 * rng.normal()) as f32;
        }
        // A constant target column, and a constant prediction column.
        for i in 0..n {
            t[i * v + 3] = 0.25;
            p[i * v + 5] = -1.0;
        }
        (p, t)
    }

    #[test]
    fn centred_interval_is_the_percentile_one_at_the_median_and_follows_a_shift() {
        let reps: Vec<f64> = (0..1000).map(|i| (i as f64 + 0.5) / 1000.0).collect();
        let p = percentile_interval(&reps, 0.9).unwrap();
        // Point at the replicates' median: the percentile interval.
        let c = centred_interval(quantile_sorted(&reps, 0.5), &reps, 0.9).unwrap();
        assert!(close(c.lo, p.lo, 1e-12) && close(c.hi, p.hi, 1e-12));
        // Replicates below the point (a statistic the resampling biases low) and skewed: the
        // percentile interval misses the point; the centred one holds it, with the replicates'
        // width and asymmetry. By hand (type-7 quantiles of ((i + 0.5)/1000)²): median
        // 0.25000025, 5 % 0.00254525, 95 % 0.90164525, so around 0.9: [0.652545, 1.551645].
        let skewed: Vec<f64> = reps.iter().map(|x| x * x).collect();
        assert!(!percentile_interval(&skewed, 0.9).unwrap().contains(1.2));
        let c = centred_interval(0.9, &skewed, 0.9).unwrap();
        assert!(close(c.lo, 0.652_545, 1e-9) && close(c.hi, 1.551_645, 1e-9), "{c:?}");
        assert!(centred_interval(1.2, &skewed, 0.9).unwrap().contains(1.2));
        // An undefined point falls back to the percentile interval; too few replicates: none.
        assert_eq!(centred_interval(f64::NAN, &reps, 0.9), percentile_interval(&reps, 0.9));
        assert!(centred_interval(0.5, &[1.0, f64::NAN], 0.9).is_none());
    }

    #[test]
    fn quantiles_and_intervals_by_hand() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile_sorted(&s, 0.0), 1.0);
        assert_eq!(quantile_sorted(&s, 1.0), 5.0);
        assert_eq!(quantile_sorted(&s, 0.5), 3.0);
        // position 0.1·4 = 0.4 → 1 + 0.4·1.
        assert!(close(quantile_sorted(&s, 0.1), 1.4, 1e-12));
        let iv = percentile_interval(&[5.0, f64::NAN, 1.0, 3.0, 2.0, 4.0], 0.8).unwrap();
        assert!(close(iv.lo, 1.4, 1e-12) && close(iv.hi, 4.6, 1e-12), "{iv:?}");
        assert!(percentile_interval(&[1.0, f64::NAN], 0.9).is_none());
    }

    /// Resampled scores equal the scalar scores of the data set with the drawn images repeated.
    #[test]
    fn resampled_scores_match_expanded_data() {
        let (n, v) = (9, 300);
        let (p, t) = data(n, v, 1);
        let h = HeldOut::new(&p, &t, n, v).unwrap();
        let ones = vec![1u32; n];
        let (r2, r) = resampled_scores(&h, &ones);
        let (r2p, rp) = h.scores();
        for j in 0..v {
            assert!(close(r2[j] as f64, r2p[j] as f64, 1e-5) && close(r[j] as f64, rp[j] as f64, 1e-5), "voxel {j}");
        }
        let counts = [3u32, 0, 1, 0, 2, 1, 0, 2, 0];
        let (r2, r) = resampled_scores(&h, &counts);
        for j in 0..v {
            let mut pe = Vec::new();
            let mut te = Vec::new();
            for (i, &c) in counts.iter().enumerate() {
                for _ in 0..c {
                    pe.push(p[i * v + j]);
                    te.push(t[i * v + j]);
                }
            }
            assert!(close(r2[j] as f64, stats::r2_score(&pe, &te), 1e-5), "R² voxel {j}");
            assert!(close(r[j] as f64, stats::pearson(&pe, &te), 1e-5), "r voxel {j}");
        }
        assert_eq!((r2[3], r[3], r[5]), (0.0, 0.0, 0.0));
    }

    fn toy_inputs<'a>(depth: &'a [f64], roi: &'a [i32], levels: &'a [i32], r2: &'a [f32], h: Option<HeldOut<'a>>) -> BootstrapInputs<'a> {
        BootstrapInputs { depth, roi, roi_levels: levels, noise_ceiling: None, heldout: h, r2, weighted: false }
    }

    #[test]
    fn deterministic_and_thread_independent() {
        let (n, v) = (12, 40);
        let (p, t) = data(n, v, 2);
        let h = HeldOut::new(&p, &t, n, v).unwrap();
        let mut rng = Rng::new(3);
        let roi: Vec<i32> = (0..v).map(|i| (i % 5) as i32 - 1).collect();
        let depth: Vec<f64> = roi.iter().map(|&r| 0.2 * r as f64 + 0.3 * rng.uniform()).collect();
        let (r2, _) = h.scores();
        let levels = [0, 1, 2, 3];
        let cfg = BootstrapConfig { n_resamples: 50, level: 0.9, seed: 7 };
        let inp = toy_inputs(&depth, &roi, &levels, &r2, Some(h));
        let a = bootstrap(&inp, &cfg).unwrap();
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let b = one.install(|| bootstrap(&inp, &cfg).unwrap());
        // Bit-identical (NaN included, which `==` would not accept).
        let bits = |r: &Replicates| {
            [&r.slope, &r.b0, &r.b1, &r.spearman, &r.r2_mean, &r.r2_median, &r.pearson_mean, &r.normalized_mean]
                .iter()
                .flat_map(|v| v.iter().map(|x| x.to_bits()))
                .collect::<Vec<u64>>()
        };
        assert_eq!(bits(&a), bits(&b));
        let c = bootstrap(&inp, &BootstrapConfig { seed: 8, ..cfg }).unwrap();
        assert_ne!(a.slope, c.slope);
        assert!(a.slope.iter().all(|x| x.is_finite()) && a.r2_mean.iter().all(|x| x.is_finite()));
        assert!(a.normalized_mean.iter().all(|x| x.is_nan()), "no noise ceiling → undefined");
    }

    /// The replicates' spread matches the textbook standard errors: the slope of a line through
    /// ROI means (voxel bootstrap) and the mean R² (image bootstrap, checked against the spread
    /// of mean R² over independent data sets).
    #[test]
    fn voxel_bootstrap_spread_matches_the_standard_error() {
        // Two ROIs at h = 0 and h = 1, m voxels each, depths with sd σ: slope = mean₁ − mean₀,
        // whose standard error is σ·√(2/m) (σ estimated by the population sd in each ROI, as the
        // bootstrap does: the bootstrap's variance of a mean is s²/m with the 1/m variance).
        let m = 400;
        let mut rng = Rng::new(11);
        let roi: Vec<i32> = (0..2 * m).map(|i| (i % 2) as i32).collect();
        let depth: Vec<f64> = roi.iter().map(|&r| 0.3 + 0.4 * r as f64 + 0.1 * rng.normal()).collect();
        let sd: Vec<f64> = (0..2)
            .map(|r| stats::std(&depth.iter().zip(&roi).filter(|(_, &q)| q == r).map(|(d, _)| *d).collect::<Vec<_>>()))
            .collect();
        let se = ((sd[0] * sd[0] + sd[1] * sd[1]) / m as f64).sqrt();
        let r2 = vec![0.5f32; 2 * m];
        let inp = toy_inputs(&depth, &roi, &[0, 1], &r2, None);
        let rep = bootstrap(&inp, &BootstrapConfig { n_resamples: 2000, level: 0.95, seed: 1 }).unwrap();
        let boot_sd = stats::std(&rep.slope);
        assert!((boot_sd / se - 1.0).abs() < 0.08, "bootstrap sd {boot_sd} vs standard error {se}");
        // b1 − b0 = slope in every resample; no held-out data → no accuracy replicates.
        for k in 0..rep.slope.len() {
            assert!(close(rep.b1[k] - rep.b0[k], rep.slope[k], 1e-12));
        }
        assert!(rep.r2_mean.iter().all(|x| x.is_nan()));
    }

    #[test]
    fn paired_differences() {
        let a = [0.5, 0.6, 0.7, 0.55];
        let d = paired_difference(0.6, &a, 0.6, &a, 0.95).unwrap();
        assert_eq!((d.estimate, d.interval.lo, d.interval.hi, d.p_value, d.significant), (0.0, 0.0, 0.0, 1.0, false));
        let b = [0.1, 0.2, 0.25, 0.15];
        let d = paired_difference(0.6, &a, 0.2, &b, 0.95).unwrap();
        assert!(d.significant && d.p_value == 0.0 && d.interval.lo > 0.0, "{d:?}");
        // One positive difference in four: P(Δ ≤ 0) = 3/4, P(Δ ≥ 0) = 1/4 → p = 1/2.
        let c = [0.4, 0.7, 0.8, 0.6];
        let d = paired_difference(0.6, &a, 0.6, &c, 0.5).unwrap();
        assert!(close(d.p_value, 0.5, 1e-12), "{d:?}");
        assert!(paired_difference(0.6, &a, 0.6, &a[..3], 0.95).is_none());
    }
}
