//! The fused voxel readout of DESIGN §3.4 and §3.8 as a candle custom op.
//!
//! The obvious implementation samples `[B, V, D]` features for every layer and is memory-bound.
//! The readout is linear in the maps, the global tokens and `W`, so one pass per (image, voxel)
//! samples the four bilinear taps of every layer, mixes them with the layer and scale weights and
//! dots with `W[v]`, never storing `[B, V, L, D]`. The backward is split in two passes so each
//! writes only memory it owns: one over voxels (selector, `W` and bias gradients) and one over
//! images (map gradients), which keeps it parallel, lock-free and deterministic.
//!
//! Packed operands (all f32, contiguous):
//! - `maps` `[B, L, G·G + 1, D]`: per layer the aligned local map, cell `y·G + x`, then the
//!   aligned global token in the last cell.
//! - `sel` `[V, L + 3]`: `x, y, p_1..p_L, s` (selector head outputs).
//! - `wc` `[V, D + 1]`: the readout weight `W[v]` then the bias `c_v`.
//!
//! Output `[B, V]`.

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Shape, Tensor};
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Voxels per parallel work item; large enough to amortise scheduling, small enough to balance.
const VOXEL_CHUNK: usize = 64;

/// The sizes of one readout call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Images in the batch B.
    pub b: usize,
    /// Layers L.
    pub l: usize,
    /// Grid side G.
    pub g: usize,
    /// Common channel width D.
    pub d: usize,
    /// Voxels V.
    pub v: usize,
}

impl Dims {
    /// Cells per layer block: the G×G map plus the global token.
    pub fn cells(&self) -> usize {
        self.g * self.g + 1
    }
    /// Columns of the packed selector operand: `(x, y)`, the L layer probabilities and the scale.
    pub fn sel_width(&self) -> usize {
        self.l + 3
    }
}

/// The four bilinear taps of one location, with their weights and the weights' derivatives.
#[derive(Debug, Clone, Copy)]
pub struct Taps {
    /// Cell index `y·G + x`, or `usize::MAX` for a tap outside the map (zero padding).
    pub idx: [usize; 4],
    /// The taps' bilinear weights.
    pub w: [f32; 4],
    /// The weights' derivatives in x.
    pub dw_dx: [f32; 4],
    /// The weights' derivatives in y.
    pub dw_dy: [f32; 4],
}

/// The cell index of a tap outside the map.
pub const OUTSIDE: usize = usize::MAX;

/// Bilinear taps at selector coordinates `(x, y)` in [-1, 1]² on a G×G map, half-pixel
/// convention `ix = ((x + 1)·G − 1)/2`, zero padding outside (DESIGN §3.4).
pub fn taps(x: f32, y: f32, g: usize) -> Taps {
    let gf = g as f32;
    let ix = ((x + 1.0) * gf - 1.0) * 0.5;
    let iy = ((y + 1.0) * gf - 1.0) * 0.5;
    let x0 = ix.floor();
    let y0 = iy.floor();
    let fx = ix - x0;
    let fy = iy - y0;
    let half = gf * 0.5;
    let mut idx = [OUTSIDE; 4];
    let offsets = [(0i64, 0i64), (1, 0), (0, 1), (1, 1)];
    for (t, (dx, dy)) in offsets.iter().enumerate() {
        let xi = x0 as i64 + dx;
        let yi = y0 as i64 + dy;
        if xi >= 0 && yi >= 0 && (xi as usize) < g && (yi as usize) < g {
            idx[t] = yi as usize * g + xi as usize;
        }
    }
    Taps {
        idx,
        w: [(1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy],
        dw_dx: [-(1.0 - fy) * half, (1.0 - fy) * half, -fy * half, fy * half],
        dw_dy: [-(1.0 - fx) * half, -fx * half, (1.0 - fx) * half, fx * half],
    }
}

/// `a·b` in SIMD registers, two accumulators to hide the FMA latency.
#[inline(always)]
fn dot<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let (ah, at) = S::as_simd_f32s(a);
    let (bh, bt) = S::as_simd_f32s(b);
    let mut acc0 = simd.splat_f32s(0.0);
    let mut acc1 = simd.splat_f32s(0.0);
    let mut pairs_a = ah.chunks_exact(2);
    let mut pairs_b = bh.chunks_exact(2);
    for (x, y) in (&mut pairs_a).zip(&mut pairs_b) {
        acc0 = simd.mul_add_e_f32s(x[0], y[0], acc0);
        acc1 = simd.mul_add_e_f32s(x[1], y[1], acc1);
    }
    for (x, y) in pairs_a.remainder().iter().zip(pairs_b.remainder()) {
        acc0 = simd.mul_add_e_f32s(*x, *y, acc0);
    }
    let mut s = simd.reduce_sum_f32s(simd.add_f32s(acc0, acc1));
    for (x, y) in at.iter().zip(bt) {
        s += x * y;
    }
    s
}

