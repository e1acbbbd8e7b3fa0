//! Small statistics used by the scores (DESIGN §4).
//!
//! Inputs are `f32` or `f64` slices; every sum is accumulated in `f64`, because per-voxel sums over
//! thousands of images lose digits in `f32` and the scores are compared across runs.
//!
//! Degenerate inputs have documented finite answers (never NaN) wherever a caller can reasonably
//! hit them with real data: a constant voxel, a single ROI level. Empty inputs are the exception:
//! `mean`, `median` and `std` of nothing are NaN, and callers that may see empty groups (the report's
//! per-ROI summaries) check for emptiness first.

#![warn(missing_docs)]

use rayon::prelude::*;

/// Voxel columns handled per rayon task: the [N, V] arrays are row-major, so each task walks rows
/// over a contiguous block of columns instead of striding down one column at a time.
const VOXEL_BLOCK: usize = 256;

fn to_f64<T: Copy + Into<f64>>(xs: &[T]) -> impl Iterator<Item = f64> + '_ {
    xs.iter().map(|&x| x.into())
}

/// True when every element equals the first (or there are none). Checked exactly rather than via a
/// variance threshold, because the f64 mean of n copies of one f64 value is not always that value.
fn is_constant<T: Copy + Into<f64>>(xs: &[T]) -> bool {
    match xs.first() {
        None => true,
        Some(&first) => {
            let first: f64 = first.into();
            to_f64(xs).all(|x| x == first)
        }
    }
}

/// Arithmetic mean; NaN for an empty slice.
pub fn mean<T: Copy + Into<f64>>(xs: &[T]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    to_f64(xs).sum::<f64>() / xs.len() as f64
}

/// Median (average of the two middle values for an even count); NaN for an empty slice.
pub fn median<T: Copy + Into<f64>>(xs: &[T]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v: Vec<f64> = to_f64(xs).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Population standard deviation (divides by n, not n − 1); NaN for an empty slice.
pub fn std<T: Copy + Into<f64>>(xs: &[T]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let m = mean(xs);
    let var = to_f64(xs).map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64;
    var.sqrt()
}

/// Coefficient of determination `1 − SS_res/SS_tot` with `SS_tot` taken about the target's mean,
/// as torchmetrics' `R2Score` for one output. It can be negative (worse than predicting the mean).
///
/// A constant target has `SS_tot = 0`, where R² is undefined; this returns 0.0 so that a dead
/// voxel counts as "explains nothing" in means and medians instead of poisoning them with NaN.
///
/// # Panics
/// If the slices differ in length.
pub fn r2_score<T: Copy + Into<f64>>(pred: &[T], target: &[T]) -> f64 {
    assert_eq!(
        pred.len(),
        target.len(),
        "r2_score: prediction and target lengths differ"
    );
    if is_constant(target) {
        return 0.0;
    }
    let m = mean(target);
    let (mut ss_res, mut ss_tot) = (0.0f64, 0.0f64);
    for (p, t) in to_f64(pred).zip(to_f64(target)) {
        ss_res += (t - p) * (t - p);
        ss_tot += (t - m) * (t - m);
    }
    1.0 - ss_res / ss_tot
}

/// Pearson correlation. 0.0 when either input is constant (correlation undefined), so that a dead
/// voxel reads as "uncorrelated" rather than NaN. Clamped to [−1, 1] against rounding.
///
/// # Panics
/// If the slices differ in length.
pub fn pearson<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len(), "pearson: input lengths differ");
    if is_constant(a) || is_constant(b) {
        return 0.0;
    }
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in to_f64(a).zip(to_f64(b)) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        return 0.0;
    }
    (sab / (saa * sbb).sqrt()).clamp(-1.0, 1.0)
}

/// 1-based ranks with ties given the average of the ranks they span (scipy's `rankdata`
/// "average" method), so that Spearman's ρ is well defined with ties.
/// NaNs sort after every number (`total_cmp`), so they get the top ranks.
pub fn rankdata<T: Copy + Into<f64>>(xs: &[T]) -> Vec<f64> {
    let vals: Vec<f64> = to_f64(xs).collect();
    let mut order: Vec<usize> = (0..vals.len()).collect();
    order.sort_by(|&i, &j| vals[i].total_cmp(&vals[j]));
    let mut ranks = vec![0.0; vals.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && vals[order[end]] == vals[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end; their average:
        let avg = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = avg;
        }
        start = end;
    }
    ranks
}

/// Spearman's ρ: the Pearson correlation of average ranks. 0.0 when either input is constant.
///
/// # Panics
/// If the slices differ in length.
pub fn spearman<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len(), "spearman: input lengths differ");
    pearson(&rankdata(a), &rankdata(b))
}

