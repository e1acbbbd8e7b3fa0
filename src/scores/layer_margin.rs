//! Whether the data supports each ROI's layer choice: how much better its voxels' chosen layers
//! predict held-out responses than the best other layer, with an interval.
//!
//! Comparing layers through the fitted readout would not be fair: a voxel's `W_v` was trained
//! for the layer it chose, so any other layer would lose by construction. Instead every layer
//! gets the same chance. For a sample of each ROI's voxels and for every layer `l`, the voxel's
//! fitted location and scale read layer `l`'s aligned features (`(1 − s)·bilinear(M_l) + s·g_l`,
//! `D` numbers an image, the same for every layer), a ridge regression with an intercept is fitted
//! on training images (its penalty chosen by generalised cross-validation) and scored on the
//! held-out images. A voxel's margin is the held-out R² of its chosen layer (argmax `p_v`) less the
//! best R² among the other layers (its rival); an ROI's is the mean over its sampled voxels,
//! with a percentile bootstrap interval over held-out images and voxels together (each voxel
//! keeps its rival). An interval that
//! includes 0 means the data cannot tell the chosen layer from another: a coin toss, not a
//! finding.
//!
//! Cost is bounded whatever the subject's size: at most [`VOXELS_PER_ROI`] voxels an ROI,
//! [`MAX_TRAIN_IMAGES`] training and [`MAX_HELD_OUT_IMAGES`] held-out images, whose aligned maps
//! are held one layer at a time (`images × (G² + 1) × D` floats).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::baseline::linalg::{gemm_f64, rm, rm_mut, sym_eig};
use crate::data::Array;
use crate::error::{Error, Result};
use crate::model::readout::{taps, OUTSIDE};
use crate::model::{Encoder, PreparedFeatures, Selections, Split};
use crate::rng::Rng;

/// Voxels sampled per ROI.
pub const VOXELS_PER_ROI: usize = 50;
/// Training images the per-layer regressions are fitted on, at most.
pub const MAX_TRAIN_IMAGES: usize = 1000;
/// Held-out images they are scored on, at most.
pub const MAX_HELD_OUT_IMAGES: usize = 500;
/// Ridge penalties tried, relative to the mean eigenvalue of the centred Gram matrix.
const PENALTIES: [f64; 8] = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0];
/// Images aligned at a time.
const CHUNK: usize = 64;

/// One ROI's margin.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LayerMargin {
    /// Mean over the sampled voxels of (held-out R² of the chosen layer − best other layer's).
    pub margin: f64,
    /// Lower bound of the bootstrap interval of `margin`.
    pub lo: f64,
    /// Upper bound of the bootstrap interval of `margin`.
    pub hi: f64,
    /// Confidence level of `lo`–`hi`.
    pub level: f64,
    /// Voxels sampled from the ROI.
    pub n_voxels: usize,
    /// Training images the regressions used.
    pub n_train: usize,
    /// Held-out images they were scored on.
    pub n_held_out: usize,
}

/// Bytes [`layer_margins`] holds at most (one layer's aligned maps and the held-out
/// predictions), for the memory estimate.
pub fn margin_bytes(n_train: usize, n_val: usize, n_layers: usize, grid: usize, d: usize, n_rois: usize) -> u128 {
    let n = (n_train.min(MAX_TRAIN_IMAGES) + n_val.min(MAX_HELD_OUT_IMAGES)) as u128;
    let maps = 4 * n * (grid * grid + 1) as u128 * d as u128;
    let preds = 4 * (n_rois * VOXELS_PER_ROI) as u128 * n_layers as u128 * n_val.min(MAX_HELD_OUT_IMAGES) as u128;
    maps + preds
}

/// An evenly spread, seeded subset of `items` of at most `k` (all of them when there are fewer).
fn sample(items: &[usize], k: usize, rng: &mut Rng) -> Vec<usize> {
    if items.len() <= k {
        return items.to_vec();
    }
    let mut v = items.to_vec();
    for i in 0..k {
        let j = i + rng.below(v.len() - i);
        v.swap(i, j);
    }
    let mut out = v[..k].to_vec();
    out.sort_unstable();
    out
}

