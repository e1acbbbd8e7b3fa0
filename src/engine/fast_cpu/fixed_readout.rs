//! The readout of DESIGN §3.4 for selectors that do not change (validation scores, `score`,
//! `predict`, the monitor's retention), as dense matrix products.
//!
//! All layers share the grid, so a voxel's four bilinear taps fall on the same cells in every
//! layer, and the prediction regroups as
//!
//! ```text
//! ŷ[b, v] = Σ_k a_vk · (Ω_v · m[b, c_vk]) + a_vg · (Ω_v · m[b, g]) + c_v
//! Ω_v = [p_v1·W_v, …, p_vL·W_v]   m[b, c] = [M_1[b, c], …, M_L[b, c]]   (both L·D long)
//! a_vk = (1 − s_v)·w_vk / D       a_vg = s_v / D
//! ```
//!
//! with `m[b, g]` the aligned global tokens. Voxels whose taps are the same cells (one of at
//! most (G+1)² 2×2 blocks, counting the zero padding) share the right-hand sides, so for each
//! such block and each of its cells the products of all its voxels with all images are one GEMM
//! `[V_k, L·D] × [L·D, B]`. Training uses [`super::block_readout`] instead: its selectors change
//! every step, so an `Ω` built per step would cost more than it saves.
//!
//! The maps are read in the cell-major layout `[B, G·G + 1, L, D]` that
//! [`super::align::forward_cell_major`] writes.

use super::blocks::{Block, Grouping, TapTable};
use super::gemm::{gemm, view, view_mut};
use crate::model::readout::OUTSIDE;
use crate::error::Result;
use faer::Par;
use rayon::prelude::*;

/// Voxels per work item: large blocks are split so that the work spreads over the threads
/// (at initialisation every voxel sits at the image centre, in one block).
const ROWS: usize = 128;

/// A fixed encoder's readout, ready to multiply.
pub struct FixedReadout {
    v: usize,
    l: usize,
    d: usize,
    gg: usize,
    /// Sorted row → voxel.
    order: Vec<usize>,
    blocks: Vec<Block>,
    /// Per sorted row: `p_v1..p_vL`, then `W_v`. `Ω` is `V·L·D` floats (0.23 GiB at a whole
    /// subject's 39,548 vertices, L 12, D 128), so each work item builds its own rows of it
    /// from these `L + D` numbers a voxel as it multiplies: `V·L·D` multiplies against the
    /// product's `5·V·L·D·B`.
    pw: Vec<f32>,
    /// Per sorted row: the four tap coefficients `a_vk` (0 outside the map), then `a_vg`.
    coef: Vec<[f32; 5]>,
    /// Per sorted row: `c_v`.
    bias: Vec<f32>,
}

impl FixedReadout {
    /// `sel` `[V, L + 3]` (`x, y, p_1..p_L, s`), `wc` `[V, D + 1]` (`W[v]`, `c_v`), grid `g`.
    pub fn new(sel: &[f32], wc: &[f32], v: usize, l: usize, d: usize, g: usize) -> Result<Self> {
        let sw = l + 3;
        let mut table = TapTable::new(v);
        table.update(sel, sw, g);
        let all = table.taps;
        let mut grouping = Grouping::default();
        grouping.group(&all, ROWS);
        let Grouping { order, blocks, .. } = grouping;
        let inv_d = 1.0 / d as f32;
        let count = crate::data::limits::elements("fixed readout [V, L + D]", &[v, l + d])?;
        let mut pw: Vec<f32> = crate::data::limits::try_zeroed("fixed readout [V, L + D]", count)?;
        pw.par_chunks_mut(l + d).zip(order.par_iter()).for_each(|(row, &i)| {
            row[..l].copy_from_slice(&sel[i * sw + 2..i * sw + 2 + l]);
            row[l..].copy_from_slice(&wc[i * (d + 1)..i * (d + 1) + d]);
        });
        let coef = order
            .iter()
            .map(|&i| {
                let s = sel[i * sw + 2 + l];
                let t = &all[i];
                let mut a = [0f32; 5];
                for ((ak, &idx), &w) in a.iter_mut().zip(&t.idx).zip(&t.w) {
                    if idx != OUTSIDE {
                        *ak = (1.0 - s) * w * inv_d;
                    }
                }
                a[4] = s * inv_d;
                a
            })
            .collect();
        let bias = order.iter().map(|&i| wc[i * (d + 1) + d]).collect();
        Ok(Self { v, l, d, gg: g * g, order, blocks, pw, coef, bias })
    }