/// Least-squares line `y ≈ b0 + slope·x`, optionally weighted (minimises `Σ w (y − b0 − slope·x)²`).
/// Returns `(b0, slope)`.
///
/// Degenerate cases: when x does not vary (among points of positive weight) the slope is
/// unidentifiable; this returns slope 0 and `b0` = the (weighted) mean of y, the best constant.
/// With no points, or total weight 0, there is nothing to fit and both are NaN: callers that can
/// hit this (the hierarchy scores) check for it and report an error instead.
///
/// # Panics
/// If the lengths of x, y and weights differ.
pub fn linear_fit<T: Copy + Into<f64>>(x: &[T], y: &[T], weights: Option<&[f64]>) -> (f64, f64) {
    assert_eq!(x.len(), y.len(), "linear_fit: x and y lengths differ");
    if let Some(w) = weights {
        assert_eq!(
            w.len(),
            x.len(),
            "linear_fit: weights length differs from x"
        );
    }
    let w = |i: usize| weights.map_or(1.0, |w| w[i]);
    let xs: Vec<f64> = to_f64(x).collect();
    let ys: Vec<f64> = to_f64(y).collect();
    let sw: f64 = (0..xs.len()).map(w).sum();
    if xs.is_empty() || sw <= 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let mx = (0..xs.len()).map(|i| w(i) * xs[i]).sum::<f64>() / sw;
    let my = (0..xs.len()).map(|i| w(i) * ys[i]).sum::<f64>() / sw;
    let (mut sxy, mut sxx) = (0.0f64, 0.0f64);
    for i in 0..xs.len() {
        let dx = xs[i] - mx;
        sxy += w(i) * dx * (ys[i] - my);
        sxx += w(i) * dx * dx;
    }
    // x constant among the weighted points: exact test on those points, for the reason given at
    // `is_constant`.
    let weighted_x: Vec<f64> = (0..xs.len())
        .filter(|&i| w(i) > 0.0)
        .map(|i| xs[i])
        .collect();
    if is_constant(&weighted_x) || sxx == 0.0 {
        return (my, 0.0);
    }
    let slope = sxy / sxx;
    (my - slope * mx, slope)
}

fn check_nv(a: &[f32], b: &[f32], n: usize, v: usize, what: &str) {
    assert_eq!(a.len(), n * v, "{what}: first array is not [N={n}, V={v}]");
    assert_eq!(b.len(), n * v, "{what}: second array is not [N={n}, V={v}]");
}

/// Per-column statistics of one block of voxel columns: column means of `a` and `b`, and whether
/// each column of `a` and of `b` varies at all.
struct BlockMeans {
    ma: Vec<f64>,
    mb: Vec<f64>,
    a_varies: Vec<bool>,
    b_varies: Vec<bool>,
}

fn block_means(a: &[f32], b: &[f32], n: usize, v: usize, v0: usize, w: usize) -> BlockMeans {
    let mut sa = vec![0.0f64; w];
    let mut sb = vec![0.0f64; w];
    let mut a_varies = vec![false; w];
    let mut b_varies = vec![false; w];
    for i in 0..n {
        let ra = &a[i * v + v0..i * v + v0 + w];
        let rb = &b[i * v + v0..i * v + v0 + w];
        for j in 0..w {
            sa[j] += ra[j] as f64;
            sb[j] += rb[j] as f64;
            a_varies[j] |= ra[j] != a[v0 + j];
            b_varies[j] |= rb[j] != b[v0 + j];
        }
    }
    let inv = 1.0 / n.max(1) as f64;
    BlockMeans {
        ma: sa.into_iter().map(|s| s * inv).collect(),
        mb: sb.into_iter().map(|s| s * inv).collect(),
        a_varies,
        b_varies,
    }
}

/// [`r2_score`] for every column of row-major `[N, V]` arrays: element `v` is the R² of voxel `v`
/// over the N images. A constant target column gives 0.0, as in `r2_score`.
///
/// # Panics
/// If either slice is not `n * v` long.
pub fn r2_per_voxel(pred: &[f32], target: &[f32], n: usize, v: usize) -> Vec<f32> {
    check_nv(pred, target, n, v, "r2_per_voxel");
    let mut out = vec![0.0f32; v];
    out.par_chunks_mut(VOXEL_BLOCK)
        .enumerate()
        .for_each(|(bi, chunk)| {
            let (v0, w) = (bi * VOXEL_BLOCK, chunk.len());
            let m = block_means(target, pred, n, v, v0, w);
            let mut ss_res = vec![0.0f64; w];
            let mut ss_tot = vec![0.0f64; w];
            for i in 0..n {
                let rp = &pred[i * v + v0..i * v + v0 + w];
                let rt = &target[i * v + v0..i * v + v0 + w];
                for j in 0..w {
                    let t = rt[j] as f64;
                    let e = t - rp[j] as f64;
                    let d = t - m.ma[j];
                    ss_res[j] += e * e;
                    ss_tot[j] += d * d;
                }
            }
            for j in 0..w {
                chunk[j] = if m.a_varies[j] && ss_tot[j] > 0.0 {
                    (1.0 - ss_res[j] / ss_tot[j]) as f32
                } else {
                    0.0
                };
            }
        });
    out
}