/// `y += alpha·x` in SIMD registers.
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

fn all_taps(d: &Dims, sel: &[f32]) -> Vec<Taps> {
    let sw = d.sel_width();
    (0..d.v).map(|v| taps(sel[v * sw], sel[v * sw + 1], d.g)).collect()
}

/// Everything one pass reads, shared by the work items of that pass.
struct Operands<'a> {
    d: Dims,
    maps: &'a [f32],
    sel: &'a [f32],
    wc: &'a [f32],
    tap: Vec<Taps>,
}

impl Operands<'_> {
    #[inline(always)]
    fn w(&self, v: usize) -> &[f32] {
        &self.wc[v * (self.d.d + 1)..v * (self.d.d + 1) + self.d.d]
    }
    #[inline(always)]
    fn block(&self, b: usize, l: usize) -> &[f32] {
        let n = self.d.cells() * self.d.d;
        &self.maps[(b * self.d.l + l) * n..(b * self.d.l + l + 1) * n]
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

/// One work item of one pass; dispatched through `pulp` so the inner loops are compiled for
/// the best SIMD instruction set the CPU has (AVX2/FMA, AVX-512, NEON), chosen at run time.
enum Job<'a> {
    /// Outputs `out[first..first + len]` of the flattened `[B, V]` prediction.
    Forward { first: usize, out: &'a mut [f32] },
    /// Selector and readout-parameter gradients of voxel `v`.
    VoxelGrads { v: usize, go: &'a [f32], dsel: &'a mut [f32], dwc: &'a mut [f32] },
    /// Map gradients of image `b`.
    ImageGrads { b: usize, go: &'a [f32], dmaps: &'a mut [f32] },
}

struct Work<'a, 'b> {
    ops: &'b Operands<'a>,
    job: Job<'b>,
}

impl WithSimd for Work<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let o = self.ops;
        let d = o.d;
        let (dd, gg) = (d.d, d.g * d.g);
        let inv_d = 1.0 / dd as f32;
        match self.job {
            Job::Forward { first, out } => {
                for (j, y) in out.iter_mut().enumerate() {
                    let (b, v) = ((first + j) / d.v, (first + j) % d.v);
                    let (w_v, s, t) = (o.w(v), o.s(v), &o.tap[v]);
                    let mut acc = 0f32;
                    for l in 0..d.l {
                        let block = o.block(b, l);
                        let mut loc = 0f32;
                        for k in 0..4 {
                            if t.idx[k] != OUTSIDE {
                                loc += t.w[k] * dot(simd, w_v, &block[t.idx[k] * dd..(t.idx[k] + 1) * dd]);
                            }
                        }
                        let glob = dot(simd, w_v, &block[gg * dd..(gg + 1) * dd]);
                        acc += o.p(v, l) * ((1.0 - s) * loc + s * glob);
                    }
                    *y = acc * inv_d + o.wc[v * (dd + 1) + dd];
                }
            }
            Job::VoxelGrads { v, go, dsel, dwc } => {
                let (w_v, s, t) = (o.w(v), o.s(v), &o.tap[v]);
                let (mut dx, mut dy, mut dscale, mut dc) = (0f32, 0f32, 0f32, 0f32);
                for b in 0..d.b {
                    let gout = go[b * d.v + v];
                    if gout == 0.0 {
                        continue;
                    }
                    dc += gout;
                    let gob = gout * inv_d;
                    for l in 0..d.l {
                        let p = o.p(v, l);
                        let block = o.block(b, l);
                        let (mut loc, mut lx, mut ly) = (0f32, 0f32, 0f32);
                        for k in 0..4 {
                            if t.idx[k] != OUTSIDE {
                                let cell = &block[t.idx[k] * dd..(t.idx[k] + 1) * dd];
                                let e = dot(simd, w_v, cell);
                                loc += t.w[k] * e;
                                lx += t.dw_dx[k] * e;
                                ly += t.dw_dy[k] * e;
                                axpy(simd, &mut dwc[..dd], gob * p * (1.0 - s) * t.w[k], cell);
                            }
                        }
                        let gcell = &block[gg * dd..(gg + 1) * dd];
                        let eg = dot(simd, w_v, gcell);
                        axpy(simd, &mut dwc[..dd], gob * p * s, gcell);
                        dsel[2 + l] += gob * ((1.0 - s) * loc + s * eg);
                        dscale += gob * p * (eg - loc);
                        dx += gob * p * (1.0 - s) * lx;
                        dy += gob * p * (1.0 - s) * ly;
                    }
                }
                dsel[0] = dx;
                dsel[1] = dy;
                dsel[2 + d.l] = dscale;
                dwc[dd] = dc;
            }
            Job::ImageGrads { b, go, dmaps } => {
                let n = d.cells() * dd;
                for v in 0..d.v {
                    let gout = go[b * d.v + v];
                    if gout == 0.0 {
                        continue;
                    }
                    let gob = gout * inv_d;
                    let (w_v, s, t) = (o.w(v), o.s(v), &o.tap[v]);
                    for l in 0..d.l {
                        let coef = gob * o.p(v, l);
                        let block = &mut dmaps[l * n..(l + 1) * n];
                        for k in 0..4 {
                            if t.idx[k] != OUTSIDE {
                                let i = t.idx[k];
                                axpy(simd, &mut block[i * dd..(i + 1) * dd], coef * (1.0 - s) * t.w[k], w_v);
                            }
                        }
                        axpy(simd, &mut block[gg * dd..(gg + 1) * dd], coef * s, w_v);
                    }
                }
            }
        }
    }
}

