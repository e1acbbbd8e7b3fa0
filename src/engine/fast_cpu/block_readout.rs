//! The fused readout of DESIGN §3.4/§3.8 for training, forward and backward, as blocked matrix
//! products instead of per-voxel vector loops.
//!
//! Voxels are grouped by the cells their taps read ([`super::blocks`], regrouped every step
//! because the selectors move). For a block of voxels and one of its five cells (four bilinear
//! taps, then the global token `g`), every dot product the readout needs is one GEMM:
//!
//! ```text
//! E_k[v, (b, l)] = W_v · M_l[b, c_k]          E_k = W_blk [n, D] × M_c [B·L, D]ᵀ
//! ŷ[b, v]  = (1/D) Σ_l p_vl ((1 − s_v) Σ_k w_vk E_k + s_v E_g) + c_v
//! ```
//!
//! with `M_c` the rows `(b, l)` of the aligned maps at cell `c` (one stride apart). The backward
//! turns `E` into the selector gradients (`p`, `s`, `x`, `y`), then overwrites it with the
//! coefficients `G_k[v, (b, l)] = (go[b, v]/D)·p_vl·a_vk` (`a_vk = (1 − s_v)·w_vk`, `a_vg = s_v`)
//! and finishes with two more products per block and cell:
//!
//! ```text
//! dW_blk  = Σ_k G_k [n, B·L] × M_c [B·L, D]       dM_c += G_kᵀ [B·L, n] × W_blk [n, D]
//! ```
//!
//! The multiply-adds are those of the vector loops; a blocked GEMM does them at several times the
//! speed. Every product has a fixed split (blocks, cells, slots in order), so each output is summed
//! in the same order on every run and thread count. Buffers are allocated by the first step.

// The tap index `k` runs over four parallel arrays at once (cells, weights, slot matrices).
#![allow(clippy::needless_range_loop)]

use super::blocks::{Block, Grouping};
use super::gemm::{gemm, view, view_mut};
use crate::model::readout::{Dims, Taps, OUTSIDE};
use faer::Par;
use rayon::prelude::*;

/// Voxels per block: big enough for efficient products, small enough to spread over threads.
const ROWS: usize = 96;

/// Slots per voxel: four bilinear taps, then the global token.
const SLOTS: usize = 5;

/// The cell of slot `k` of `blk` (`OUTSIDE` for zero padding).
fn cell(blk: &Block, k: usize, gg: usize) -> usize {
    if k < 4 {
        blk.cells[k]
    } else {
        gg
    }
}

/// Per-step state and scratch of the blocked readout.
#[derive(Default)]
pub struct BlockReadout {
    grouping: Grouping,
    /// `W` rows in the sorted order `[V, D]`.
    w: Vec<f32>,
    /// `SLOTS` matrices `[V, B·L]` (sorted rows): the products `E`, then the coefficients `G`.
    e: Vec<f32>,
    /// Predictions `[V, B]` in the sorted order.
    rows_out: Vec<f32>,
    /// Gradients in the sorted order: `[V, L + 3]` selectors and `[V, D]` readout weights.
    dsel: Vec<f32>,
    dw: Vec<f32>,
    /// Map gradients cell-major `[G·G + 1, B·L, D]`, before they go to the maps' layout.
    dcells: Vec<f32>,
}

/// What one pass reads: the aligned maps `[B, L, G·G + 1, D]`, selector outputs `[V, L + 3]`,
/// readout weights `[V, D + 1]` and this step's taps.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// The sizes.
    pub d: Dims,
    /// Aligned maps `[B, L, G·G + 1, D]`.
    pub maps: &'a [f32],
    /// Selector outputs `[V, L + 3]`.
    pub sel: &'a [f32],
    /// Readout weights and biases `[V, D + 1]`.
    pub wc: &'a [f32],
    /// Every voxel's bilinear taps.
    pub taps: &'a [Taps],
}

impl Inputs<'_> {
    fn bl(&self) -> usize {
        self.d.b * self.d.l
    }
    /// `M_c` `[B·L, D]`: row `(b, l)` is the aligned map of layer `l`, image `b`, at cell `c`.
    fn cell_rows(&self, c: usize) -> faer::MatRef<'_, f32> {
        let (dd, cells) = (self.d.d, self.d.cells());
        view(self.maps, c * dd, self.bl(), dd, cells * dd)
    }
}

