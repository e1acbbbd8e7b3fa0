//! Grouping voxels by their channel readout (the channel map: which voxels read the same channels): spherical k-means on
//! the rows of the readout `W` [V, D], seeded k-means++ and a fixed iteration cap.
//!
//! The paper's code groups channels with a k-means + Ward loop that is reported to oscillate for
//! hours. Here every step is bounded and deterministic: one greedy k-means++ pass (about
//! `k·(2 + ln k)` passes over the data), then at most `(1 + MAX_REFINE)·max_iter` Lloyd
//! iterations of O(V·k·D) each, so the worst case is `O((k·ln k + 5·max_iter)·V·k·D)` whatever
//! the data. Assignment runs in parallel per voxel (each
//! result independent of the thread count); centroid sums run in voxel order in f64. The same
//! input and seed give the same labels on every machine.
//!
//! Rows are compared by direction (cosine similarity): a readout's length says how strongly a
//! voxel responds, its direction which channels it reads, and the map is about the latter.

#![warn(missing_docs)]

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::rng::Rng;

/// Default number of groups on the channel map.
pub const DEFAULT_K: usize = 20;
/// Default cap on Lloyd iterations.
pub const DEFAULT_MAX_ITER: usize = 50;
/// Largest k accepted: beyond this the map's colours stop being distinguishable.
pub const MAX_K: usize = 64;

/// The result of [`spherical_kmeans`].
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// Group of each row, in `0..k`; groups are numbered by size, largest first (ties: the group
    /// whose first member comes first).
    pub labels: Vec<usize>,
    /// Number of groups (`min(k, rows)`).
    pub k: usize,
    /// Unit centroids, `[k, D]` row-major, in label order.
    pub centroids: Vec<f32>,
    /// Members per group, in label order.
    pub sizes: Vec<usize>,
    /// Lloyd iterations run, split-and-merge rounds included.
    pub iterations: usize,
    /// Whether the kept run's last iteration changed no label (false: stopped at the cap).
    pub converged: bool,
}

/// Rows scaled to unit length; all-zero rows stay zero.
fn normalise_rows(x: &[f32], d: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    out.par_chunks_mut(d).for_each(|row| {
        let n = row.iter().map(|&a| a as f64 * a as f64).sum::<f64>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|a| *a = (*a as f64 / n) as f32);
        }
    });
    out
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Nearest centroid (largest cosine) of every row and that similarity; ties go to the lower index.
fn assign(x: &[f32], d: usize, centroids: &[f32]) -> Vec<(usize, f32)> {
    x.par_chunks(d)
        .map(|row| {
            let mut best = (0usize, f32::NEG_INFINITY);
            for (j, c) in centroids.chunks(d).enumerate() {
                let s = dot(row, c);
                if s > best.1 {
                    best = (j, s);
                }
            }
            best
        })
        .collect()
}

/// Greedy k-means++ seeding on the cosine distance `1 − cos` (Arthur & Vassilvitskii; the
/// greedy variant scikit-learn uses): each step draws `2 + ⌊ln k⌋` candidates with probability
/// proportional to their distance from the nearest centre so far and keeps the one that lowers
/// the total distance most. Plain k-means++ often puts two centres in one group and none in
/// another, which Lloyd iterations cannot undo.
fn seed_centres(x: &[f32], n: usize, d: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let distances = |c: usize| -> Vec<f64> { x.par_chunks(d).map(|r| (1.0 - dot(r, row(c)) as f64).max(0.0)).collect() };
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut chosen = vec![rng.below(n)];
    let mut nearest = distances(chosen[0]);
    while chosen.len() < k {
        let total: f64 = nearest.iter().sum();
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..trials {
            let cand = if total > 0.0 {
                let mut t = rng.uniform() * total;
                let mut pick = None;
                for (i, &w) in nearest.iter().enumerate() {
                    if w > 0.0 && t < w {
                        pick = Some(i);
                        break;
                    }
                    t -= w;
                }
                // Rounding can walk past the end; take the farthest row then.
                pick.unwrap_or_else(|| (0..n).max_by(|&a, &b| nearest[a].total_cmp(&nearest[b]).then(b.cmp(&a))).unwrap_or(0))
            } else {
                // Fewer distinct directions than k: take unused rows in order (groups may coincide).
                (0..n).find(|i| !chosen.contains(i)).unwrap_or(0)
            };
            let merged: Vec<f64> = nearest.iter().zip(distances(cand)).map(|(&a, b)| a.min(b)).collect();
            let pot: f64 = merged.iter().sum();
            if best.as_ref().is_none_or(|b| pot < b.0) {
                best = Some((pot, cand, merged));
            }
        }
        let (_, cand, merged) = best.expect("at least two trials");
        chosen.push(cand);
        nearest = merged;
    }
    chosen.iter().flat_map(|&i| row(i).iter().copied()).collect()
}

