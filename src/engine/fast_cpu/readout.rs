//! The fused readout of DESIGN §3.4/§3.8 for the fast trainer: forward, and a backward in two
//! passes that each write only memory they own (one over voxel blocks: selector, `W` and bias
//! gradients; one over images: map gradients), so it is parallel, lock-free and deterministic.
//! The bilinear taps are computed once per step ([`TapTable`]) and read by every pass; all
//! buffers are allocated once, outside the step.
//!
//! Layouts (f32, contiguous): `maps` `[B, L, G·G + 1, D]` (per image and layer the aligned
//! local map, cell `y·G + x`, then the aligned global token); `sel` `[V, L + 3]`
//! (`x, y, p_1..p_L, s`); `wc` `[V, D + 1]` (`W[v]`, `c_v`); predictions `[B, V]`.

use crate::model::readout::{taps, Dims, Taps, OUTSIDE};
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Voxels per work item of the voxel passes.
pub const VOXEL_BLOCK: usize = 64;

/// Bilinear taps of every voxel, recomputed when the selectors change.
pub struct TapTable {
    pub taps: Vec<Taps>,
}

impl TapTable {
    pub fn new(v: usize) -> Self {
        Self { taps: vec![taps(0.0, 0.0, 1); v] }
    }

    pub fn update(&mut self, sel: &[f32], sw: usize, g: usize) {
        self.taps.par_chunks_mut(VOXEL_BLOCK).enumerate().for_each(|(ci, t)| {
            for (j, tap) in t.iter_mut().enumerate() {
                let v = ci * VOXEL_BLOCK + j;
                *tap = taps(sel[v * sw], sel[v * sw + 1], g);
            }
        });
    }
}

/// `y += alpha·x`.
#[inline(always)]
fn axpy<S: Simd>(simd: S, y: &mut [f32], alpha: f32, x: &[f32]) {
    let (yh, yt) = S::as_mut_simd_f32s(y);
    let (xh, xt) = S::as_simd_f32s(x);
    let a = simd.splat_f32s(alpha);
    for (yi, xi) in yh.iter_mut().zip(xh) {
        *yi = simd.mul_add_e_f32s(a, *xi, *yi);
    }
    for (yi, xi) in yt.iter_mut().zip(xt) {
        *yi += alpha * xi;
    }
}

/// `y += alpha·x` and returns `w·x`, reading `x` once.
#[inline(always)]
fn dot_axpy<S: Simd>(simd: S, y: &mut [f32], alpha: f32, x: &[f32], w: &[f32]) -> f32 {
    let (yh, yt) = S::as_mut_simd_f32s(y);
    let (xh, xt) = S::as_simd_f32s(x);
    let (wh, wt) = S::as_simd_f32s(w);
    let a = simd.splat_f32s(alpha);
    let mut acc0 = simd.splat_f32s(0.0);
    let mut acc1 = simd.splat_f32s(0.0);
    let mut i = 0;
    while i + 1 < xh.len() {
        acc0 = simd.mul_add_e_f32s(wh[i], xh[i], acc0);
        acc1 = simd.mul_add_e_f32s(wh[i + 1], xh[i + 1], acc1);
        yh[i] = simd.mul_add_e_f32s(a, xh[i], yh[i]);
        yh[i + 1] = simd.mul_add_e_f32s(a, xh[i + 1], yh[i + 1]);
        i += 2;
    }
    if i < xh.len() {
        acc0 = simd.mul_add_e_f32s(wh[i], xh[i], acc0);
        yh[i] = simd.mul_add_e_f32s(a, xh[i], yh[i]);
    }
    let mut s = simd.reduce_sum_f32s(simd.add_f32s(acc0, acc1));
    for ((yi, xi), wi) in yt.iter_mut().zip(xt).zip(wt) {
        s += wi * xi;
        *yi += alpha * xi;
    }
    s
}

/// Everything the passes read.
#[derive(Clone, Copy)]
pub struct Operands<'a> {
    pub d: Dims,
    pub maps: &'a [f32],
    pub sel: &'a [f32],
    pub wc: &'a [f32],
    pub taps: &'a [Taps],
}

impl Operands<'_> {
    #[inline(always)]
    fn w(&self, v: usize) -> &[f32] {
        let dd = self.d.d;
        &self.wc[v * (dd + 1)..v * (dd + 1) + dd]
    }
    #[inline(always)]
    fn image(&self, b: usize) -> &[f32] {
        let n = self.d.l * self.d.cells() * self.d.d;
        &self.maps[b * n..(b + 1) * n]
    }
    #[inline(always)]
    fn p(&self, v: usize, l: usize) -> f32 {
        self.sel[v * self.d.sel_width() + 2 + l]
    }
    #[inline(always)]
    fn s(&self, v: usize) -> f32 {
        self.sel[v * self.d.sel_width() + 2 + self.d.l]
    }
}