/// Forward of the readout on host slices; returns `[B, V]`.
pub fn forward(d: &Dims, maps: &[f32], sel: &[f32], wc: &[f32]) -> Vec<f32> {
    let ops = Operands { d: *d, maps, sel, wc, tap: all_taps(d, sel) };
    let arch = Arch::new();
    let mut out = vec![0f32; d.b * d.v];
    out.par_chunks_mut(VOXEL_CHUNK).enumerate().for_each(|(ci, chunk)| {
        arch.dispatch(Work { ops: &ops, job: Job::Forward { first: ci * VOXEL_CHUNK, out: chunk } });
    });
    out
}

/// Gradients of the readout: `(d maps, d sel, d wc)` for an upstream gradient `go` `[B, V]`.
pub fn backward(
    d: &Dims,
    maps: &[f32],
    sel: &[f32],
    wc: &[f32],
    go: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let ops = Operands { d: *d, maps, sel, wc, tap: all_taps(d, sel) };
    let arch = Arch::new();
    // Pass 1, over voxels: everything that belongs to one voxel.
    let mut dsel = vec![0f32; d.v * d.sel_width()];
    let mut dwc = vec![0f32; d.v * (d.d + 1)];
    dsel.par_chunks_mut(d.sel_width())
        .zip(dwc.par_chunks_mut(d.d + 1))
        .enumerate()
        .with_min_len(VOXEL_CHUNK / 4)
        .for_each(|(v, (ds, dw))| {
            arch.dispatch(Work { ops: &ops, job: Job::VoxelGrads { v, go, dsel: ds, dwc: dw } });
        });
    // Pass 2, over images: the map gradients of one image are written by one worker only.
    let mut dmaps = vec![0f32; d.b * d.l * d.cells() * d.d];
    dmaps.par_chunks_mut(d.l * d.cells() * d.d).enumerate().for_each(|(b, dm)| {
        arch.dispatch(Work { ops: &ops, job: Job::ImageGrads { b, go, dmaps: dm } });
    });
    (dmaps, dsel, dwc)
}

