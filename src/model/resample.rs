//! Grid resampling (DESIGN §3.1): every layer's local map is resized once to G×G so that all
//! layers share one sampling grid.
//!
//! Two kernels, chosen per axis by [`Resample::kernel`] (the one place the method is decided):
//! - bilinear, DESIGN §3.1 and the paper's code: half-pixel centres, no antialiasing. Shrinking a
//!   112-pixel axis to 8 cells this way reads 2 of every 14 pixels;
//! - area: every output cell is the exact average of the input pixels it covers, pixels cut by a
//!   cell border weighted by the fraction inside (an area-interpolation resize, or adaptive
//!   average pooling with fractional coverage), so no pixel is ignored at any ratio.
//!
//! `auto` (the library default) uses area on an axis that shrinks and bilinear on one that grows
//! or keeps its size. The choice is per axis, so a non-square map (say 14×6 to 8×8) is averaged
//! along the axis that shrinks and interpolated along the one that grows.

use crate::data::Array;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// How each layer's map is resized to the grid (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resample {
    /// DESIGN §3.1: bilinear, half-pixel centres, no antialiasing.
    Bilinear,
    /// Exact area averaging over the covered input pixels.
    Area,
    /// Area on axes that shrink, bilinear on axes that grow or keep their size.
    #[default]
    Auto,
}

/// The resizing kernel of one axis, as chosen by [`Resample::kernel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Bilinear interpolation with half-pixel centres.
    Bilinear,
    /// Exact area averaging.
    Area,
}

impl Resample {
    /// Every rule.
    pub const ALL: [Resample; 3] = [Resample::Bilinear, Resample::Area, Resample::Auto];

    /// The name used on the command line, in Python, in reports and in encoder files.
    pub fn name(self) -> &'static str {
        match self {
            Resample::Bilinear => "bilinear",
            Resample::Area => "area",
            Resample::Auto => "auto",
        }
    }

    /// Parses a name written by [`Resample::name`].
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| Error::invalid(format!("unknown resampling `{s}` (expected bilinear, area or auto)")))
    }

    /// The kernel of an axis of `n_in` pixels resized to `n_out` cells: the one place where
    /// `auto` is decided.
    pub fn kernel(self, n_in: usize, n_out: usize) -> Kernel {
        match self {
            Resample::Bilinear => Kernel::Bilinear,
            Resample::Area => Kernel::Area,
            Resample::Auto if n_out < n_in => Kernel::Area,
            Resample::Auto => Kernel::Bilinear,
        }
    }
}

impl std::fmt::Display for Resample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Resample {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// The bilinear tap of output index `o` of an axis of `n_in` pixels resized to `n_out`:
/// `(i0, i1, weight of i1)`. Half-pixel centres, `src = (dst + 0.5)·in/out − 0.5` clamped at 0,
/// the upper tap clamped at the last index; no antialiasing (what PyTorch's bilinear
/// `align_corners=False` does).
fn bilinear_tap(n_in: usize, n_out: usize, o: usize) -> (usize, usize, f32) {
    let scale = n_in as f64 / n_out as f64;
    let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
    let i0 = (src.floor() as usize).min(n_in - 1);
    let i1 = (i0 + 1).min(n_in - 1);
    (i0, i1, (src - i0 as f64) as f32)
}

/// Source taps along one axis: for each output index, (i0, i1, weight of i1) (see
/// `bilinear_tap`).
pub fn axis_taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
    (0..n_out).map(|o| bilinear_tap(n_in, n_out, o)).collect()
}

/// The area taps of output index `o`, appended to `buf`: the cell covers `[o·s, (o+1)·s)` in
/// input pixel units (`s = n_in/n_out`); input pixel `i` (covering `[i, i+1)`) gets the length
/// of the overlap divided by `s`, so the weights sum to 1. Computed in f64, stored as f32.
fn area_taps(n_in: usize, n_out: usize, o: usize, buf: &mut Vec<(usize, f32)>) {
    let s = n_in as f64 / n_out as f64;
    let (lo, hi) = (o as f64 * s, (o + 1) as f64 * s);
    let first = lo.floor() as usize;
    let last = ((hi.ceil() as usize).max(first + 1)).min(n_in);
    buf.extend((first..last).filter_map(|i| {
        let overlap = (hi.min((i + 1) as f64) - lo.max(i as f64)).max(0.0);
        (overlap > 0.0).then(|| (i, (overlap / s) as f32))
    }));
}