/// Splits `data` into one mutable piece per block: rows `[first, first + len)` of a row-major
/// matrix with `width` columns (the blocks tile the rows in order).
fn per_block<'a>(data: &'a mut [f32], blocks: &[Block], width: usize) -> Vec<&'a mut [f32]> {
    let mut rest = data;
    blocks
        .iter()
        .map(|b| {
            let (mine, after) = std::mem::take(&mut rest).split_at_mut(b.len * width);
            rest = after;
            mine
        })
        .collect()
}

/// The five slot matrices of `e` (`[V, bl]` each) split per block: `out[block][slot]`.
fn slots_per_block<'a>(e: &'a mut [f32], blocks: &[Block], v: usize, bl: usize) -> Vec<Vec<&'a mut [f32]>> {
    let mut out: Vec<Vec<&mut [f32]>> = blocks.iter().map(|_| Vec::with_capacity(SLOTS)).collect();
    for slot in e[..SLOTS * v * bl].chunks_exact_mut(v * bl) {
        for (o, piece) in out.iter_mut().zip(per_block(slot, blocks, bl)) {
            o.push(piece);
        }
    }
    out
}

fn grow(buf: &mut Vec<f32>, n: usize) {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
}

impl BlockReadout {
    /// Predictions `out` `[B, V]` (row-major). Keeps the products for [`BlockReadout::backward`]
    /// of the same inputs.
    pub fn forward(&mut self, x: Inputs<'_>, out: &mut [f32]) {
        let d = x.d;
        let (v, dd, l, b, gg, sw) = (d.v, d.d, d.l, d.b, d.g * d.g, d.sel_width());
        let bl = x.bl();
        self.grouping.group(&x.taps[..v], ROWS);
        grow(&mut self.w, v * dd);
        grow(&mut self.e, SLOTS * v * bl);
        grow(&mut self.rows_out, v * b);
        let order = &self.grouping.order;
        let blocks = &self.grouping.blocks;
        self.w[..v * dd].par_chunks_mut(dd).zip(order.par_iter()).for_each(|(row, &i)| {
            row.copy_from_slice(&x.wc[i * (dd + 1)..i * (dd + 1) + dd]);
        });
        let w = &self.w;
        let inv_d = 1.0 / dd as f32;
        let e_parts = slots_per_block(&mut self.e, blocks, v, bl);
        let out_parts = per_block(&mut self.rows_out[..v * b], blocks, b);
        blocks.par_iter().zip(e_parts).zip(out_parts).for_each(|((blk, mut slots), rows)| {
            let w_blk = view(w, blk.first * dd, blk.len, dd, dd);
            for (k, e_k) in slots.iter_mut().enumerate() {
                let c = cell(blk, k, gg);
                if c != OUTSIDE {
                    gemm(view_mut(e_k, 0, blk.len, bl, bl), false, w_blk, x.cell_rows(c).transpose(), Par::Seq);
                }
            }
            for (j, y) in rows.chunks_exact_mut(b).enumerate() {
                let vox = order[blk.first + j];
                let (sv, t) = (x.sel[vox * sw + 2 + l], &x.taps[vox]);
                let at = j * bl;
                for (bi, y) in y.iter_mut().enumerate() {
                    let mut acc = 0f32;
                    for li in 0..l {
                        let col = at + bi * l + li;
                        let mut loc = 0f32;
                        for k in 0..4 {
                            if blk.cells[k] != OUTSIDE {
                                loc += t.w[k] * slots[k][col];
                            }
                        }
                        acc += x.sel[vox * sw + 2 + li] * ((1.0 - sv) * loc + sv * slots[4][col]);
                    }
                    *y = acc * inv_d + x.wc[vox * (dd + 1) + dd];
                }
            }
        });
        let rows_out = &self.rows_out;
        out[..b * v].par_chunks_mut(v).enumerate().for_each(|(bi, row)| {
            for (r, &vox) in order.iter().enumerate() {
                row[vox] = rows_out[r * b + bi];
            }
        });
    }

