//! Channel alignment (DESIGN §3.2) of a batch, forward and backward, reading the resampled
//! features where `PreparedFeatures` keeps them (no copy of the feature set; 16-bit features are
//! widened an image at a time as they are multiplied): per (image, layer)
//! `M = X·Pᵀ` `[G·G, D]` and `g = x_g·Qᵀ` `[D]`, one small product each, in parallel over
//! (image, layer); the backward accumulates `dP_l = Σ_b dM_bᵀ·X_b` and `dQ_l = Σ_b dg_bᵀ·x_b`
//! over the batch in order, in parallel over layers.

use super::gemm::{gemm, rm, view, view_mut};
use super::layout::Layout;
use crate::model::prepared::PreparedFeatures;
use faer::Par;
use rayon::prelude::*;

/// Aligns images `idx` into `maps[..idx.len()]` (`[B, L, G·G + 1, D]`).
pub fn forward(lay: &Layout, gg: usize, params: &[f32], x: &PreparedFeatures, idx: &[usize], maps: &mut [f32]) {
    let (l_count, d) = (lay.l, lay.d);
    let cells = gg + 1;
    maps[..idx.len() * l_count * cells * d].par_chunks_mut(cells * d).enumerate().for_each_init(scratch, |(sl, sg), (bl, block)| {
        let (b, l) = (bl / l_count, bl % l_count);
        let (img, c) = (idx[b], lay.widths[l]);
        let xl = x.local_image(l, img, sl);
        let xg = x.global_image(l, img, sg);
        let (loc, glob) = block.split_at_mut(gg * d);
        gemm(rm_mut(loc, gg, d), false, rm(xl, gg, c), view(params, lay.local[l], d, c, c).transpose(), Par::Seq);
        gemm(rm_mut(glob, 1, d), false, rm(xg, 1, c), view(params, lay.global[l], d, c, c).transpose(), Par::Seq);
    });
}

/// Aligns images `idx` into `maps[..idx.len()]` in the cell-major layout `[B, G·G + 1, L, D]`
/// (per image and cell, every layer side by side) that the fixed-encoder readout multiplies
/// ([`super::fixed_readout`]): the products of [`forward`], written with a row stride of `L·D`,
/// in parallel over images.
pub fn forward_cell_major(lay: &Layout, gg: usize, params: &[f32], x: &PreparedFeatures, idx: &[usize], maps: &mut [f32]) {
    let (l_count, d) = (lay.l, lay.d);
    let ld = l_count * d;
    maps[..idx.len() * (gg + 1) * ld].par_chunks_mut((gg + 1) * ld).zip(idx.par_iter()).for_each_init(scratch, |(sl, sg), (block, &img)| {
        for l in 0..l_count {
            let c = lay.widths[l];
            let xl = x.local_image(l, img, sl);
            let xg = x.global_image(l, img, sg);
            let local = view_mut(block, l * d, gg, d, ld);
            gemm(local, false, rm(xl, gg, c), view(params, lay.local[l], d, c, c).transpose(), Par::Seq);
            let global = view_mut(block, gg * ld + l * d, 1, d, ld);
            gemm(global, false, rm(xg, 1, c), view(params, lay.global[l], d, c, c).transpose(), Par::Seq);
        }
    });
}

/// Per worker: room to widen one image's local map and global token when the features are
/// kept in 16 bits (unused for f32 features, which are read in place).
fn scratch() -> (Vec<f32>, Vec<f32>) {
    (Vec::new(), Vec::new())
}

fn rm_mut(data: &mut [f32], rows: usize, cols: usize) -> faer::MatMut<'_, f32> {
    view_mut(data, 0, rows, cols, cols)
}

/// Gradients of `P_l`, `Q_l` (overwritten in `grads`) from `dmaps[..idx.len()]`.
pub fn backward(lay: &Layout, gg: usize, x: &PreparedFeatures, idx: &[usize], dmaps: &[f32], grads: &mut [f32]) {
    let (l_count, d) = (lay.l, lay.d);
    let cells = gg + 1;
    // Disjoint per-layer gradient slices: P_0..P_{L-1}, then Q_0..Q_{L-1}.
    let mut rest = &mut grads[..lay.align_end()];
    let mut parts: Vec<&mut [f32]> = Vec::with_capacity(2 * l_count);
    for _ in 0..2 {
        for &c in &lay.widths {
            let (a, b) = std::mem::take(&mut rest).split_at_mut(d * c);
            parts.push(a);
            rest = b;
        }
    }
    let (dp, dq) = parts.split_at_mut(l_count);
    dp.par_iter_mut().zip(dq.par_iter_mut()).enumerate().for_each_init(scratch, |(sl, sg), (l, (gp, gq))| {
        let c = lay.widths[l];
        for (b, &img) in idx.iter().enumerate() {
            let at = (b * l_count + l) * cells * d;
            let xl = x.local_image(l, img, sl);
            let xg = x.global_image(l, img, sg);
            // dP [D, C] += dMᵀ [D, GG] · X [GG, C]; dQ [D, C] += dgᵀ [D, 1] · x_g [1, C].
            gemm(rm_mut(gp, d, c), b > 0, view(dmaps, at, gg, d, d).transpose(), rm(xl, gg, c), Par::Seq);
            gemm(rm_mut(gq, d, c), b > 0, view(dmaps, at + gg * d, 1, d, d).transpose(), rm(xg, 1, c), Par::Seq);
        }
    });
}