/// Area weights along one axis, for every output index (see `area_taps`).
pub fn area_weights(n_in: usize, n_out: usize) -> Vec<Vec<(usize, f32)>> {
    (0..n_out)
        .map(|o| {
            let mut taps = Vec::new();
            area_taps(n_in, n_out, o, &mut taps);
            taps
        })
        .collect()
}

/// The taps `(input index, weight)` of output index `o` of one axis under `kernel`, in `buf`
/// (cleared first). Bilinear keeps both taps even when they coincide (a clamped border), in the
/// order and with the weights `(1 − w, w)` of [`bilinear_tap`], so the separable sum below gives
/// the same bits as the direct two-tap formula of DESIGN §3.1.
fn taps_of(kernel: Kernel, n_in: usize, n_out: usize, o: usize, buf: &mut Vec<(usize, f32)>) {
    buf.clear();
    match kernel {
        Kernel::Bilinear => {
            let (i0, i1, w) = bilinear_tap(n_in, n_out, o);
            buf.extend([(i0, 1.0 - w), (i1, w)]);
        }
        Kernel::Area => area_taps(n_in, n_out, o, buf),
    }
}

/// The taps of every output index of one axis under `kernel` (see `taps_of`). Tables are only
/// built for grids (at most [`crate::data::limits::MAX_GRID`] entries); an output of any size
/// goes through [`resample_into`], which computes each index's taps as it needs them.
pub fn axis_weights(kernel: Kernel, n_in: usize, n_out: usize) -> Vec<Vec<(usize, f32)>> {
    (0..n_out)
        .map(|o| {
            let mut taps = Vec::new();
            taps_of(kernel, n_in, n_out, o, &mut taps);
            taps
        })
        .collect()
}

/// `Σ value(i)·w` over `taps` in order, starting from the first product (not from 0, which
/// would turn a −0 result into +0 and change the bits of the bilinear path).
fn weighted_sum(taps: &[(usize, f32)], value: impl Fn(usize) -> f32) -> f32 {
    let mut it = taps.iter();
    let Some(&(i, w)) = it.next() else { return 0.0 };
    let mut acc = value(i) * w;
    for &(i, w) in it {
        acc += value(i) * w;
    }
    acc
}

/// Resizes `[N, C, H, W]` to `[N, C, G, G]` with `method` (see the module docs).
pub fn resample(local: &Array, g: usize, method: Resample) -> Result<Array> {
    resample_to(local, (g, g), method)
}

/// Resizes `[N, C, H, W]` to `[N, C, out_h, out_w]` with `method`, each axis by its own kernel
/// ([`Resample::kernel`]); [`resample`] is the square case. Also what the C ABI's `ft_resample`
/// computes, so callers that shrink maps before handing them over (Python's `to_grid`) use the
/// same arithmetic as the encoder.
pub fn resample_to(local: &Array, (out_h, out_w): (usize, usize), method: Resample) -> Result<Array> {
    let (n, c, h, w) = check_map(local, (out_h, out_w))?;
    if h == out_h && w == out_w {
        // Every kernel is the identity at equal sizes.
        return Ok(local.clone());
    }
    // The output size comes from a flag, an encoder file or a C caller: size it before asking.
    let count = crate::data::limits::elements("resampled local map [N, C, G, G]", &[n, c, out_h, out_w])?;
    let mut out: Vec<f32> = crate::data::limits::try_zeroed("resampled local map", count)?;
    resample_into(&local.data, (h, w), (out_h, out_w), method, &mut out)?;
    Array::new(vec![n, c, out_h, out_w], out)
}