/// The candle op wrapping [`forward`] and [`backward`].
#[derive(Debug, Clone, Copy)]
pub struct FusedReadout {
    /// Grid side G.
    pub grid: usize,
}

impl FusedReadout {
    fn dims(&self, maps: &[usize], sel: &[usize], wc: &[usize]) -> candle_core::Result<Dims> {
        if maps.len() != 4 || sel.len() != 2 || wc.len() != 2 {
            bail!("fused readout: expected maps [B,L,G*G+1,D], sel [V,L+3], wc [V,D+1], got {maps:?} {sel:?} {wc:?}");
        }
        let d = Dims { b: maps[0], l: maps[1], g: self.grid, d: maps[3], v: sel[0] };
        if maps[2] != d.cells() || sel[1] != d.sel_width() || wc[0] != d.v || wc[1] != d.d + 1 {
            bail!("fused readout: inconsistent shapes maps {maps:?} sel {sel:?} wc {wc:?} for grid {}", self.grid);
        }
        Ok(d)
    }
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => bail!("fused readout: `{what}` must be f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("fused readout: `{what}` must be contiguous"),
    }
}

impl CustomOp3 for FusedReadout {
    fn name(&self) -> &'static str {
        "factortopy-fused-readout"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = self.dims(l1.dims(), l2.dims(), l3.dims())?;
        let out = forward(
            &d,
            contiguous_f32(s1, l1, "maps")?,
            contiguous_f32(s2, l2, "sel")?,
            contiguous_f32(s3, l3, "wc")?,
        );
        Ok((CpuStorage::F32(out), Shape::from((d.b, d.v))))
    }

    fn bwd(
        &self,
        maps: &Tensor,
        sel: &Tensor,
        wc: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = self.dims(maps.dims(), sel.dims(), wc.dims())?;
        let host = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let (dm, ds, dw) = backward(&d, &host(maps)?, &host(sel)?, &host(wc)?, &host(grad_res)?);
        let dev = maps.device();
        Ok((
            Some(Tensor::from_vec(dm, maps.shape(), dev)?),
            Some(Tensor::from_vec(ds, sel.shape(), dev)?),
            Some(Tensor::from_vec(dw, wc.shape(), dev)?),
        ))
    }
}

/// The fused readout as a differentiable tensor op.
pub fn fused_readout(maps: &Tensor, sel: &Tensor, wc: &Tensor, grid: usize) -> candle_core::Result<Tensor> {
    maps.contiguous()?.apply_op3(&sel.contiguous()?, &wc.contiguous()?, FusedReadout { grid })
}