/// Per-work-item scratch of the forward, allocated once: one voxel's taps as offsets and weights.
pub struct Scratch {
    offs: Vec<usize>,
    coefs: Vec<f32>,
}

/// Scratch for every work item of a forward over `v` voxels and `l` layers.
pub fn scratch_for(v: usize, l: usize) -> Vec<Scratch> {
    (0..v.div_ceil(VOXEL_BLOCK)).map(|_| Scratch { offs: vec![0; 5 * l], coefs: vec![0.0; 5 * l] }).collect()
}

struct Forward<'a, 'b> {
    o: Operands<'a>,
    b: usize,
    first: usize,
    out: &'b mut [f32],
    sc: &'b mut Scratch,
}

impl WithSimd for Forward<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let o = self.o;
        let d = o.d;
        let (dd, gg, cells) = (d.d, d.g * d.g, d.cells());
        let inv_d = 1.0 / dd as f32;
        let image = o.image(self.b);
        let lanes = std::mem::size_of::<S::f32s>() / 4;
        let nvec = dd / lanes;
        let Scratch { offs, coefs, .. } = &mut *self.sc;
        for (j, y) in self.out.iter_mut().enumerate() {
            let v = self.first + j;
            let (s, t) = (o.s(v), &o.taps[v]);
            // The taps of this voxel as (offset in the image's maps, weight), once for all of D.
            let mut nt = 0;
            for l in 0..d.l {
                let p = o.p(v, l);
                let at = l * cells * dd;
                for k in 0..4 {
                    if t.idx[k] != OUTSIDE {
                        offs[nt] = at + t.idx[k] * dd;
                        coefs[nt] = p * (1.0 - s) * t.w[k];
                        nt += 1;
                    }
                }
                offs[nt] = at + gg * dd;
                coefs[nt] = p * s;
                nt += 1;
            }
            let (offs, coefs) = (&offs[..nt], &coefs[..nt]);
            let w_v = o.w(v);
            // The mixed feature f_v[b] four SIMD vectors at a time, held in registers across the
            // taps, then dotted with W[v].
            let mut total = simd.splat_f32s(0.0);
            let mut jv = 0;
            while jv + 4 <= nvec {
                let mut a = [simd.splat_f32s(0.0); 4];
                for (&off, &c) in offs.iter().zip(coefs) {
                    let base = off + jv * lanes;
                    let m = S::as_simd_f32s(&image[base..base + 4 * lanes]).0;
                    let c = simd.splat_f32s(c);
                    for i in 0..4 {
                        a[i] = simd.mul_add_e_f32s(c, m[i], a[i]);
                    }
                }
                let w = S::as_simd_f32s(&w_v[jv * lanes..(jv + 4) * lanes]).0;
                for i in 0..4 {
                    total = simd.mul_add_e_f32s(a[i], w[i], total);
                }
                jv += 4;
            }
            while jv < nvec {
                let mut a = simd.splat_f32s(0.0);
                for (&off, &c) in offs.iter().zip(coefs) {
                    let base = off + jv * lanes;
                    let m = S::as_simd_f32s(&image[base..base + lanes]).0;
                    a = simd.mul_add_e_f32s(simd.splat_f32s(c), m[0], a);
                }
                let w = S::as_simd_f32s(&w_v[jv * lanes..(jv + 1) * lanes]).0;
                total = simd.mul_add_e_f32s(a, w[0], total);
                jv += 1;
            }
            let mut acc = simd.reduce_sum_f32s(total);
            for e in nvec * lanes..dd {
                let f: f32 = offs.iter().zip(coefs).map(|(&off, &c)| c * image[off + e]).sum();
                acc += f * w_v[e];
            }
            *y = acc * inv_d + o.wc[v * (dd + 1) + dd];
        }
    }
}

/// Predictions `out` `[B, V]`.
pub fn forward(o: Operands<'_>, out: &mut [f32], scratch: &mut [Scratch]) {
    let arch = Arch::new();
    let v = o.d.v;
    let blocks = v.div_ceil(VOXEL_BLOCK);
    // Work items: (image, voxel block), each with its own scratch (scratch is per voxel block,
    // so one image's blocks run in parallel; images run one after the other).
    for (b, row) in out.chunks_mut(v).enumerate().take(o.d.b) {
        row.par_chunks_mut(VOXEL_BLOCK).zip(scratch[..blocks].par_iter_mut()).enumerate().for_each(
            |(ci, (chunk, sc))| {
                arch.dispatch(Forward { o, b, first: ci * VOXEL_BLOCK, out: chunk, sc });
            },
        );
    }
}