/// The arithmetic of [`resample_to`] on raw buffers: `src` holds whole `h × w` maps (row-major),
/// `dst` the same number of `out_h × out_w` maps. Every size is checked here (the C ABI passes a
/// caller's sizes straight through): all non-zero, one input map, one output map and the
/// working row `h · out_w` within the limit on one array, and `src` and `dst` holding the same
/// number of whole maps. No table is sized by the output: each output index's taps are
/// computed when its row or column is filled, so a tall or wide output costs only itself. The
/// one allocation, a row buffer of `h · out_w` floats per map in flight, is made fallibly.
pub fn resample_into(
    src: &[f32],
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
    method: Resample,
    dst: &mut [f32],
) -> Result<()> {
    use crate::data::limits::elements;
    if h == 0 || w == 0 || out_h == 0 || out_w == 0 {
        return Err(Error::invalid(format!(
            "resample needs map sizes > 0, got {h}×{w} to {out_h}×{out_w}"
        )));
    }
    let in_plane = elements("one input map [H, W]", &[h, w])?;
    let out_plane = elements("one output map [output height, output width]", &[out_h, out_w])?;
    let row_len = elements("resampling row buffer [H, output width]", &[h, out_w])?;
    let maps = src.len() / in_plane;
    if src.len() % in_plane != 0 || dst.len() % out_plane != 0 || dst.len() / out_plane != maps {
        return Err(Error::mismatch(format!(
            "resample: {} input values are not whole {h}×{w} maps matching {} output values of {out_h}×{out_w} maps",
            src.len(),
            dst.len()
        )));
    }
    if maps == 0 {
        return Ok(());
    }
    if h == out_h && w == out_w {
        dst.copy_from_slice(src);
        return Ok(());
    }
    let (ky, kx) = (method.kernel(h, out_h), method.kernel(w, out_w));
    dst.par_chunks_mut(out_plane).enumerate().try_for_each(|(nc, dst)| {
        let src = &src[nc * in_plane..(nc + 1) * in_plane];
        let mut taps = Vec::new();
        // Along x first (every input row to out_w columns), then along y. For bilinear each sum
        // is exactly `a·(1 − w) + b·w`, the arithmetic of DESIGN §3.1's two-tap formula.
        let mut rows: Vec<f32> = crate::data::limits::try_zeroed("resampling row buffer", row_len)?;
        for ox in 0..out_w {
            taps_of(kx, w, out_w, ox, &mut taps);
            for y in 0..h {
                rows[y * out_w + ox] = weighted_sum(&taps, |x| src[y * w + x]);
            }
        }
        for oy in 0..out_h {
            taps_of(ky, h, out_h, oy, &mut taps);
            for ox in 0..out_w {
                dst[oy * out_w + ox] = weighted_sum(&taps, |y| rows[y * out_w + ox]);
            }
        }
        Ok(())
    })
}

/// Checks a `[N, C, H, W]` map and an output size before anything is allocated (every
/// resampling entry point); returns `(N, C, H, W)`.
fn check_map(local: &Array, (out_h, out_w): (usize, usize)) -> Result<(usize, usize, usize, usize)> {
    if local.ndim() != 4 || out_h == 0 || out_w == 0 || local.shape[2] == 0 || local.shape[3] == 0 {
        return Err(Error::invalid(format!(
            "resample needs a non-empty [N, C, H, W] map and an output size > 0, got {:?} to {out_h}×{out_w}",
            local.shape
        )));
    }
    Ok((local.shape[0], local.shape[1], local.shape[2], local.shape[3]))
}

/// `out[..] = Σ src[offset(i)..][..out.len()]·w` over `taps` in order, element-wise: the
/// arithmetic of [`weighted_sum`] (first product, then one multiply and one add per tap) for a
/// row of channels at once, so that the loops vectorise and every channel gets the same bits.
#[inline]
fn weighted_rows(taps: &[(usize, f32)], src: &[f32], offset: impl Fn(usize) -> usize, out: &mut [f32]) {
    let n = out.len();
    let mut it = taps.iter();
    let Some(&(i, w)) = it.next() else {
        out.fill(0.0);
        return;
    };
    for (o, &x) in out.iter_mut().zip(&src[offset(i)..offset(i) + n]) {
        *o = x * w;
    }
    for &(i, w) in it {
        for (o, &x) in out.iter_mut().zip(&src[offset(i)..offset(i) + n]) {
            *o += x * w;
        }
    }
}

/// `[C, P]` → `[P, C]` (row-major), eight channels at a time: their eight source rows are read
/// in lockstep (eight sequential streams) and each pixel's eight values are written as one run.
/// Measured on the monitor's maps, about 2× faster than walking one 8 × 8 tile at a time and 4×
/// faster than an element-wise loop.
fn transpose(src: &[f32], c: usize, p: usize, dst: &mut [f32]) {
    const T: usize = 8;
    let mut c0 = 0;
    while c0 + T <= c {
        let rows: [&[f32]; T] = std::array::from_fn(|k| &src[(c0 + k) * p..(c0 + k + 1) * p]);
        for (q, out) in dst.chunks_exact_mut(c).take(p).enumerate() {
            for (o, row) in out[c0..c0 + T].iter_mut().zip(&rows) {
                *o = row[q];
            }
        }
        c0 += T;
    }
    for q in 0..p {
        for ch in c0..c {
            dst[q * c + ch] = src[ch * p + q];
        }
    }
}

