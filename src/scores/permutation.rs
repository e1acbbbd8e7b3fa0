//! A null for the hierarchy (DESIGN §4: how often would ROI levels assigned at random
//! to whole ROIs give a line at least as steep (and a rank agreement at least as strong) as the
//! observed one?
//!
//! Levels are permuted across the ROIs that have voxels in the fit; every ROI keeps its voxels
//! together, so the spatial smoothness of the layer map (neighbouring voxels reading from similar
//! layers) is part of the null instead of inflating the evidence. The test is one-sided: a
//! brain-like hierarchy has a positive slope, and a reversed one is not evidence for it.
//!
//! Because `h` is constant within an ROI, the weighted least-squares line and Spearman's ρ only
//! depend on per-ROI sums (voxel count, weight, weighted depth, sum of depth ranks), so each
//! permutation costs O(R log R) for R ROIs. With few ROIs (R! ≤ the requested number) every
//! permutation is enumerated and the p-value is exact; otherwise random permutations give
//! `(1 + #{T* ≥ T}) / (1 + P)`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::scores::hierarchy::roi_positions;
use crate::scores::stats;

/// Settings of the permutation test.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct PermutationConfig {
    /// Random permutations P when the ROIs have more than P orderings (0 = no test).
    pub n_permutations: usize,
    /// Seed of the random permutations.
    pub seed: u64,
}

impl Default for PermutationConfig {
    fn default() -> Self {
        Self { n_permutations: 10_000, seed: 0 }
    }
}

/// The test's result.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct PermutationTest {
    /// One-sided p-value of the observed slope: the chance that shuffled ROI levels give a
    /// slope at least as large.
    pub p_slope: f64,
    /// The same for Spearman's ρ.
    pub p_spearman: f64,
    /// Permutations evaluated (all R! orderings when `exact`).
    pub n_permutations: usize,
    /// Every ordering of the ROI levels was enumerated.
    pub exact: bool,
    /// ROIs whose levels were shuffled (those with voxels in the fit).
    pub n_rois: usize,
}

/// Per-ROI sums of the voxels in the fit.
struct RoiSums {
    /// Position `h` of each ROI (in the observed assignment).
    pos: Vec<f64>,
    n: Vec<f64>,
    /// Σ w and Σ w·d.
    sw: Vec<f64>,
    swd: Vec<f64>,
    /// Σ (rank of d − mean rank) over the ROI's voxels.
    srank: Vec<f64>,
    /// Σ (rank of d − mean rank)² over all voxels.
    rank_ss: f64,
    n_total: f64,
}

/// Slope and Spearman ρ of the line through ROI groups placed at positions `h[k]`.
/// `None` when the positions do not vary (the line is undefined).
fn stats_at(s: &RoiSums, h: &[f64]) -> Option<(f64, f64)> {
    let w: f64 = s.sw.iter().sum();
    let hm = s.sw.iter().zip(h).map(|(w, h)| w * h).sum::<f64>() / w;
    let dm = s.swd.iter().sum::<f64>() / w;
    let (mut shh, mut shd) = (0.0, 0.0);
    for ((&hk, &w), &wd) in h.iter().zip(&s.sw).zip(&s.swd) {
        let dh = hk - hm;
        shh += w * dh * dh;
        shd += dh * (wd - w * dm);
    }
    if shh <= 0.0 {
        return None;
    }
    let slope = shd / shh;
    // Ranks of h: ROIs sorted by position, ties given the average rank of the voxels they span.
    let mut order: Vec<usize> = (0..h.len()).collect();
    order.sort_by(|&a, &b| h[a].total_cmp(&h[b]));
    let mean_rank = (s.n_total + 1.0) / 2.0;
    let mut rank_h = vec![0.0; h.len()];
    let mut below = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        let mut count = 0.0;
        while j < order.len() && h[order[j]] == h[order[i]] {
            count += s.n[order[j]];
            j += 1;
        }
        let avg = below + (count + 1.0) / 2.0;
        for &k in &order[i..j] {
            rank_h[k] = avg - mean_rank;
        }
        below += count;
        i = j;
    }
    let shr: f64 = (0..h.len()).map(|k| s.n[k] * rank_h[k] * rank_h[k]).sum();
    let sxy: f64 = (0..h.len()).map(|k| rank_h[k] * s.srank[k]).sum();
    let rho = if shr > 0.0 && s.rank_ss > 0.0 { (sxy / (shr * s.rank_ss).sqrt()).clamp(-1.0, 1.0) } else { 0.0 };
    Some((slope, rho))
}