/// Unit-length mean direction of each group's rows (f64 sums in row order). An empty group
/// takes the row least similar to its own centroid (lowest index among ties), so no group is
/// ever lost.
fn update(x: &[f32], d: usize, k: usize, labels: &mut [(usize, f32)]) -> Vec<f32> {
    let mut sums = vec![0.0f64; k * d];
    let mut counts = vec![0usize; k];
    for (row, &(j, _)) in x.chunks(d).zip(labels.iter()) {
        counts[j] += 1;
        for (s, &a) in sums[j * d..(j + 1) * d].iter_mut().zip(row) {
            *s += a as f64;
        }
    }
    for j in 0..k {
        if counts[j] == 0 {
            let far = (0..labels.len())
                .filter(|&i| counts[labels[i].0] > 1)
                .min_by(|&a, &b| labels[a].1.total_cmp(&labels[b].1).then(a.cmp(&b)));
            if let Some(i) = far {
                counts[labels[i].0] -= 1;
                let old = labels[i].0;
                for t in 0..d {
                    sums[old * d + t] -= x[i * d + t] as f64;
                    sums[j * d + t] = x[i * d + t] as f64;
                }
                counts[j] = 1;
                labels[i] = (j, 1.0);
            }
        }
    }
    let mut out = vec![0.0f32; k * d];
    for j in 0..k {
        let s = &sums[j * d..(j + 1) * d];
        let norm = s.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 0.0 {
            for t in 0..d {
                out[j * d + t] = (s[t] / norm) as f32;
            }
        }
    }
    out
}

/// Largest number of split-and-merge rounds after the first Lloyd run.
pub const MAX_REFINE: usize = 4;

/// The state after Lloyd iterations: each row's group and cosine to its centroid, the unit
/// centroids, the objective (sum of those cosines) and how the iterations ended.
struct Lloyd {
    labels: Vec<(usize, f32)>,
    centroids: Vec<f32>,
    objective: f64,
    iterations: usize,
    converged: bool,
}

/// At most `max_iter` Lloyd iterations from `centroids`, stopping when no label changes.
fn lloyd(xn: &[f32], d: usize, k: usize, mut centroids: Vec<f32>, max_iter: usize) -> Lloyd {
    let mut labels = assign(xn, d, &centroids);
    let mut iterations = 0;
    let mut converged = false;
    while iterations < max_iter {
        iterations += 1;
        centroids = update(xn, d, k, &mut labels);
        let next = assign(xn, d, &centroids);
        let changed = next.iter().zip(&labels).any(|(a, b)| a.0 != b.0);
        labels = next;
        if !changed {
            converged = true;
            break;
        }
    }
    let objective = labels.iter().map(|&(_, s)| s as f64).sum();
    Lloyd { labels, centroids, objective, iterations, converged }
}

/// Starting centroids for one split-and-merge round, or `None` when there is nothing to try
/// (fewer than 3 groups). Lloyd iterations cannot move a centroid from two true groups it
/// shares onto a true group that has none; this round does: it merges the two most similar
/// centroids into one and gives the freed centroid to the loosest group (largest summed
/// `1 − cos`), at that group's member farthest from its centroid.
fn split_and_merge(xn: &[f32], d: usize, k: usize, s: &Lloyd) -> Option<Vec<f32>> {
    if k < 3 {
        return None;
    }
    let c = |j: usize| &s.centroids[j * d..(j + 1) * d];
    let mut counts = vec![0usize; k];
    let mut loose = vec![0.0f64; k];
    for &(j, sim) in &s.labels {
        counts[j] += 1;
        loose[j] += 1.0 - sim as f64;
    }
    let (mut p, mut q, mut top) = (0, 1, f32::NEG_INFINITY);
    for a in 0..k {
        for b in a + 1..k {
            let sim = dot(c(a), c(b));
            if sim > top {
                (p, q, top) = (a, b, sim);
            }
        }
    }
    let r = (0..k).filter(|&j| j != p && j != q).max_by(|&a, &b| loose[a].total_cmp(&loose[b]).then(b.cmp(&a)))?;
    let far = (0..s.labels.len())
        .filter(|&i| s.labels[i].0 == r)
        .min_by(|&a, &b| s.labels[a].1.total_cmp(&s.labels[b].1).then(a.cmp(&b)))?;
    let mut out = s.centroids.clone();
    let (np, nq) = (counts[p] as f32, counts[q] as f32);
    let merged: Vec<f32> = c(p).iter().zip(c(q)).map(|(&a, &b)| np * a + nq * b).collect();
    let norm = merged.iter().map(|&a| a as f64 * a as f64).sum::<f64>().sqrt();
    for t in 0..d {
        out[p * d + t] = if norm > 0.0 { (merged[t] as f64 / norm) as f32 } else { c(p)[t] };
        out[q * d + t] = xn[far * d + t];
    }
    Some(out)
}