/// The training and held-out images the margins use: seeded samples of the split's, at most
/// [`MAX_TRAIN_IMAGES`] and [`MAX_HELD_OUT_IMAGES`]. `fit` and `score` draw the same ones.
pub fn margin_images(split: &Split, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::derive(seed, "layer margin images");
    let train = sample(&split.train, MAX_TRAIN_IMAGES, &mut rng);
    let val = sample(&split.val, MAX_HELD_OUT_IMAGES, &mut rng);
    (train, val)
}

/// The margins of every ROI of `roi` (`n_rois` of them; `None` for an ROI without voxels or
/// with fewer than 3 training or held-out images or a single layer), with intervals at `level`
/// from `resamples` bootstrap resamples. `train` and `val` are [`margin_images`] (image indices
/// of `responses` `[N, V]`), and `rows` the rows of `prepared` that hold those images, training
/// then held-out (`prepared` may hold all images or only these).
#[allow(clippy::too_many_arguments)]
pub fn layer_margins(
    enc: &Encoder,
    prepared: &PreparedFeatures,
    rows: &[usize],
    (train, val): (&[usize], &[usize]),
    responses: &Array,
    sel: &Selections,
    roi: &[i32],
    n_rois: usize,
    level: f64,
    resamples: usize,
    seed: u64,
) -> Result<Vec<Option<LayerMargin>>> {
    let (l, d, g) = (enc.spec.n_layers(), enc.spec.d, enc.spec.grid);
    let v = responses.shape.get(1).copied().unwrap_or(0);
    if sel.n_voxels() != v || roi.len() != v || rows.len() != train.len() + val.len() {
        return Err(Error::mismatch(format!(
            "layer margins: {v} voxels of responses, {} of selections, {} ROI labels; {} rows for {} images",
            sel.n_voxels(),
            roi.len(),
            rows.len(),
            train.len() + val.len()
        )));
    }
    if l < 2 || val.len() < 3 || train.len() < 3 {
        return Ok(vec![None; n_rois]);
    }
    let mut rng = Rng::derive(seed, "layer margin voxels");
    let voxels: Vec<Vec<usize>> = (0..n_rois)
        .map(|r| {
            let members: Vec<usize> = (0..v).filter(|&i| roi[i] == r as i32).collect();
            sample(&members, VOXELS_PER_ROI, &mut rng)
        })
        .collect();
    let images: Vec<usize> = train.iter().chain(val).copied().collect();
    let cells = g * g + 1;
    let (nt, nv) = (train.len(), val.len());
    let lp = &sel.layer_probs.data;
    let all: Vec<usize> = voxels.iter().flatten().copied().collect();
    let taps_of: Vec<_> = all.iter().map(|&vox| taps(sel.space.data[2 * vox], sel.space.data[2 * vox + 1], g)).collect();
    let ys: Vec<Vec<f64>> = all.iter().map(|&vox| images.iter().map(|&i| responses.data[i * v + vox] as f64).collect()).collect();
    // Held-out predictions of every layer per sampled voxel, `[L, nv]`, filled a layer at a time:
    // one layer's aligned maps are held at once (`images × (G² + 1) × D` floats).
    let mut preds: Vec<Vec<f32>> = vec![vec![0f32; l * nv]; all.len()];
    let count = crate::data::limits::elements("aligned maps for the layer margins", &[images.len(), cells, d])?;
    let mut maps: Vec<f32> = crate::data::limits::try_zeroed("aligned maps for the layer margins", count)?;
    let per_image = cells * d;
    for layer in 0..l {
        for (chunk, dst) in rows.chunks(CHUNK).zip(maps.chunks_mut(CHUNK * per_image)) {
            let (local, global) = prepared.layer_batch(layer, chunk)?;
            let m = enc.align_layer(layer, &local, &global)?.flatten_all()?.to_vec1::<f32>()?;
            dst[..m.len()].copy_from_slice(&m);
        }
        let maps = &maps;
        preds.par_iter_mut().enumerate().try_for_each(|(j, out)| -> Result<()> {
                let (vox, t, y) = (all[j], &taps_of[j], &ys[j]);
                let s = sel.scale[vox];
                let mut x = vec![0f64; images.len() * d];
                for (b, row) in x.chunks_exact_mut(d).enumerate() {
                    let base = b * per_image;
                    let global = &maps[base + (cells - 1) * d..base + cells * d];
                    for (o, &m) in row.iter_mut().zip(global) {
                        *o = s as f64 * m as f64;
                    }
                    for (&c, &w) in t.idx.iter().zip(&t.w) {
                        if c == OUTSIDE {
                            continue;
                        }
                        let a = ((1.0 - s) * w) as f64;
                        for (o, &m) in row.iter_mut().zip(&maps[base + c * d..base + (c + 1) * d]) {
                            *o += a * m as f64;
                        }
                    }
                }
                let p = ridge_gcv(&x[..nt * d], &y[..nt], &x[nt * d..], d)?;
                out[layer * nv..(layer + 1) * nv].iter_mut().zip(p).for_each(|(o, p)| *o = p as f32);
                Ok(())
            })?;
    }
    let fitted: Vec<(usize, Vec<f32>)> = all
        .iter()
        .zip(preds)
        .map(|(&vox, p)| {
            let row = &lp[vox * l..(vox + 1) * l];
            ((0..l).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(0), p)
        })
        .collect();
    let targets: Vec<Vec<f64>> = all.iter().map(|&vox| val.iter().map(|&i| responses.data[i * v + vox] as f64).collect()).collect();
    // Each voxel's rival: the other layer that predicts the held-out images best. Fixed here, so
    // that the bootstrap resamples the comparison the estimate makes (re-choosing the rival in
    // every resample would favour the rivals by their noise).
    let ones = vec![1.0; nv];
    let rivals: Vec<usize> = fitted
        .iter()
        .zip(&targets)
        .map(|((chosen, preds), y)| {
            (0..l).filter(|k| k != chosen).max_by(|&a, &b| r2(y, &preds[a * nv..(a + 1) * nv], &ones).total_cmp(&r2(y, &preds[b * nv..(b + 1) * nv], &ones))).unwrap_or(0)
        })
        .collect();
    let mut out = Vec::with_capacity(n_rois);
    let mut at = 0;
    for (r, members) in voxels.iter().enumerate() {
        let range = at..at + members.len();
        at += members.len();
        if members.is_empty() {
            out.push(None);
            continue;
        }
        let roi_fits = &fitted[range.clone()];
        let roi_rivals = &rivals[range.clone()];
        let roi_targets = &targets[range];
        let margin = mean_margin(roi_fits, roi_rivals, roi_targets, &ones, &(0..members.len()).collect::<Vec<_>>(), nv);
        let mut boot_rng = Rng::derive(seed, &format!("layer margins bootstrap {r}"));
        let mut draws: Vec<f64> = (0..resamples.max(1))
            .map(|_| {
                let mut w = vec![0.0; nv];
                for _ in 0..nv {
                    w[boot_rng.below(nv)] += 1.0;
                }
                let vs: Vec<usize> = (0..members.len()).map(|_| boot_rng.below(members.len())).collect();
                mean_margin(roi_fits, roi_rivals, roi_targets, &w, &vs, nv)
            })
            .filter(|x| x.is_finite())
            .collect();
        draws.sort_by(f64::total_cmp);
        let q = |p: f64| draws[((p * (draws.len() - 1) as f64).round() as usize).min(draws.len() - 1)];
        if !margin.is_finite() || draws.is_empty() {
            out.push(None);
            continue;
        }
        let tail = (1.0 - level) / 2.0;
        out.push(Some(LayerMargin {
            margin,
            lo: q(tail),
            hi: q(1.0 - tail),
            level,
            n_voxels: members.len(),
            n_train: nt,
            n_held_out: nv,
        }));
    }
    Ok(out)
}