/// The images `idx` (all of them when `None`, in order) of `[N, C, H, W]` resized with `method`
/// straight into the cell-major layout `[n, G·G, C]` that the channel alignment multiplies:
/// the same numbers, bit for bit, as [`to_cells`] of [`resample`] of those images. Each image
/// is turned pixel-major once (`[H·W, C]`), then both passes run over contiguous channels
/// (vectorised), and nothing else is copied. Indices must be in range (the caller checks them).
pub fn resample_cells(local: &Array, idx: Option<&[usize]>, g: usize, method: Resample) -> Result<Array> {
    let (n_all, c, _, _) = check_map(local, (g, g))?;
    let n = idx.map_or(n_all, <[usize]>::len);
    let count = crate::data::limits::elements("resampled local map [N, G·G, C]", &[n, g, g, c])?;
    let mut out: Vec<f32> = crate::data::limits::try_zeroed("resampled local map", count)?;
    resample_cells_into(local, idx, g, method, &mut out)?;
    Array::new(vec![n, g * g, c], out)
}

/// [`resample_cells`] into `out` (`n·G·G·C` values, every one overwritten): the monitor
/// resamples its held-out images into the same buffer at every observation, so no fresh
/// memory is faulted in each time.
pub fn resample_cells_into(local: &Array, idx: Option<&[usize]>, g: usize, method: Resample, out: &mut [f32]) -> Result<()> {
    let (n_all, c, h, w) = check_map(local, (g, g))?;
    resample_cells_slice(&local.data, [n_all, c, h, w], idx, g, method, out)
}

/// [`resample_cells_into`] on the values of a `[N, C, H, W]` map given as a slice and its
/// shape (a block of images read from a file, or a layer held in memory).
pub fn resample_cells_slice(
    data: &[f32],
    [n_all, c, h, w]: [usize; 4],
    idx: Option<&[usize]>,
    g: usize,
    method: Resample,
    out: &mut [f32],
) -> Result<()> {
    if h == 0 || w == 0 || g == 0 || data.len() != n_all * c * h * w {
        return Err(Error::invalid(format!(
            "resample needs a non-empty [N, C, H, W] map and a grid > 0, got {} values for [{n_all}, {c}, {h}, {w}] to {g}×{g}",
            data.len()
        )));
    }
    // The grid sizes the axis tables and each worker's scratch: held to the grid limit.
    crate::data::limits::positive_at_most("grid", g, crate::data::limits::MAX_GRID)?;
    let n = idx.map_or(n_all, <[usize]>::len);
    let count = crate::data::limits::elements("resampled local map [N, G·G, C]", &[n, g, g, c])?;
    if out.len() != count {
        return Err(Error::mismatch(format!(
            "resampled local map: the output holds {} values, [{n}, {}, {c}] needs {count}",
            out.len(),
            g * g
        )));
    }
    if count == 0 {
        return Ok(());
    }
    let identity = h == g && w == g;
    let ty = axis_weights(method.kernel(h, g), h, g);
    let tx = axis_weights(method.kernel(w, g), w, g);
    let plane = h * w;
    // Per worker: the image pixel-major `[H·W, C]` and the x pass `[H, G, C]`.
    let scratch = || (vec![0f32; plane * c], vec![0f32; h * g * c]);
    out.par_chunks_mut(g * g * c).enumerate().for_each_init(scratch, |(pixels, rows), (i, dst)| {
        let image = idx.map_or(i, |idx| idx[i]);
        let src = &data[image * c * plane..(image + 1) * c * plane];
        if identity {
            transpose(src, c, plane, dst);
            return;
        }
        transpose(src, c, plane, pixels);
        // Along x (every input row to G columns) into [H, G, C], then along y into the output.
        for (y, row) in rows.chunks_exact_mut(g * c).enumerate() {
            for (out, taps) in row.chunks_exact_mut(c).zip(&tx) {
                weighted_rows(taps, pixels, |x| (y * w + x) * c, out);
            }
        }
        for (oy, taps) in ty.iter().enumerate() {
            for ox in 0..g {
                let out = &mut dst[(oy * g + ox) * c..(oy * g + ox + 1) * c];
                weighted_rows(taps, rows, |y| (y * g + ox) * c, out);
            }
        }
    });
    Ok(())
}