    /// Gradients for the upstream gradient `go` `[B, V]` of the last [`BlockReadout::forward`]
    /// (same inputs): `dsel` `[V, L + 3]` and `dwc` `[V, D + 1]` (overwritten), `dmaps`
    /// `[B, L, G·G + 1, D]` (overwritten).
    pub fn backward(&mut self, x: Inputs<'_>, go: &[f32], dsel: &mut [f32], dwc: &mut [f32], dmaps: &mut [f32]) {
        let d = x.d;
        let (v, dd, l, b, gg, sw, cells) = (d.v, d.d, d.l, d.b, d.g * d.g, d.sel_width(), d.cells());
        let bl = x.bl();
        grow(&mut self.dsel, v * sw);
        grow(&mut self.dw, v * dd);
        grow(&mut self.dcells, cells * bl * dd);
        let order = &self.grouping.order;
        let blocks = &self.grouping.blocks;
        let inv_d = 1.0 / dd as f32;
        let w = &self.w;
        let e_parts = slots_per_block(&mut self.e, blocks, v, bl);
        let dsel_parts = per_block(&mut self.dsel[..v * sw], blocks, sw);
        let dw_parts = per_block(&mut self.dw[..v * dd], blocks, dd);
        // Per block: selector gradients from E, E → G, then dW = Σ_k G_k·M_c.
        blocks.par_iter().zip(e_parts).zip(dsel_parts.into_par_iter().zip(dw_parts)).for_each(
            |((blk, mut slots), (ds_blk, dw_blk))| {
                for (j, ds) in ds_blk.chunks_exact_mut(sw).enumerate() {
                    let vox = order[blk.first + j];
                    let (sv, t) = (x.sel[vox * sw + 2 + l], &x.taps[vox]);
                    ds.fill(0.0);
                    let at = j * bl;
                    for bi in 0..b {
                        let gob = go[bi * v + vox] * inv_d;
                        for li in 0..l {
                            let col = at + bi * l + li;
                            let p = x.sel[vox * sw + 2 + li];
                            let (mut loc, mut lx, mut ly) = (0f32, 0f32, 0f32);
                            for k in 0..4 {
                                if blk.cells[k] != OUTSIDE {
                                    let e = slots[k][col];
                                    loc += t.w[k] * e;
                                    lx += t.dw_dx[k] * e;
                                    ly += t.dw_dy[k] * e;
                                }
                            }
                            let eg = slots[4][col];
                            let coef = gob * p * (1.0 - sv);
                            ds[2 + li] += gob * ((1.0 - sv) * loc + sv * eg);
                            ds[2 + l] += gob * p * (eg - loc);
                            ds[0] += coef * lx;
                            ds[1] += coef * ly;
                            for k in 0..4 {
                                slots[k][col] = coef * t.w[k];
                            }
                            slots[4][col] = gob * p * sv;
                        }
                    }
                }
                // The global slot first (always present), so the sum starts by overwriting.
                for (n, k) in [4, 0, 1, 2, 3].into_iter().enumerate() {
                    let c = cell(blk, k, gg);
                    if c != OUTSIDE {
                        gemm(view_mut(dw_blk, 0, blk.len, dd, dd), n > 0, view(&slots[k][..], 0, blk.len, bl, bl), x.cell_rows(c), Par::Seq);
                    }
                }
            },
        );
        // Map gradients per cell (disjoint outputs), each summed over blocks and slots in order.
        let e = &self.e;
        self.dcells[..cells * bl * dd].par_chunks_mut(bl * dd).enumerate().for_each(|(c, dm)| {
            let mut first = true;
            for blk in blocks {
                for k in 0..SLOTS {
                    if cell(blk, k, gg) != c {
                        continue;
                    }
                    let g_k = view(e, k * v * bl + blk.first * bl, blk.len, bl, bl);
                    let w_blk = view(w, blk.first * dd, blk.len, dd, dd);
                    gemm(view_mut(dm, 0, bl, dd, dd), !first, g_k.transpose(), w_blk, Par::Seq);
                    first = false;
                }
            }
            if first {
                dm.fill(0.0);
            }
        });
        // To the callers' layouts.
        let dcells = &self.dcells;
        dmaps[..bl * cells * dd].par_chunks_mut(cells * dd).enumerate().for_each(|(row, dst)| {
            for (c, out) in dst.chunks_exact_mut(dd).enumerate() {
                out.copy_from_slice(&dcells[(c * bl + row) * dd..(c * bl + row + 1) * dd]);
            }
        });
        let (dsel_sorted, dw_sorted, rank) = (&self.dsel, &self.dw, &self.grouping.rank);
        dsel[..v * sw].par_chunks_mut(sw).zip(dwc[..v * (dd + 1)].par_chunks_mut(dd + 1)).enumerate().for_each(
            |(vox, (ds, dw))| {
                let r = rank[vox];
                ds.copy_from_slice(&dsel_sorted[r * sw..(r + 1) * sw]);
                dw[..dd].copy_from_slice(&dw_sorted[r * dd..(r + 1) * dd]);
                dw[dd] = (0..b).map(|bi| go[bi * v + vox]).sum();
            },
        );
    }
}