/// All permutations of `0..k` (Heap's algorithm), passed to `f` one at a time.
fn for_each_permutation(k: usize, mut f: impl FnMut(&[usize])) {
    let mut p: Vec<usize> = (0..k).collect();
    let mut c = vec![0usize; k];
    f(&p);
    let mut i = 0;
    while i < k {
        if c[i] < i {
            if i % 2 == 0 {
                p.swap(0, i);
            } else {
                p.swap(c[i], i);
            }
            f(&p);
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
}

fn factorial_at_most(k: usize, limit: usize) -> Option<usize> {
    (1..=k).try_fold(1usize, |acc, x| acc.checked_mul(x).filter(|&v| v <= limit))
}

/// Permutation test of the hierarchy line over `depth`, ROI labels `roi` (−1 = none) and the
/// brain's `roi_levels`, weighted by `max(R², 0)` when `r2` is given (the voxels and weights of
/// [`crate::scores::HierarchyScores::from_depth`]). `None` when there is nothing to test: no line
/// (fewer than two distinct positions among ROIs with voxels) or `n_permutations` = 0.
pub fn permutation_test(
    depth: &[f64],
    roi: &[i32],
    roi_levels: &[i32],
    r2: Option<&[f32]>,
    cfg: &PermutationConfig,
) -> Result<Option<PermutationTest>> {
    if depth.len() != roi.len() || r2.is_some_and(|r| r.len() != roi.len()) {
        return Err(Error::mismatch(format!("{} depths, {} ROI labels and R² for a different count", depth.len(), roi.len())));
    }
    if cfg.n_permutations == 0 {
        return Ok(None);
    }
    let pos = roi_positions(roi_levels);
    let mut slot = vec![usize::MAX; pos.len()];
    let mut sums = RoiSums { pos: vec![], n: vec![], sw: vec![], swd: vec![], srank: vec![], rank_ss: 0.0, n_total: 0.0 };
    let mut kept: Vec<(usize, f64)> = Vec::new();
    for (i, &r) in roi.iter().enumerate() {
        if r < 0 {
            continue;
        }
        let ru = r as usize;
        if ru >= pos.len() {
            return Err(Error::invalid(format!("voxel {i} has ROI index {r}, but only {} ROI levels are known", pos.len())));
        }
        let w = match r2 {
            Some(r2) if r2[i].is_finite() => (r2[i] as f64).max(0.0),
            Some(_) => 0.0,
            None => 1.0,
        };
        if w <= 0.0 {
            continue;
        }
        if slot[ru] == usize::MAX {
            slot[ru] = sums.pos.len();
            sums.pos.push(pos[ru]);
            for v in [&mut sums.n, &mut sums.sw, &mut sums.swd, &mut sums.srank] {
                v.push(0.0);
            }
        }
        let k = slot[ru];
        sums.n[k] += 1.0;
        sums.sw[k] += w;
        sums.swd[k] += w * depth[i];
        kept.push((k, depth[i]));
    }
    let d: Vec<f64> = kept.iter().map(|x| x.1).collect();
    let ranks = stats::rankdata(&d);
    sums.n_total = d.len() as f64;
    let mean_rank = (sums.n_total + 1.0) / 2.0;
    for ((k, _), r) in kept.iter().zip(&ranks) {
        sums.srank[*k] += r - mean_rank;
        sums.rank_ss += (r - mean_rank) * (r - mean_rank);
    }
    let Some((slope, rho)) = stats_at(&sums, &sums.pos) else {
        return Ok(None);
    };
    let k = sums.pos.len();
    // Ties in floating point: a permutation that swaps ROIs at equal levels reproduces the
    // observed statistic up to summation order, and must count as "at least as large".
    let tol = |x: f64| 1e-9 * (1.0 + x.abs());
    let (mut ge_slope, mut ge_rho, mut count) = (0usize, 0usize, 0usize);
    let mut h = vec![0.0; k];
    let mut tally = |perm: &[usize]| {
        for (j, &p) in perm.iter().enumerate() {
            h[j] = sums.pos[p];
        }
        // Permuting positions keeps their multiset, so the line stays defined.
        let (s, r) = stats_at(&sums, &h).expect("a permutation keeps the positions' spread");
        ge_slope += (s >= slope - tol(slope)) as usize;
        ge_rho += (r >= rho - tol(rho)) as usize;
        count += 1;
    };
    let exact = factorial_at_most(k, cfg.n_permutations).is_some();
    if exact {
        for_each_permutation(k, &mut tally);
        Ok(Some(PermutationTest {
            p_slope: ge_slope as f64 / count as f64,
            p_spearman: ge_rho as f64 / count as f64,
            n_permutations: count,
            exact: true,
            n_rois: k,
        }))
    } else {
        let mut rng = Rng::derive(cfg.seed, "permutation.roi_levels");
        for _ in 0..cfg.n_permutations {
            let p = rng.permutation(k);
            tally(&p);
        }
        let m = (count + 1) as f64;
        Ok(Some(PermutationTest {
            p_slope: (ge_slope + 1) as f64 / m,
            p_spearman: (ge_rho + 1) as f64 / m,
            n_permutations: count,
            exact: false,
            n_rois: k,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::HierarchyScores;

    /// `stats_at` (per-ROI sums) agrees with the voxel-level `HierarchyScores::from_depth` for
    /// arbitrary level assignments, weighted and unweighted.
    #[test]
    fn roi_sums_agree_with_voxel_level_scores() {
        let mut rng = Rng::new(4);
        let v = 300;
        let roi: Vec<i32> = (0..v).map(|_| rng.below(7) as i32 - 1).collect();
        let depth: Vec<f64> = (0..v).map(|i| ((i * 7) % 11) as f64 / 10.0).collect(); // ties in d
        let r2: Vec<f32> = (0..v).map(|_| (rng.uniform() - 0.2) as f32).collect();
        for levels in [vec![0, 1, 2, 3, 4, 4], vec![4, 0, 3, 1, 2, 4], vec![2, 2, 0, 0, 1, 1]] {
            for w in [None, Some(&r2[..])] {
                let want = HierarchyScores::from_depth(&depth, &roi, &levels, w).unwrap();
                let t = permutation_test(&depth, &roi, &levels, w, &PermutationConfig { n_permutations: 720, seed: 0 })
                    .unwrap()
                    .unwrap();
                assert!(t.exact && t.n_permutations == 720 && t.n_rois == 6);
                // Recompute every permutation's slope at voxel level and compare p-values.
                let (mut ge_s, mut ge_r) = (0, 0);
                for_each_permutation(6, |p| {
                    let perm_levels: Vec<i32> = (0..6).map(|j| levels[p[j]]).collect();
                    let s = HierarchyScores::from_depth(&depth, &roi, &perm_levels, w).unwrap();
                    ge_s += (s.slope.unwrap() >= want.slope.unwrap() - 1e-9) as usize;
                    ge_r += (s.spearman.unwrap() >= want.spearman.unwrap() - 1e-9) as usize;
                });
                assert!((t.p_slope - ge_s as f64 / 720.0).abs() < 1e-12, "{t:?} vs {ge_s}");
                assert!((t.p_spearman - ge_r as f64 / 720.0).abs() < 1e-12, "{t:?} vs {ge_r}");
            }
        }
    }

    #[test]
    fn heaps_algorithm_visits_every_permutation_once() {
        let mut seen = std::collections::BTreeSet::new();
        for_each_permutation(5, |p| {
            assert!(seen.insert(p.to_vec()));
        });
        assert_eq!(seen.len(), 120);
        assert_eq!(factorial_at_most(5, 120), Some(120));
        assert_eq!(factorial_at_most(6, 120), None);
    }

    #[test]
    fn perfect_hierarchy_has_the_smallest_p_and_monte_carlo_is_seeded() {
        // Eight ROIs at distinct levels, depth = position exactly: only the identity reaches the
        // observed slope, so the exact p-value is 1/8!.
        let roi: Vec<i32> = (0..80).map(|i| i % 8).collect();
        let levels: Vec<i32> = (0..8).collect();
        let depth: Vec<f64> = roi.iter().map(|&r| r as f64 / 7.0).collect();
        let t = permutation_test(&depth, &roi, &levels, None, &PermutationConfig { n_permutations: 40_320, seed: 0 })
            .unwrap()
            .unwrap();
        assert!(t.exact && (t.p_slope - 1.0 / 40_320.0).abs() < 1e-15, "{t:?}");
        let cfg = PermutationConfig { n_permutations: 999, seed: 3 };
        let a = permutation_test(&depth, &roi, &levels, None, &cfg).unwrap().unwrap();
        assert!(!a.exact && a.n_permutations == 999);
        assert_eq!(a, permutation_test(&depth, &roi, &levels, None, &cfg).unwrap().unwrap());
        // (1 + #≥)/(1 + P) ≥ 1/1000, and a random draw hits the identity with chance 1/40320.
        assert!(a.p_slope >= 1e-3 && a.p_slope < 3e-3, "{a:?}");
        // No line, no test.
        assert!(permutation_test(&depth, &vec![0; 80], &levels, None, &cfg).unwrap().is_none());
        assert!(permutation_test(&depth, &roi, &levels, None, &PermutationConfig { n_permutations: 0, seed: 0 })
            .unwrap()
            .is_none());
    }
}