struct VoxelGrads<'a, 'b> {
    o: Operands<'a>,
    go: &'a [f32],
    first: usize,
    dsel: &'b mut [f32],
    dwc: &'b mut [f32],
}

impl WithSimd for VoxelGrads<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let o = self.o;
        let d = o.d;
        let (dd, gg, cells, sw) = (d.d, d.g * d.g, d.cells(), d.sel_width());
        let inv_d = 1.0 / dd as f32;
        let n = self.dsel.len() / sw;
        self.dsel.fill(0.0);
        self.dwc.fill(0.0);
        // Images outer, voxels inner: one image's maps stay in cache across the block.
        for b in 0..d.b {
            let image = o.image(b);
            for j in 0..n {
                let v = self.first + j;
                let gout = self.go[b * d.v + v];
                if gout == 0.0 {
                    continue;
                }
                let gob = gout * inv_d;
                let (s, t) = (o.s(v), &o.taps[v]);
                let w_v = o.w(v);
                let ds = &mut self.dsel[j * sw..(j + 1) * sw];
                let dw = &mut self.dwc[j * (dd + 1)..(j + 1) * (dd + 1)];
                dw[dd] += gout;
                let (mut dx, mut dy, mut dscale) = (0f32, 0f32, 0f32);
                for l in 0..d.l {
                    let p = o.p(v, l);
                    let block = &image[l * cells * dd..(l + 1) * cells * dd];
                    let (mut loc, mut lx, mut ly) = (0f32, 0f32, 0f32);
                    let coef = gob * p * (1.0 - s);
                    for k in 0..4 {
                        if t.idx[k] != OUTSIDE {
                            let c = t.idx[k];
                            let e = dot_axpy(simd, &mut dw[..dd], coef * t.w[k], &block[c * dd..(c + 1) * dd], w_v);
                            loc += t.w[k] * e;
                            lx += t.dw_dx[k] * e;
                            ly += t.dw_dy[k] * e;
                        }
                    }
                    let eg = dot_axpy(simd, &mut dw[..dd], gob * p * s, &block[gg * dd..(gg + 1) * dd], w_v);
                    ds[2 + l] += gob * ((1.0 - s) * loc + s * eg);
                    dscale += gob * p * (eg - loc);
                    dx += coef * lx;
                    dy += coef * ly;
                }
                ds[0] += dx;
                ds[1] += dy;
                ds[2 + d.l] += dscale;
            }
        }
    }
}

struct ImageGrads<'a, 'b> {
    o: Operands<'a>,
    go: &'a [f32],
    b: usize,
    dmaps: &'b mut [f32],
}

impl WithSimd for ImageGrads<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let o = self.o;
        let d = o.d;
        let (dd, gg, cells) = (d.d, d.g * d.g, d.cells());
        let inv_d = 1.0 / dd as f32;
        self.dmaps.fill(0.0);
        for v in 0..d.v {
            let gout = self.go[self.b * d.v + v];
            if gout == 0.0 {
                continue;
            }
            let gob = gout * inv_d;
            let (s, t, w_v) = (o.s(v), &o.taps[v], o.w(v));
            for l in 0..d.l {
                let coef = gob * o.p(v, l);
                let block = &mut self.dmaps[l * cells * dd..(l + 1) * cells * dd];
                for k in 0..4 {
                    if t.idx[k] != OUTSIDE {
                        let c = t.idx[k];
                        axpy(simd, &mut block[c * dd..(c + 1) * dd], coef * (1.0 - s) * t.w[k], w_v);
                    }
                }
                axpy(simd, &mut block[gg * dd..(gg + 1) * dd], coef * s, w_v);
            }
        }
    }
}

/// Gradients of the readout for the upstream gradient `go` `[B, V]`: `dsel` `[V, L + 3]` and
/// `dwc` `[V, D + 1]` (overwritten), `dmaps` `[B, L, G·G + 1, D]` (overwritten).
pub fn backward(o: Operands<'_>, go: &[f32], dsel: &mut [f32], dwc: &mut [f32], dmaps: &mut [f32]) {
    let arch = Arch::new();
    let d = o.d;
    let (sw, dd) = (d.sel_width(), d.d);
    dsel.par_chunks_mut(VOXEL_BLOCK * sw).zip(dwc.par_chunks_mut(VOXEL_BLOCK * (dd + 1))).enumerate().for_each(
        |(ci, (ds, dw))| {
            arch.dispatch(VoxelGrads { o, go, first: ci * VOXEL_BLOCK, dsel: ds, dwc: dw });
        },
    );
    let per_image = d.l * d.cells() * dd;
    dmaps[..d.b * per_image].par_chunks_mut(per_image).enumerate().for_each(|(b, dm)| {
        arch.dispatch(ImageGrads { o, go, b, dmaps: dm });
    });
}