/// Spherical k-means of the `n` rows of `x` (`[n, d]` row-major): greedy k-means++ seeding from
/// `seed`, at most `max_iter` Lloyd iterations (stopping early when no label changes), then up to
/// [`MAX_REFINE`] split-and-merge rounds of at most `max_iter` iterations each, each kept only if
/// it raises the objective. `k` is lowered to `n` when there are fewer rows than groups.
pub fn spherical_kmeans(x: &[f32], n: usize, d: usize, k: usize, seed: u64, max_iter: usize) -> Result<Clustering> {
    if n == 0 || d == 0 {
        return Err(Error::invalid(format!("cannot group {n} readouts of width {d}")));
    }
    if x.len() != n * d {
        return Err(Error::mismatch(format!("readout has {} values, expected {n} × {d}", x.len())));
    }
    if !(1..=MAX_K).contains(&k) {
        return Err(Error::invalid(format!("number of channel groups {k} is outside 1..={MAX_K}")));
    }
    if let Some(i) = x.iter().position(|a| !a.is_finite()) {
        return Err(Error::invalid(format!("readout of voxel {} has a non-finite weight", i / d)));
    }
    let k = k.min(n);
    let xn = normalise_rows(x, d);
    let mut rng = Rng::derive(seed, "cluster.kmeans++");
    let mut best = lloyd(&xn, d, k, seed_centres(&xn, n, d, k, &mut rng), max_iter);
    let mut iterations = best.iterations;
    for _ in 0..MAX_REFINE {
        let Some(start) = split_and_merge(&xn, d, k, &best) else { break };
        let next = lloyd(&xn, d, k, start, max_iter);
        iterations += next.iterations;
        // Accept only a clear gain (a relative 1e-6 of the objective), so rounding cannot loop.
        if next.objective > best.objective + 1e-6 * best.objective.abs().max(1.0) {
            best = next;
        } else {
            break;
        }
    }
    let Lloyd { labels, centroids, converged, .. } = best;
    // Number groups by size (largest first), ties by first member, so colours are stable.
    let mut sizes = vec![0usize; k];
    let mut first = vec![usize::MAX; k];
    for (i, &(j, _)) in labels.iter().enumerate() {
        sizes[j] += 1;
        first[j] = first[j].min(i);
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(first[a].cmp(&first[b])));
    let mut rank = vec![0usize; k];
    for (r, &j) in order.iter().enumerate() {
        rank[j] = r;
    }
    Ok(Clustering {
        labels: labels.iter().map(|&(j, _)| rank[j]).collect(),
        k,
        centroids: order.iter().flat_map(|&j| centroids[j * d..(j + 1) * d].iter().copied()).collect(),
        sizes: order.iter().map(|&j| sizes[j]).collect(),
        iterations,
        converged,
    })
}