/// `[N, C, G, G]` → `[N, G·G, C]`, the cell-major layout the channel alignment multiplies.
pub fn to_cells(map: &Array) -> Result<Array> {
    let (n, c, gg) = (map.shape[0], map.shape[1], map.shape[2] * map.shape[3]);
    let mut out: Vec<f32> = crate::data::limits::try_zeroed("cell-major local map", map.data.len())?;
    out.par_chunks_mut(gg * c).enumerate().for_each(|(i, dst)| {
        let src = &map.data[i * c * gg..(i + 1) * c * gg];
        for ch in 0..c {
            for cell in 0..gg {
                dst[cell * c + ch] = src[ch * gg + cell];
            }
        }
    });
    Ok(Array { shape: vec![n, gg, c], data: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsample_by_two_averages_pairs() {
        // 4 → 2: src = (o + 0.5)·2 − 0.5 = 0.5, 2.5: the mean of each pair of cells.
        let taps = axis_taps(4, 2);
        assert_eq!(taps, vec![(0, 1, 0.5), (2, 3, 0.5)]);
        // A single source row is read as-is at every output row: both taps are that row.
        assert!(axis_taps(1, 2).iter().all(|&(a, b, _)| a == 0 && b == 0));
    }

    #[test]
    fn upsample_clamps_at_borders() {
        // 2 → 4: src = (o + 0.5)/2 − 0.5 = −0.25→0, 0.25, 0.75, 1.25 (upper tap clamped at 1).
        let taps = axis_taps(2, 4);
        assert_eq!(taps[0], (0, 1, 0.0));
        assert_eq!(taps[1], (0, 1, 0.25));
        assert_eq!(taps[2], (0, 1, 0.75));
        assert_eq!(taps[3], (1, 1, 0.25));
        let a = Array::new(vec![1, 1, 2, 2], vec![0.0, 4.0, 8.0, 12.0]).unwrap();
        let r = resample(&a, 4, Resample::Bilinear).unwrap();
        // Row 0 (y weight 0): 0, 1, 3, 4; row 1 (y weight 0.25 toward row 1): + 2.
        assert_eq!(&r.data[0..4], &[0.0, 1.0, 3.0, 4.0]);
        assert_eq!(&r.data[4..8], &[2.0, 3.0, 5.0, 6.0]);
        assert_eq!(&r.data[12..16], &[8.0, 9.0, 11.0, 12.0]);
    }

    #[test]
    fn hand_worked_downsample_and_cells() {
        // 4×4 → 2×2: each output is the mean of a 2×2 block.
        let data: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let a = Array::new(vec![1, 1, 4, 4], data).unwrap();
        let r = resample(&a, 2, Resample::Bilinear).unwrap();
        assert_eq!(r.data, vec![2.5, 4.5, 10.5, 12.5]);
        let two = Array::new(vec![1, 2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(to_cells(&two).unwrap().data, vec![1.0, 3.0, 2.0, 4.0]);
    }

    /// Deterministic test data with both signs, zeros and negative zeros.
    fn map(n: usize, c: usize, h: usize, w: usize, seed: u64) -> Array {
        let mut rng = crate::rng::Rng::derive(seed, "resample.test");
        let data = (0..n * c * h * w)
            .map(|i| match i % 17 {
                0 => 0.0,
                5 => -0.0,
                _ => rng.normal() as f32,
            })
            .collect();
        Array::new(vec![n, c, h, w], data).unwrap()
    }

    /// DESIGN §3.1 bilinear as the code computed it before area resampling existed (the two-tap
    /// formula, row by row), the oracle for bit-identity of the bilinear path.
    fn two_tap_bilinear(local: &Array, (gh, gw): (usize, usize)) -> Vec<f32> {
        let (n, c, h, w) = (local.shape[0], local.shape[1], local.shape[2], local.shape[3]);
        let (ty, tx) = (axis_taps(h, gh), axis_taps(w, gw));
        let mut out = vec![0.0f32; n * c * gh * gw];
        for nc in 0..n * c {
            let src = &local.data[nc * h * w..(nc + 1) * h * w];
            for (oy, &(y0, y1, wy)) in ty.iter().enumerate() {
                for (ox, &(x0, x1, wx)) in tx.iter().enumerate() {
                    let top = src[y0 * w + x0] * (1.0 - wx) + src[y0 * w + x1] * wx;
                    let bot = src[y1 * w + x0] * (1.0 - wx) + src[y1 * w + x1] * wx;
                    out[nc * gh * gw + oy * gw + ox] = top * (1.0 - wy) + bot * wy;
                }
            }
        }
        out
    }

    /// Exact area averages by supersampling: every input pixel is replicated into a gh×gw
    /// block, after which output cell (oy, ox) is the plain mean of the h×w block of sub-pixels
    /// starting at (oy·h, ox·w) — no fractional weights anywhere, so independent of
    /// `area_weights`. Computed in f64.
    fn supersampled_area(local: &Array, (gh, gw): (usize, usize)) -> Vec<f64> {
        let (n, c, h, w) = (local.shape[0], local.shape[1], local.shape[2], local.shape[3]);
        let mut out = vec![0.0f64; n * c * gh * gw];
        for nc in 0..n * c {
            let src = &local.data[nc * h * w..(nc + 1) * h * w];
            for oy in 0..gh {
                for ox in 0..gw {
                    let mut sum = 0.0f64;
                    for sy in oy * h..(oy + 1) * h {
                        for sx in ox * w..(ox + 1) * w {
                            sum += src[(sy / gh) * w + sx / gw] as f64;
                        }
                    }
                    out[nc * gh * gw + oy * gw + ox] = sum / (h * w) as f64;
                }
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            assert!((a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()), "{what}: element {i}: {a} vs {b}");
        }
    }

    #[test]
    fn area_is_the_exact_average_of_covered_pixels() {
        // Integer ratios (112 → 8 reads 14×14 blocks, 16 → 8), non-integer ones (13 → 8, 7 → 3,
        // 10 → 4), non-square maps, a 1×1 output (the global mean) and growing maps (3 → 8,
        // 5 → 7), all against the supersampled average.
        for &(h, w, g) in
            &[(112, 112, 8), (16, 16, 8), (13, 13, 8), (7, 7, 3), (10, 13, 4), (9, 6, 1), (3, 3, 8), (5, 2, 7), (14, 6, 8)]
        {
            let a = map(2, 3, h, w, (h * 100 + w * 10 + g) as u64);
            let got = resample(&a, g, Resample::Area).unwrap();
            assert_eq!(got.shape, vec![2, 3, g, g]);
            assert_close(&got.data, &supersampled_area(&a, (g, g)), &format!("area {h}×{w} → {g}"));
        }
    }

    #[test]
    fn area_weights_hand_worked() {
        // 3 → 2: cells cover [0, 1.5) and [1.5, 3): pixel 1 is split in half.
        let w = area_weights(3, 2);
        assert_eq!(w[0], vec![(0, (1.0f64 / 1.5) as f32), (1, (0.5f64 / 1.5) as f32)]);
        assert_eq!(w[1], vec![(1, (0.5f64 / 1.5) as f32), (2, (1.0f64 / 1.5) as f32)]);
        // 2 → 3 (growing): the middle cell straddles both pixels equally.
        let w = area_weights(2, 3);
        assert_eq!(w, vec![vec![(0, 1.0)], vec![(0, 0.5), (1, 0.5)], vec![(1, 1.0)]]);
        // One output cell averages everything.
        assert_eq!(area_weights(4, 1), vec![vec![(0, 0.25), (1, 0.25), (2, 0.25), (3, 0.25)]]);
        let m = Array::new(vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 6.0]).unwrap();
        assert_eq!(resample(&m, 1, Resample::Area).unwrap().data, vec![3.0]);
        // Bilinear reads only the centre taps: 1×1 from 2×2 is also the mean (src 0.5), but from
        // 4×4 it is the mean of the central 2×2, ignoring the 12 border pixels.
        let m4 = Array::new(vec![1, 1, 4, 4], (0..16).map(|i| if i == 0 { 160.0 } else { 0.0 }).collect()).unwrap();
        assert_eq!(resample(&m4, 1, Resample::Bilinear).unwrap().data, vec![0.0]);
        assert_eq!(resample(&m4, 1, Resample::Area).unwrap().data, vec![10.0]);
    }

    #[test]
    fn bilinear_path_keeps_the_bits_of_the_two_tap_formula() {
        for &(h, w, g) in &[(16, 16, 8), (13, 13, 8), (8, 8, 3), (3, 3, 8), (14, 6, 8), (7, 11, 5), (1, 4, 3)] {
            let a = map(2, 2, h, w, (h * 7 + w + g) as u64);
            let got = resample(&a, g, Resample::Bilinear).unwrap();
            let want = two_tap_bilinear(&a, (g, g));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.data), bits(&want), "bilinear {h}×{w} → {g}");
        }
    }

    #[test]
    fn auto_averages_shrinking_axes_and_interpolates_growing_ones() {
        assert_eq!(Resample::Auto.kernel(16, 8), Kernel::Area);
        assert_eq!(Resample::Auto.kernel(9, 8), Kernel::Area);
        assert_eq!(Resample::Auto.kernel(8, 8), Kernel::Bilinear);
        assert_eq!(Resample::Auto.kernel(4, 8), Kernel::Bilinear);
        for n in [1, 8, 30] {
            assert_eq!(Resample::Area.kernel(n, 8), Kernel::Area);
            assert_eq!(Resample::Bilinear.kernel(n, 8), Kernel::Bilinear);
        }
        let shrink = map(1, 2, 13, 13, 1);
        assert_eq!(resample(&shrink, 8, Resample::Auto).unwrap().data, resample(&shrink, 8, Resample::Area).unwrap().data);
        let grow = map(1, 2, 5, 5, 2);
        assert_eq!(resample(&grow, 8, Resample::Auto).unwrap().data, resample(&grow, 8, Resample::Bilinear).unwrap().data);
        // 14×6 → 8×8: rows shrink (area), columns grow (bilinear). A map constant along x is
        // the area average along y; one constant along y is the bilinear interpolation along x.
        let (h, w) = (14, 6);
        let col: Vec<f32> = (0..h).map(|y| (y * y) as f32).collect();
        let along_y = Array::new(vec![1, 1, h, w], (0..h * w).map(|i| col[i / w]).collect()).unwrap();
        let r = resample(&along_y, 8, Resample::Auto).unwrap();
        for (oy, taps) in area_weights(h, 8).iter().enumerate() {
            let want: f64 = taps.iter().map(|&(y, wt)| col[y] as f64 * wt as f64).sum();
            for ox in 0..8 {
                assert!((r.data[oy * 8 + ox] as f64 - want).abs() < 1e-4, "row {oy}");
            }
        }
        let row: Vec<f32> = (0..w).map(|x| (3 * x) as f32).collect();
        let along_x = Array::new(vec![1, 1, h, w], (0..h * w).map(|i| row[i % w]).collect()).unwrap();
        let r = resample(&along_x, 8, Resample::Auto).unwrap();
        for (ox, &(x0, x1, wx)) in axis_taps(w, 8).iter().enumerate() {
            let want = row[x0] * (1.0 - wx) + row[x1] * wx;
            for oy in 0..8 {
                assert!((r.data[oy * 8 + ox] - want).abs() < 1e-4, "column {ox}");
            }
        }
    }

    #[test]
    fn rectangular_outputs_resize_each_axis_by_its_own_kernel() {
        // `resample_to` (what `ft_resample` and Python's `to_grid` use) against the same
        // oracles at output sizes that differ per axis, shrinking on one axis and growing on
        // the other included.
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for &(h, w, gh, gw) in &[(16, 16, 8, 4), (13, 9, 8, 11), (112, 56, 7, 16), (5, 12, 8, 3), (6, 6, 6, 4)] {
            let a = map(2, 3, h, w, (h * 31 + w * 7 + gh * 3 + gw) as u64);
            let area = resample_to(&a, (gh, gw), Resample::Area).unwrap();
            assert_eq!(area.shape, vec![2, 3, gh, gw]);
            assert_close(&area.data, &supersampled_area(&a, (gh, gw)), &format!("area {h}×{w} → {gh}×{gw}"));
            let bil = resample_to(&a, (gh, gw), Resample::Bilinear).unwrap();
            assert_eq!(bits(&bil.data), bits(&two_tap_bilinear(&a, (gh, gw))), "bilinear {h}×{w} → {gh}×{gw}");
        }
        // The square case is `resample`, bit for bit, for every rule.
        let a = map(1, 2, 13, 10, 9);
        for r in Resample::ALL {
            assert_eq!(bits(&resample_to(&a, (6, 6), r).unwrap().data), bits(&resample(&a, 6, r).unwrap().data));
        }
        // Equal sizes are the identity, −0 included.
        assert_eq!(bits(&resample_to(&a, (13, 10), Resample::Bilinear).unwrap().data), bits(&a.data));
        assert!(resample_to(&a, (0, 4), Resample::Area).is_err());
        assert!(resample_to(&a, (4, 0), Resample::Area).is_err());
    }

    #[test]
    fn area_through_a_multiple_of_the_grid_is_area_to_the_grid() {
        // Why Python's `collect(max_grid=M)` can shrink maps before the encoder resamples them
        // to G: area(area(x, M), G) = area(x, G) when G divides M, since every G cell is the
        // union of M/G whole M cells of equal length along each axis, and the mean over a union
        // of equal parts is the mean of the parts' means. Integer and non-integer H/M; an axis
        // no longer than M is left as it is (what `max_grid` does), so `auto` may grow it. Equal
        // up to f32 rounding of the two summation orders.
        for &(h, w, m, g) in &[(112, 112, 16, 8), (13, 13, 8, 4), (30, 17, 12, 4), (56, 20, 24, 8), (20, 6, 8, 4), (20, 3, 8, 4)] {
            let a = map(2, 2, h, w, (h * 13 + w + m * 5 + g) as u64);
            for r in [Resample::Area, Resample::Auto] {
                let once = resample(&a, g, r).unwrap();
                let pre = resample_to(&a, (h.min(m), w.min(m)), r).unwrap();
                let twice = resample(&pre, g, r).unwrap();
                let want: Vec<f64> = once.data.iter().map(|&v| v as f64).collect();
                assert_close(&twice.data, &want, &format!("{r} {h}×{w} → {m} → {g}"));
            }
        }
        // Not so for bilinear, whose taps depend on the input size (16 → 8 → 4 reads every
        // pixel once, 16 → 4 the middle two of each four), nor for area when G does not divide M
        // (12 → 5 → 2 splits the middle of the five cells).
        let a = map(1, 1, 16, 16, 3);
        let direct = resample(&a, 4, Resample::Bilinear).unwrap();
        let via = resample(&resample(&a, 8, Resample::Bilinear).unwrap(), 4, Resample::Bilinear).unwrap();
        assert!(direct.data.iter().zip(&via.data).any(|(x, y)| (x - y).abs() > 1e-3));
        let a = map(1, 1, 12, 12, 4);
        let direct = resample(&a, 2, Resample::Area).unwrap();
        let via = resample(&resample(&a, 5, Resample::Area).unwrap(), 2, Resample::Area).unwrap();
        assert!(direct.data.iter().zip(&via.data).any(|(x, y)| (x - y).abs() > 1e-3));
    }

    #[test]
    fn cells_in_one_pass_match_resample_then_transpose() {
        // Shrinking, growing, equal and non-square maps, every method, all images and a subset
        // with a repeat: the fused path gives the two-pass path's bits. 19 channels: two full
        // transpose tiles and a remainder; (14, 14) has whole 8-pixel tiles and a rest.
        for &(h, w) in &[(14, 14), (7, 7), (8, 8), (14, 6), (3, 11)] {
            let local = map(4, 19, h, w, (h * 31 + w) as u64);
            for method in Resample::ALL {
                let full = to_cells(&resample(&local, 8, method).unwrap()).unwrap();
                let fused = resample_cells(&local, None, 8, method).unwrap();
                assert_eq!(fused.shape, full.shape);
                assert!(fused.data.iter().zip(&full.data).all(|(a, b)| a.to_bits() == b.to_bits()), "{h}x{w} {method}");
                let idx = [2usize, 0, 2];
                let some = resample_cells(&local, Some(&idx), 8, method).unwrap();
                let per = full.data.len() / 4;
                let want: Vec<f32> = idx.iter().flat_map(|&i| full.data[i * per..(i + 1) * per].to_vec()).collect();
                assert_eq!(some.shape, vec![3, 64, 19]);
                assert!(some.data.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{h}x{w} {method} subset");
                // Into a reused buffer holding other numbers: every value is overwritten.
                let mut reused = vec![f32::NAN; want.len()];
                resample_cells_into(&local, Some(&idx), 8, method, &mut reused).unwrap();
                assert!(reused.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{h}x{w} {method} reused");
            }
        }
        assert!(resample_cells(&map(1, 2, 0, 3, 1), None, 8, Resample::Auto).is_err());
        let mut short = vec![0f32; 10];
        let e = resample_cells_into(&map(1, 2, 4, 4, 1), None, 8, Resample::Auto, &mut short).unwrap_err();
        assert!(e.to_string().contains("needs 128"), "{e}");
    }

    #[test]
    fn names_round_trip() {
        for r in Resample::ALL {
            assert_eq!(Resample::parse(r.name()).unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.name()));
        }
        assert!(Resample::parse("nearest").is_err());
        assert_eq!(Resample::default(), Resample::Auto);
    }
}