/// [`pearson`] for every column of row-major `[N, V]` arrays. A constant column in either array
/// gives 0.0, as in `pearson`.
///
/// # Panics
/// If either slice is not `n * v` long.
pub fn pearson_per_voxel(a: &[f32], b: &[f32], n: usize, v: usize) -> Vec<f32> {
    check_nv(a, b, n, v, "pearson_per_voxel");
    let mut out = vec![0.0f32; v];
    out.par_chunks_mut(VOXEL_BLOCK)
        .enumerate()
        .for_each(|(bi, chunk)| {
            let (v0, w) = (bi * VOXEL_BLOCK, chunk.len());
            let m = block_means(a, b, n, v, v0, w);
            let mut sab = vec![0.0f64; w];
            let mut saa = vec![0.0f64; w];
            let mut sbb = vec![0.0f64; w];
            for i in 0..n {
                let ra = &a[i * v + v0..i * v + v0 + w];
                let rb = &b[i * v + v0..i * v + v0 + w];
                for j in 0..w {
                    let dx = ra[j] as f64 - m.ma[j];
                    let dy = rb[j] as f64 - m.mb[j];
                    sab[j] += dx * dy;
                    saa[j] += dx * dx;
                    sbb[j] += dy * dy;
                }
            }
            for j in 0..w {
                chunk[j] = if m.a_varies[j] && m.b_varies[j] && saa[j] > 0.0 && sbb[j] > 0.0 {
                    (sab[j] / (saa[j] * sbb[j]).sqrt()).clamp(-1.0, 1.0) as f32
                } else {
                    0.0
                };
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn r2_by_hand() {
        // target mean 7/3; SS_tot = (16 + 1 + 25)/9 = 42/9; SS_res = 1; R² = 1 − 9/42 = 11/14.
        let r = r2_score(&[1.0f32, 2.0, 3.0], &[1.0f32, 2.0, 4.0]);
        assert!(close(r, 11.0 / 14.0, 1e-12), "{r}");
        // Predicting the mean exactly gives 0; a perfect prediction gives 1.
        assert!(close(
            r2_score(&[2.0f32, 2.0, 2.0], &[1.0f32, 2.0, 3.0]),
            0.0,
            1e-12
        ));
        assert_eq!(r2_score(&[1.0f32, 2.0, 3.0], &[1.0f32, 2.0, 3.0]), 1.0);
        // Anti-prediction is worse than the mean: SS_res = 4 + 0 + 4 = 8, SS_tot = 2 → −3.
        assert!(close(
            r2_score(&[3.0f32, 2.0, 1.0], &[1.0f32, 2.0, 3.0]),
            -3.0,
            1e-12
        ));
    }

    #[test]
    fn r2_constant_target_is_zero() {
        assert_eq!(r2_score(&[0.3f32, 0.1, 0.2], &[0.1f32, 0.1, 0.1]), 0.0);
    }

    #[test]
    fn pearson_by_hand() {
        // a dev [−1, 0, 1]; b dev [−4/3, −1/3, 5/3]; Sab = 3, Saa = 2, Sbb = 42/9 → 9/√84.
        let r = pearson(&[1.0f32, 2.0, 3.0], &[1.0f32, 2.0, 4.0]);
        assert!(close(r, 9.0 / 84f64.sqrt(), 1e-12), "{r}");
        assert!(close(
            pearson(&[1.0, 2.0, 3.0], &[-2.0, -4.0, -6.0]),
            -1.0,
            1e-12
        ));
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[0.1, 0.1, 0.1]), 0.0);
        assert_eq!(pearson(&[0.1f64, 0.1, 0.1], &[1.0, 2.0, 3.0]), 0.0);
    }

    #[test]
    fn rankdata_average_ties() {
        assert_eq!(rankdata(&[1.0, 2.0, 2.0, 3.0]), vec![1.0, 2.5, 2.5, 4.0]);
        assert_eq!(
            rankdata(&[3.0f32, 1.0, 3.0, 3.0, 0.0]),
            vec![4.0, 2.0, 4.0, 4.0, 1.0]
        );
        assert!(rankdata::<f64>(&[]).is_empty());
    }

    #[test]
    fn spearman_with_ties_by_hand() {
        // ranks a = [1, 2.5, 2.5, 4], b = [1, 3, 2, 4]; both mean 2.5;
        // a dev [−1.5, 0, 0, 1.5], b dev [−1.5, 0.5, −0.5, 1.5];
        // Sab = 4.5, Saa = 4.5, Sbb = 5 → ρ = 4.5/√22.5 = √0.9.
        let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]);
        assert!(close(rho, 0.9f64.sqrt(), 1e-12), "{rho}");
        // Monotone but nonlinear: ρ = 1 where Pearson is not.
        assert!(close(
            spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 8.0, 27.0, 64.0]),
            1.0,
            1e-12
        ));
    }

    #[test]
    fn linear_fit_exact_line() {
        let x = [-1.0, 0.0, 0.5, 2.0, 7.0];
        let y: Vec<f64> = x.iter().map(|x| 0.25 - 1.5 * x).collect();
        let (b0, s) = linear_fit(&x, &y, None);
        assert!(close(b0, 0.25, 1e-12) && close(s, -1.5, 1e-12), "{b0} {s}");
        let w = [0.1, 3.0, 0.0, 2.0, 1.0];
        let (b0, s) = linear_fit(&x, &y, Some(&w));
        assert!(close(b0, 0.25, 1e-12) && close(s, -1.5, 1e-12), "{b0} {s}");
    }

    #[test]
    fn linear_fit_three_points_by_hand() {
        let x = [0.0, 1.0, 2.0];
        let y = [0.0, 2.0, 1.0];
        // Unweighted: x̄ = ȳ = 1, Sxy = 1, Sxx = 2 → slope 1/2, b0 = 1/2.
        let (b0, s) = linear_fit(&x, &y, None);
        assert!(close(b0, 0.5, 1e-12) && close(s, 0.5, 1e-12), "{b0} {s}");
        // Weights [1, 1, 2], normal equations:
        //   Σw y  = b0 Σw  + s Σw x   →  4 = 4 b0 + 5 s
        //   Σw xy = b0 Σw x + s Σw x² →  6 = 5 b0 + 9 s
        // → s = 4/11, b0 = 6/11.
        let (b0, s) = linear_fit(&x, &y, Some(&[1.0, 1.0, 2.0]));
        assert!(
            close(b0, 6.0 / 11.0, 1e-12) && close(s, 4.0 / 11.0, 1e-12),
            "{b0} {s}"
        );
    }

    #[test]
    fn linear_fit_degenerate() {
        // x constant: best constant is the mean of y.
        let (b0, s) = linear_fit(&[0.1, 0.1, 0.1], &[1.0, 2.0, 6.0], None);
        assert!(close(b0, 3.0, 1e-12) && s == 0.0);
        // x varies only at a zero-weight point.
        let (b0, s) = linear_fit(&[0.0, 0.0, 1.0], &[1.0, 3.0, 9.0], Some(&[1.0, 1.0, 0.0]));
        assert!(close(b0, 2.0, 1e-12) && s == 0.0);
        let (b0, s) = linear_fit::<f64>(&[], &[], None);
        assert!(b0.is_nan() && s.is_nan());
    }

    #[test]
    fn mean_median_std() {
        assert_eq!(mean(&[1.0f32, 2.0, 6.0]), 3.0);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 10.0]), 3.5);
        // population: deviations [−2, −1, 3], variance 14/3.
        assert!(close(
            std(&[1.0f32, 2.0, 6.0]),
            (14.0f64 / 3.0).sqrt(),
            1e-12
        ));
        assert!(
            mean::<f64>(&[]).is_nan() && median::<f64>(&[]).is_nan() && std::<f64>(&[]).is_nan()
        );
    }

    #[test]
    fn per_voxel_matches_scalar() {
        // N = 5 images, V = 600 voxels (crosses a block boundary), column 7 constant target.
        let (n, v) = (5, 600);
        let mut pred = vec![0.0f32; n * v];
        let mut target = vec![0.0f32; n * v];
        for i in 0..n {
            for j in 0..v {
                let t = ((i * 7 + j * 3) % 11) as f32 * 0.3 - (j % 5) as f32;
                target[i * v + j] = if j == 7 { 0.1 } else { t };
                pred[i * v + j] = t * 0.8 + ((i + 2 * j) % 3) as f32 * 0.1;
            }
        }
        let r2 = r2_per_voxel(&pred, &target, n, v);
        let r = pearson_per_voxel(&pred, &target, n, v);
        for j in 0..v {
            let p: Vec<f32> = (0..n).map(|i| pred[i * v + j]).collect();
            let t: Vec<f32> = (0..n).map(|i| target[i * v + j]).collect();
            assert!(close(r2[j] as f64, r2_score(&p, &t), 1e-5), "voxel {j}");
            assert!(close(r[j] as f64, pearson(&p, &t), 1e-5), "voxel {j}");
        }
        assert_eq!(r2[7], 0.0);
        assert_eq!(r[7], 0.0);
    }
}