/// Adjusted Rand index of two labelings of the same items (Hubert & Arabie 1985): 1 for
/// identical partitions (up to renaming), about 0 for independent ones. `None` when the
/// lengths differ or the index is undefined (both labelings put everything in one group, or
/// fewer than two items).
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let ka = a.iter().max().map_or(0, |m| m + 1);
    let kb = b.iter().max().map_or(0, |m| m + 1);
    let mut table = vec![0u64; ka * kb];
    for (&x, &y) in a.iter().zip(b) {
        table[x * kb + y] += 1;
    }
    let c2 = |m: u64| (m as f64) * (m as f64 - 1.0) / 2.0;
    let sum_cells: f64 = table.iter().map(|&m| c2(m)).sum();
    let sum_a: f64 = (0..ka).map(|i| c2(table[i * kb..(i + 1) * kb].iter().sum())).sum();
    let sum_b: f64 = (0..kb).map(|j| c2((0..ka).map(|i| table[i * kb + j]).sum())).sum();
    let total = c2(a.len() as u64);
    let expected = sum_a * sum_b / total;
    let max = 0.5 * (sum_a + sum_b);
    if (max - expected).abs() < 1e-12 {
        return None;
    }
    Some((sum_cells - expected) / (max - expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `groups` unit directions in `d` dimensions, `n` rows each direction plus Gaussian noise of
    /// standard deviation `noise` per coordinate, rows shuffled; returns (data, planted labels).
    fn planted(n: usize, d: usize, groups: usize, noise: f64, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = Rng::new(seed);
        let dirs: Vec<Vec<f64>> = (0..groups)
            .map(|_| {
                let v: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
                let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
                v.iter().map(|a| a / norm).collect()
            })
            .collect();
        let mut x = Vec::with_capacity(n * d);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let g = rng.below(groups);
            // Random positive lengths: only the direction is planted.
            let len = 0.5 + 2.0 * rng.uniform();
            for &dir in &dirs[g][..d] {
                x.push((len * (dir + noise * rng.normal())) as f32);
            }
            labels.push(g);
        }
        (x, labels)
    }

    #[test]
    fn ari_hand_worked() {
        // sklearn's documented example: [0,0,1,1] vs [0,0,1,2] → 0.5714… (= 4/7 by hand:
        // pairs together in both 1, in a 2, in b 1, total 6; E = 2·1/6 = 1/3; max = 1.5;
        // (1 − 1/3)/(1.5 − 1/3) = 4/7).
        let ari = adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]).unwrap();
        assert!((ari - 4.0 / 7.0).abs() < 1e-12, "{ari}");
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 3, 3]), Some(1.0));
        assert!(adjusted_rand_index(&[0, 0, 0], &[0, 0, 0]).is_none());
        assert!(adjusted_rand_index(&[0, 1], &[0]).is_none());
        // Against a labeling that splits every planted group evenly: exactly 0 by hand
        // (a: {0,1},{2,3}; b: {0,2},{1,3}; no pair together in both; E = 2·2/6; max = 2).
        let ari = adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1]).unwrap();
        assert!((ari - (0.0 - 2.0 / 3.0) / (2.0 - 2.0 / 3.0)).abs() < 1e-12, "{ari}");
    }

    #[test]
    fn recovers_planted_directions() {
        // Noise 0.08 per coordinate in 128 dimensions: each row's cosine with its own direction
        // is about 1/√(1 + 128·0.0064) ≈ 0.74, with other directions about 0 ± 0.1.
        let (n, d, g) = (4000, 128, 20);
        let (x, truth) = planted(n, d, g, 0.08, 7);
        let c = spherical_kmeans(&x, n, d, g, 0, DEFAULT_MAX_ITER).unwrap();
        let ari = adjusted_rand_index(&truth, &c.labels).unwrap();
        eprintln!("planted 20 directions, V = {n}: ARI {ari:.4}, {} iterations", c.iterations);
        assert!(ari > 0.95, "ARI {ari}");
        assert_eq!(c.sizes.iter().sum::<usize>(), n);
        assert!(c.sizes.windows(2).all(|w| w[0] >= w[1]), "{:?}", c.sizes);
        // Centroids are unit vectors.
        for row in c.centroids.chunks(d) {
            assert!((dot(row, row) - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn deterministic_and_capped() {
        let (n, d, g) = (1500, 32, 8);
        let (x, _) = planted(n, d, g, 0.5, 3);
        let a = spherical_kmeans(&x, n, d, 12, 5, 3).unwrap();
        let b = spherical_kmeans(&x, n, d, 12, 5, 3).unwrap();
        assert_eq!(a, b);
        assert!(a.iterations <= 3 * (1 + MAX_REFINE));
        // A different seed is allowed to differ, but must still be a valid partition.
        let c = spherical_kmeans(&x, n, d, 12, 6, 3).unwrap();
        assert_eq!(c.labels.len(), n);
        assert!(c.labels.iter().all(|&l| l < 12) && c.sizes.iter().all(|&s| s > 0));
    }

    #[test]
    fn edge_cases() {
        // Fewer rows than groups, repeated rows, a zero row.
        let x = [1.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        let c = spherical_kmeans(&x, 3, 2, 5, 0, 10).unwrap();
        assert_eq!(c.k, 3);
        assert_eq!(c.labels.len(), 3);
        assert!(spherical_kmeans(&x, 3, 2, 0, 0, 10).is_err());
        assert!(spherical_kmeans(&x, 3, 2, MAX_K + 1, 0, 10).is_err());
        assert!(spherical_kmeans(&x[..5], 3, 2, 2, 0, 10).is_err());
        assert!(spherical_kmeans(&[f32::NAN, 1.0], 1, 2, 1, 0, 10).is_err());
    }
}