/// R² of `pred` for `y` with the images weighted by `w` (bootstrap counts).
fn r2(y: &[f64], pred: &[f32], w: &[f64]) -> f64 {
    let wsum: f64 = w.iter().sum();
    let mean = y.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() / wsum;
    let sst: f64 = y.iter().zip(w).map(|(a, b)| b * (a - mean) * (a - mean)).sum();
    let sse: f64 = y.iter().zip(pred).zip(w).map(|((a, &q), b)| b * (a - q as f64) * (a - q as f64)).sum();
    1.0 - sse / sst
}

/// The mean over voxels `vs` (indices into `fits`) of the chosen layer's held-out R² less its
/// rival's, with held-out images weighted by `w` (bootstrap counts).
fn mean_margin(fits: &[(usize, Vec<f32>)], rivals: &[usize], targets: &[Vec<f64>], w: &[f64], vs: &[usize], nv: usize) -> f64 {
    let mut total = 0.0;
    for &j in vs {
        let (chosen, preds) = &fits[j];
        let at = |k: usize| &preds[k * nv..(k + 1) * nv];
        total += r2(&targets[j], at(*chosen), w) - r2(&targets[j], at(rivals[j]), w);
    }
    total / vs.len() as f64
}

/// Ridge regression with an intercept of `y` on the rows of `x` (`[n, d]`), its penalty chosen
/// among [`PENALTIES`] by generalised cross-validation; returns the predictions for the rows of
/// `x_new`.
fn ridge_gcv(x: &[f64], y: &[f64], x_new: &[f64], d: usize) -> Result<Vec<f64>> {
    let n = y.len();
    let mean_x: Vec<f64> = (0..d).map(|k| x.chunks_exact(d).map(|r| r[k]).sum::<f64>() / n as f64).collect();
    let mean_y = y.iter().sum::<f64>() / n as f64;
    let xc: Vec<f64> = x.chunks_exact(d).flat_map(|row| row.iter().zip(&mean_x).map(|(a, m)| a - m)).collect();
    let yc: Vec<f64> = y.iter().map(|v| v - mean_y).collect();
    let yy: f64 = yc.iter().map(|v| v * v).sum();
    let mut gram = vec![0f64; d * d];
    gemm_f64(rm_mut(&mut gram, d, d), rm(&xc, n, d).transpose(), rm(&xc, n, d));
    let mut xy = vec![0f64; d];
    gemm_f64(rm_mut(&mut xy, d, 1), rm(&xc, n, d).transpose(), rm(&yc, n, 1));
    let (lam, vecs) = sym_eig(&gram, d)?;
    // z = Vᵀ Xᵀy; the squared projections of y on the left singular vectors are z²/λ.
    let z: Vec<f64> = (0..d).map(|j| (0..d).map(|i| vecs[i * d + j] * xy[i]).sum()).collect();
    let scale = lam.iter().map(|x| x.max(0.0)).sum::<f64>() / d as f64;
    let mut best = (f64::INFINITY, 1.0);
    for &r in &PENALTIES {
        let alpha = (r * scale).max(f64::MIN_POSITIVE);
        let (mut fit, mut dof) = (0.0, 0.0);
        for (&lj, &zj) in lam.iter().zip(&z) {
            if lj <= 0.0 {
                continue;
            }
            let f = lj / (lj + alpha);
            fit += f * (2.0 - f) * zj * zj / lj;
            dof += f;
        }
        let rss = (yy - fit).max(0.0);
        let gcv = rss / ((n as f64 - dof - 1.0).max(1.0)).powi(2);
        if gcv < best.0 {
            best = (gcv, alpha);
        }
    }
    let alpha = best.1;
    // β = V diag(1/(λ + α)) z.
    let coef: Vec<f64> = lam.iter().zip(&z).map(|(&lj, &zj)| if lj > 0.0 { zj / (lj + alpha) } else { 0.0 }).collect();
    let beta: Vec<f64> = (0..d).map(|i| (0..d).map(|j| vecs[i * d + j] * coef[j]).sum()).collect();
    Ok(x_new
        .chunks_exact(d)
        .map(|row| mean_y + row.iter().zip(&mean_x).zip(&beta).map(|((a, m), b)| (a - m) * b).sum::<f64>())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the normal equations solved directly at the penalty GCV chose, and GCV's choice
    /// against a brute-force GCV over the same grid.
    #[test]
    fn ridge_matches_the_normal_equations() {
        let (n, d) = (60, 5);
        let mut rng = Rng::new(3);
        let x: Vec<f64> = (0..n * d).map(|_| rng.normal()).collect();
        let y: Vec<f64> = x.chunks_exact(d).map(|r| 2.0 * r[0] - r[3] + 0.5 + 0.3 * rng.normal()).collect();
        let x_new: Vec<f64> = (0..4 * d).map(|_| rng.normal()).collect();
        let got = ridge_gcv(&x, &y, &x_new, d).unwrap();
        // Brute force: for each penalty, solve (XcᵀXc + αI)β = Xcᵀyc by Gaussian elimination.
        let mx: Vec<f64> = (0..d).map(|k| x.chunks_exact(d).map(|r| r[k]).sum::<f64>() / n as f64).collect();
        let my = y.iter().sum::<f64>() / n as f64;
        let xc: Vec<Vec<f64>> = x.chunks_exact(d).map(|r| r.iter().zip(&mx).map(|(a, m)| a - m).collect()).collect();
        let yc: Vec<f64> = y.iter().map(|v| v - my).collect();
        let mut g = vec![vec![0.0; d]; d];
        let mut b = vec![0.0; d];
        for (r, &t) in xc.iter().zip(&yc) {
            for i in 0..d {
                b[i] += r[i] * t;
                for j in 0..d {
                    g[i][j] += r[i] * r[j];
                }
            }
        }
        let trace: f64 = (0..d).map(|i| g[i][i]).sum::<f64>() / d as f64;
        let solve = |alpha: f64| -> Vec<f64> {
            let mut a: Vec<Vec<f64>> = g.iter().enumerate().map(|(i, row)| {
                let mut r = row.clone();
                r[i] += alpha;
                r.push(b[i]);
                r
            }).collect();
            for col in 0..d {
                let piv = a[col][col];
                a[col][col..=d].iter_mut().for_each(|x| *x /= piv);
                let pivot = a[col].clone();
                for (row, r) in a.iter_mut().enumerate().take(d) {
                    if row != col {
                        let f = r[col];
                        r[col..=d].iter_mut().zip(&pivot[col..=d]).for_each(|(x, p)| *x -= f * p);
                    }
                }
            }
            a.iter().map(|r| r[d]).collect()
        };
        let gcv = |alpha: f64| -> (f64, Vec<f64>) {
            let beta = solve(alpha);
            let rss: f64 = xc.iter().zip(&yc).map(|(r, t)| (t - r.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>()).powi(2)).sum();
            // Degrees of freedom tr(X(XᵀX + αI)⁻¹Xᵀ), column by column of the identity.
            let mut dof = 0.0;
            let ev = crate::baseline::linalg::sym_eig(&g.iter().flatten().copied().collect::<Vec<_>>(), d).unwrap().0;
            for l in ev {
                dof += l / (l + alpha);
            }
            (rss / (n as f64 - dof - 1.0).powi(2), beta)
        };
        let (_, beta) = PENALTIES
            .iter()
            .map(|r| gcv(r * trace))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap();
        for (row, &p) in x_new.chunks_exact(d).zip(&got) {
            let want = my + row.iter().zip(&mx).zip(&beta).map(|((a, m), b)| (a - m) * b).sum::<f64>();
            assert!((p - want).abs() < 1e-8 * (1.0 + want.abs()), "{p} vs {want}");
        }
    }

    #[test]
    fn samples_are_seeded_subsets() {
        let items: Vec<usize> = (0..100).collect();
        let a = sample(&items, 10, &mut Rng::new(1));
        assert_eq!(a, sample(&items, 10, &mut Rng::new(1)));
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample(&items[..5], 10, &mut Rng::new(1)), items[..5].to_vec());
    }
}