/// The unfused readout written with ordinary candle ops: it materialises `[B, L, V, D]`.
/// It is the oracle the fused op is tested against (candle autograd gives its gradients) and the
/// baseline the benchmark compares with.
pub fn reference_readout(maps: &Tensor, sel: &Tensor, wc: &Tensor, grid: usize) -> candle_core::Result<Tensor> {
    let (b, l, cells, dd) = maps.dims4()?;
    let v = sel.dim(0)?;
    let dev = maps.device();
    let gf = grid as f64;
    let x = sel.narrow(1, 0, 1)?.squeeze(1)?;
    let y = sel.narrow(1, 1, 1)?.squeeze(1)?;
    let p = sel.narrow(1, 2, l)?;
    let s = sel.narrow(1, 2 + l, 1)?.squeeze(1)?;
    let ix = x.affine(gf / 2.0, (gf - 1.0) / 2.0)?;
    let iy = y.affine(gf / 2.0, (gf - 1.0) / 2.0)?;
    // The integer tap positions are constants of the sampling; gradients flow through fx, fy.
    let x0: Vec<f32> = ix.to_vec1::<f32>()?.iter().map(|a| a.floor()).collect();
    let y0: Vec<f32> = iy.to_vec1::<f32>()?.iter().map(|a| a.floor()).collect();
    let fx = (&ix - Tensor::from_vec(x0.clone(), v, dev)?)?;
    let fy = (&iy - Tensor::from_vec(y0.clone(), v, dev)?)?;
    let one_fx = fx.affine(-1.0, 1.0)?;
    let one_fy = fy.affine(-1.0, 1.0)?;
    let weights = [(&one_fx * &one_fy)?, (&fx * &one_fy)?, (&one_fx * &fy)?, (&fx * &fy)?];
    let padded = Tensor::cat(&[maps, &Tensor::zeros((b, l, 1, dd), maps.dtype(), dev)?], 2)?;
    let zero_cell = cells as u32;
    let mut u: Option<Tensor> = None;
    for (t, (dx, dy)) in [(0i64, 0i64), (1, 0), (0, 1), (1, 1)].iter().enumerate() {
        let idx: Vec<u32> = (0..v)
            .map(|i| {
                let xi = x0[i] as i64 + dx;
                let yi = y0[i] as i64 + dy;
                if xi >= 0 && yi >= 0 && xi < grid as i64 && yi < grid as i64 {
                    (yi * grid as i64 + xi) as u32
                } else {
                    zero_cell
                }
            })
            .collect();
        let sampled = padded.index_select(&Tensor::from_vec(idx, v, dev)?, 2)?; // [B, L, V, D]
        let term = sampled.broadcast_mul(&weights[t].reshape((1, 1, v, 1))?)?;
        u = Some(match u {
            None => term,
            Some(acc) => (acc + term)?,
        });
    }
    let u = u.expect("four taps");
    let z = maps.narrow(2, grid * grid, 1)?; // [B, L, 1, D]
    let s4 = s.reshape((1, 1, v, 1))?;
    let mixed = (u.broadcast_mul(&s4.affine(-1.0, 1.0)?)? + z.broadcast_mul(&s4)?)?;
    let f = mixed.broadcast_mul(&p.t()?.reshape((1, l, v, 1))?)?.sum(1)?; // [B, V, D]
    let w = wc.narrow(1, 0, dd)?;
    let c = wc.narrow(1, dd, 1)?.squeeze(1)?;
    (f.broadcast_mul(&w.unsqueeze(0)?)?.sum(2)? / dd as f64)?.broadcast_add(&c.unsqueeze(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], rng: &mut Rng, scale: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Selector outputs with locations spread over the map, on its border and outside it.
    fn selectors(v: usize, l: usize, rng: &mut Rng) -> Tensor {
        let mut data = Vec::new();
        for i in 0..v {
            let (x, y) = match i % 5 {
                0 => (rng.uniform_range(-1.3, 1.3), rng.uniform_range(-1.3, 1.3)),
                1 => (-1.0, rng.uniform_range(-1.0, 1.0)),
                2 => (0.999, -0.999),
                _ => (rng.uniform_range(-0.95, 0.95), rng.uniform_range(-0.95, 0.95)),
            };
            data.push(x as f32);
            data.push(y as f32);
            let logits: Vec<f64> = (0..l).map(|_| rng.normal()).collect();
            let z: f64 = logits.iter().map(|a| a.exp()).sum();
            data.extend(logits.iter().map(|a| (a.exp() / z) as f32));
            data.push(rng.uniform_range(0.05, 0.95) as f32);
        }
        Tensor::from_vec(data, (v, l + 3), &Device::Cpu).unwrap()
    }

    fn max_rel_err(a: &Tensor, b: &Tensor) -> f32 {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
        a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale))
    }

    /// The fused op and candle autograd on the unfused formula agree in value and in every
    /// gradient, at awkward shapes.
    #[test]
    fn fused_matches_reference_values_and_gradients() {
        // (B, L, G, D, V): V not a multiple of the voxel chunk, D = 1, L = 1, G = 1.
        for &(b, l, g, d, v) in &[(3, 4, 5, 7, 67), (2, 1, 3, 1, 5), (1, 2, 1, 4, 9), (4, 3, 8, 16, 130)] {
            let mut rng = Rng::new((b * 1000 + l * 100 + g * 10 + d) as u64);
            let maps = Var::from_tensor(&random(&[b, l, g * g + 1, d], &mut rng, 1.0)).unwrap();
            let sel = Var::from_tensor(&selectors(v, l, &mut rng)).unwrap();
            let wc = Var::from_tensor(&random(&[v, d + 1], &mut rng, 0.5)).unwrap();
            let go = random(&[b, v], &mut rng, 1.0);
            let fused = fused_readout(&maps, &sel, &wc, g).unwrap();
            let refr = reference_readout(&maps, &sel, &wc, g).unwrap();
            assert!(max_rel_err(&fused, &refr) < 1e-5, "values at {:?}", (b, l, g, d, v));
            let gf = (fused * &go).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (refr * &go).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, var) in [("maps", &maps), ("sel", &sel), ("wc", &wc)] {
                let a = gf.get(var.as_tensor()).unwrap();
                let r = gr.get(var.as_tensor()).unwrap();
                let e = max_rel_err(a, r);
                assert!(e < 1e-4, "gradient of {name} at {:?}: rel err {e}", (b, l, g, d, v));
            }
        }
    }

    #[test]
    fn centre_reads_mean_of_four_central_cells_and_corner_reads_quarter() {
        let t = taps(0.0, 0.0, 8);
        let mut cells: Vec<usize> = t.idx.to_vec();
        cells.sort();
        assert_eq!(cells, vec![27, 28, 35, 36]);
        assert!(t.w.iter().all(|&w| (w - 0.25).abs() < 1e-7));
        // The corner (-1, -1) is pixel (-0.5, -0.5): only cell (0, 0) is inside, weight 0.25.
        let t = taps(-1.0, -1.0, 8);
        assert_eq!(t.idx[3], 0);
        assert!((t.w[3] - 0.25).abs() < 1e-7);
        assert!(t.idx[..3].iter().all(|&i| i == OUTSIDE));
        // And through the op: a map with value k in cell k, W = 1, D = 1, p = 1, s = 0.
        let g = 8;
        let mut m: Vec<f32> = (0..g * g).map(|k| k as f32).collect();
        m.push(0.0);
        let maps = Tensor::from_vec(m, (1, 1, g * g + 1, 1), &Device::Cpu).unwrap();
        let sel = Tensor::new(&[[0.0f32, 0.0, 1.0, 0.0], [-1.0, -1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]], &Device::Cpu).unwrap();
        let wc = Tensor::new(&[[1.0f32, 0.0], [1.0, 0.0], [1.0, 0.0]], &Device::Cpu).unwrap();
        let y = fused_readout(&maps, &sel, &wc, g).unwrap().to_vec2::<f32>().unwrap();
        assert!((y[0][0] - (27.0 + 28.0 + 35.0 + 36.0) / 4.0).abs() < 1e-5);
        assert!((y[0][1] - 0.0).abs() < 1e-6);
        assert!((y[0][2] - 63.0 * 0.25).abs() < 1e-5);
    }

    #[test]
    fn readout_is_mean_over_d_with_scale_mix() {
        // One layer, G = 1 so the local read is the single cell at the centre; D = 2.
        // f = (1−s)·local + s·global; ŷ = (W·f)/D + c.
        let maps = Tensor::new(&[[[[2.0f32, 4.0], [10.0, 20.0]]]], &Device::Cpu).unwrap();
        let sel = Tensor::new(&[[0.0f32, 0.0, 1.0, 0.25]], &Device::Cpu).unwrap();
        let wc = Tensor::new(&[[1.0f32, -0.5, 3.0]], &Device::Cpu).unwrap();
        let y = fused_readout(&maps, &sel, &wc, 1).unwrap().to_vec2::<f32>().unwrap();
        let f = [0.75 * 2.0 + 0.25 * 10.0, 0.75 * 4.0 + 0.25 * 20.0];
        let want = (1.0 * f[0] - 0.5 * f[1]) / 2.0 + 3.0;
        assert!((y[0][0] - want).abs() < 1e-6, "{} vs {want}", y[0][0]);
    }
}