    /// Predictions `out` `[B, V]` (row-major) from the aligned maps of `B` images,
    /// `maps` `[B, G·G + 1, L, D]`.
    pub fn forward(&self, maps: &[f32], b: usize, out: &mut [f32]) {
        let (l, d, v) = (self.l, self.d, self.v);
        let ld = l * d;
        let stride = (self.gg + 1) * ld;
        // Results per sorted row `[V, B]`: each block owns a contiguous range.
        let mut sorted = vec![0f32; v * b];
        let mut parts = Vec::with_capacity(self.blocks.len());
        let mut rest = &mut sorted[..];
        for blk in &self.blocks {
            let (mine, after) = rest.split_at_mut(blk.len * b);
            parts.push((blk, mine));
            rest = after;
        }
        parts.into_par_iter().for_each(|(blk, dst)| {
            let mut omega = vec![0f32; blk.len * ld];
            for (row, pw) in omega.chunks_exact_mut(ld).zip(self.pw[blk.first * (l + d)..].chunks_exact(l + d)) {
                let (p, w) = pw.split_at(l);
                for (dst, &p) in row.chunks_exact_mut(d).zip(p) {
                    for (o, &x) in dst.iter_mut().zip(w) {
                        *o = p * x;
                    }
                }
            }
            let omega = view(&omega, 0, blk.len, ld, ld);
            let coef = &self.coef[blk.first..blk.first + blk.len];
            let mut prod = vec![0f32; blk.len * b];
            for (k, &cell) in blk.cells.iter().chain(std::iter::once(&self.gg)).enumerate() {
                if cell == OUTSIDE {
                    continue;
                }
                // m[·, cell] for every image: B rows of L·D, one image apart.
                let rhs = view(maps, cell * ld, b, ld, stride).transpose();
                gemm(view_mut(&mut prod, 0, blk.len, b, b), false, omega, rhs, Par::Seq);
                for ((row, got), a) in dst.chunks_exact_mut(b).zip(prod.chunks_exact(b)).zip(coef) {
                    let a = a[k];
                    for (y, &x) in row.iter_mut().zip(got) {
                        *y += a * x;
                    }
                }
            }
            for (row, &c) in dst.chunks_exact_mut(b).zip(&self.bias[blk.first..blk.first + blk.len]) {
                for y in row {
                    *y += c;
                }
            }
        });
        out[..b * v].par_chunks_mut(v).enumerate().for_each(|(image, row)| {
            for (r, &voxel) in self.order.iter().enumerate() {
                row[voxel] = sorted[r * b + image];
            }
        });
    }

    /// Bytes held: `L + D + 6` floats and an index a voxel.
    pub fn bytes(&self) -> usize {
        4 * (self.pw.len() + 5 * self.coef.len() + self.bias.len()) + 8 * self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fast_cpu::block_readout::{BlockReadout, Inputs};
    use crate::model::readout::Dims;
    use crate::rng::Rng;

    /// Against the trainer's blocked readout (a separate implementation of §3.4, itself tested
    /// against candle autograd) at awkward sizes: D odd, a group of 150 voxels at one position
    /// (split over work items), voxels on the border and outside the map, three image counts.
    #[test]
    fn matches_the_training_readout() {
        let (v, l, d, g) = (300, 3, 7, 3);
        let sw = l + 3;
        let mut rng = Rng::new(5);
        let mut sel = vec![0f32; v * sw];
        for (i, row) in sel.chunks_exact_mut(sw).enumerate() {
            let (x, y) = if i < 150 { (0.1, 0.1) } else { ((rng.uniform() * 2.6 - 1.3) as f32, (rng.uniform() * 2.6 - 1.3) as f32) };
            row[0] = x;
            row[1] = y;
            let e: Vec<f32> = (0..l).map(|_| (rng.normal() as f32).exp()).collect();
            let z: f32 = e.iter().sum();
            for k in 0..l {
                row[2 + k] = e[k] / z;
            }
            row[2 + l] = rng.uniform() as f32;
        }
        let wc: Vec<f32> = (0..v * (d + 1)).map(|_| rng.normal() as f32).collect();
        let mut table = TapTable::new(v);
        table.update(&sel, sw, g);
        let cells = g * g + 1;
        for b in [1usize, 4, 9] {
            // Layer-major maps for the training readout, the same numbers cell-major for this one.
            let layer_major: Vec<f32> = (0..b * l * cells * d).map(|_| rng.normal() as f32).collect();
            let mut cell_major = vec![0f32; layer_major.len()];
            for img in 0..b {
                for layer in 0..l {
                    for c in 0..cells {
                        let src = ((img * l + layer) * cells + c) * d;
                        let dst = ((img * cells + c) * l + layer) * d;
                        cell_major[dst..dst + d].copy_from_slice(&layer_major[src..src + d]);
                    }
                }
            }
            let ops = Inputs { d: Dims { b, l, g, d, v }, maps: &layer_major, sel: &sel, wc: &wc, taps: &table.taps };
            let mut want = vec![0f32; b * v];
            BlockReadout::default().forward(ops, &mut want);
            let mut got = vec![f32::NAN; b * v];
            FixedReadout::new(&sel, &wc, v, l, d, g).unwrap().forward(&cell_major, b, &mut got);
            let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            for (i, (a, e)) in got.iter().zip(&want).enumerate() {
                assert!((a - e).abs() <= 1e-5 * scale, "b {b} [{i}]: {a} vs {e}");
            }
        }
    }
}
