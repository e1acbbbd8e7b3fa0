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
    Bilinear,
    Area,
}

impl Resample {
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

/// Source taps along one axis: for each output index, (i0, i1, weight of i1).
/// Half-pixel centres, `src = (dst + 0.5)·in/out − 0.5` clamped at 0, the upper tap clamped at
/// the last index; no antialiasing (what PyTorch's bilinear `align_corners=False` does).
pub fn axis_taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, (src - i0 as f64) as f32)
        })
        .collect()
}

/// Area weights along one axis: output cell `o` covers `[o·s, (o+1)·s)` in input pixel units
/// (`s = n_in/n_out`); input pixel `i` (covering `[i, i+1)`) gets the length of the overlap
/// divided by `s`, so each cell's weights sum to 1. Computed in f64, stored as f32.
pub fn area_weights(n_in: usize, n_out: usize) -> Vec<Vec<(usize, f32)>> {
    let s = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let (lo, hi) = (o as f64 * s, (o + 1) as f64 * s);
            let first = lo.floor() as usize;
            let last = ((hi.ceil() as usize).max(first + 1)).min(n_in);
            (first..last)
                .filter_map(|i| {
                    let overlap = (hi.min((i + 1) as f64) - lo.max(i as f64)).max(0.0);
                    (overlap > 0.0).then(|| (i, (overlap / s) as f32))
                })
                .collect()
        })
        .collect()
}

/// The taps `(input index, weight)` of every output index of one axis under `kernel`. Bilinear
/// keeps both taps even when they coincide (a clamped border), in the order and with the
/// weights `(1 − w, w)` of [`axis_taps`], so the separable sum below gives the same bits as the
/// direct two-tap formula of DESIGN §3.1.
pub fn axis_weights(kernel: Kernel, n_in: usize, n_out: usize) -> Vec<Vec<(usize, f32)>> {
    match kernel {
        Kernel::Bilinear => axis_taps(n_in, n_out).into_iter().map(|(i0, i1, w)| vec![(i0, 1.0 - w), (i1, w)]).collect(),
        Kernel::Area => area_weights(n_in, n_out),
    }
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

/// Checks a `[N, C, H, W]` map and a grid size before anything is allocated.
fn check_map(local: &Array, g: usize) -> Result<(usize, usize, usize, usize)> {
    if local.ndim() != 4 || g == 0 || local.shape[2] == 0 || local.shape[3] == 0 {
        return Err(Error::invalid(format!("resample needs a non-empty [N, C, H, W] map and G > 0, got {:?}", local.shape)));
    }
    Ok((local.shape[0], local.shape[1], local.shape[2], local.shape[3]))
}

/// Resizes one `h × w` plane (row-major `src`) to `G × G` with the per-axis weights `tx`
/// (G entries over the `w` columns) and `ty` (G entries over the `h` rows), handing every
/// output cell to `put(oy·G + ox, value)`. `rows` is `h·G` scratch. Along x first (every input
/// row to G columns), then along y; for bilinear each sum is exactly `a·(1 − w) + b·w`, the
/// arithmetic of DESIGN §3.1's two-tap formula.
#[inline]
fn resample_plane(
    src: &[f32],
    w: usize,
    tx: &[Vec<(usize, f32)>],
    ty: &[Vec<(usize, f32)>],
    rows: &mut [f32],
    mut put: impl FnMut(usize, f32),
) {
    let g = tx.len();
    for (y, out) in rows.chunks_exact_mut(g).enumerate() {
        let row = &src[y * w..(y + 1) * w];
        for (o, taps) in out.iter_mut().zip(tx) {
            *o = weighted_sum(taps, |x| row[x]);
        }
    }
    for (oy, taps) in ty.iter().enumerate() {
        for ox in 0..g {
            put(oy * g + ox, weighted_sum(taps, |y| rows[y * g + ox]));
        }
    }
}

/// Resizes `[N, C, H, W]` to `[N, C, G, G]` with `method` (see the module docs).
pub fn resample(local: &Array, g: usize, method: Resample) -> Result<Array> {
    let (n, c, h, w) = check_map(local, g)?;
    if h == g && w == g {
        // Every kernel is the identity at equal sizes.
        return Ok(local.clone());
    }
    // G comes from a flag or an encoder file: size the output before asking for it.
    let count = crate::data::limits::elements("resampled local map [N, C, G, G]", &[n, c, g, g])?;
    let mut out: Vec<f32> = crate::data::limits::try_zeroed("resampled local map", count)?;
    let ty = axis_weights(method.kernel(h, g), h, g);
    let tx = axis_weights(method.kernel(w, g), w, g);
    out.par_chunks_mut(g * g).enumerate().for_each(|(nc, dst)| {
        let src = &local.data[nc * h * w..(nc + 1) * h * w];
        let mut rows = vec![0.0f32; h * g];
        resample_plane(src, w, &tx, &ty, &mut rows, |cell, v| dst[cell] = v);
    });
    Array::new(vec![n, c, g, g], out)
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

/// `[C, P]` → `[P, C]` (row-major), sixteen channels at a time.
fn transpose(src: &[f32], c: usize, p: usize, dst: &mut [f32]) {
    for c0 in (0..c).step_by(16) {
        let c1 = (c0 + 16).min(c);
        for q in 0..p {
            for ch in c0..c1 {
                dst[q * c + ch] = src[ch * p + q];
            }
        }
    }
}

/// The images `idx` (all of them when `None`, in order) of `[N, C, H, W]` resized with `method`
/// straight into the cell-major layout `[n, G·G, C]` that the channel alignment multiplies:
/// the same numbers, bit for bit, as [`to_cells`] of [`resample`] of those images. Each image
/// is turned pixel-major once (`[H·W, C]`), then both passes run over contiguous channels
/// (vectorised), and nothing else is copied (the monitor prepares only its held-out images this
/// way on every observation). Indices must be in range (the caller checks them).
pub fn resample_cells(local: &Array, idx: Option<&[usize]>, g: usize, method: Resample) -> Result<Array> {
    let (n_all, c, h, w) = check_map(local, g)?;
    let n = idx.map_or(n_all, <[usize]>::len);
    let count = crate::data::limits::elements("resampled local map [N, G·G, C]", &[n, g, g, c])?;
    let mut out: Vec<f32> = crate::data::limits::try_zeroed("resampled local map", count)?;
    if count == 0 {
        return Array::new(vec![n, g * g, c], out);
    }
    let identity = h == g && w == g;
    let ty = axis_weights(method.kernel(h, g), h, g);
    let tx = axis_weights(method.kernel(w, g), w, g);
    let plane = h * w;
    out.par_chunks_mut(g * g * c).enumerate().for_each(|(i, dst)| {
        let image = idx.map_or(i, |idx| idx[i]);
        let src = &local.data[image * c * plane..(image + 1) * c * plane];
        if identity {
            transpose(src, c, plane, dst);
            return;
        }
        let mut pixels = vec![0f32; plane * c];
        transpose(src, c, plane, &mut pixels);
        // Along x (every input row to G columns) into [H, G, C], then along y into the output.
        let mut rows = vec![0f32; h * g * c];
        for (y, row) in rows.chunks_exact_mut(g * c).enumerate() {
            for (out, taps) in row.chunks_exact_mut(c).zip(&tx) {
                weighted_rows(taps, &pixels, |x| (y * w + x) * c, out);
            }
        }
        for (oy, taps) in ty.iter().enumerate() {
            for ox in 0..g {
                let out = &mut dst[(oy * g + ox) * c..(oy * g + ox + 1) * c];
                weighted_rows(taps, &rows, |y| (y * g + ox) * c, out);
            }
        }
    });
    Array::new(vec![n, g * g, c], out)
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
    fn two_tap_bilinear(local: &Array, g: usize) -> Vec<f32> {
        let (n, c, h, w) = (local.shape[0], local.shape[1], local.shape[2], local.shape[3]);
        let (ty, tx) = (axis_taps(h, g), axis_taps(w, g));
        let mut out = vec![0.0f32; n * c * g * g];
        for nc in 0..n * c {
            let src = &local.data[nc * h * w..(nc + 1) * h * w];
            for (oy, &(y0, y1, wy)) in ty.iter().enumerate() {
                for (ox, &(x0, x1, wx)) in tx.iter().enumerate() {
                    let top = src[y0 * w + x0] * (1.0 - wx) + src[y0 * w + x1] * wx;
                    let bot = src[y1 * w + x0] * (1.0 - wx) + src[y1 * w + x1] * wx;
                    out[nc * g * g + oy * g + ox] = top * (1.0 - wy) + bot * wy;
                }
            }
        }
        out
    }

    /// Exact area averages by supersampling: every input pixel is replicated into a g×g block,
    /// after which output cell (oy, ox) is the plain mean of the h×w block of sub-pixels
    /// starting at (oy·h, ox·w) — no fractional weights anywhere, so independent of
    /// `area_weights`. Computed in f64.
    fn supersampled_area(local: &Array, g: usize) -> Vec<f64> {
        let (n, c, h, w) = (local.shape[0], local.shape[1], local.shape[2], local.shape[3]);
        let mut out = vec![0.0f64; n * c * g * g];
        for nc in 0..n * c {
            let src = &local.data[nc * h * w..(nc + 1) * h * w];
            for oy in 0..g {
                for ox in 0..g {
                    let mut sum = 0.0f64;
                    for sy in oy * h..(oy + 1) * h {
                        for sx in ox * w..(ox + 1) * w {
                            sum += src[(sy / g) * w + sx / g] as f64;
                        }
                    }
                    out[nc * g * g + oy * g + ox] = sum / (h * w) as f64;
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
            assert_close(&got.data, &supersampled_area(&a, g), &format!("area {h}×{w} → {g}"));
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
            let want = two_tap_bilinear(&a, g);
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
    fn cells_in_one_pass_match_resample_then_transpose() {
        // Shrinking, growing, equal and non-square maps, every method, all images and a subset
        // with a repeat: the fused path gives the two-pass path's bits.
        for &(h, w) in &[(14, 14), (7, 7), (8, 8), (14, 6), (3, 11)] {
            let local = map(4, 5, h, w, (h * 31 + w) as u64);
            for method in Resample::ALL {
                let full = to_cells(&resample(&local, 8, method).unwrap()).unwrap();
                let fused = resample_cells(&local, None, 8, method).unwrap();
                assert_eq!(fused.shape, full.shape);
                assert!(fused.data.iter().zip(&full.data).all(|(a, b)| a.to_bits() == b.to_bits()), "{h}x{w} {method}");
                let idx = [2usize, 0, 2];
                let some = resample_cells(&local, Some(&idx), 8, method).unwrap();
                let per = full.data.len() / 4;
                let want: Vec<f32> = idx.iter().flat_map(|&i| full.data[i * per..(i + 1) * per].to_vec()).collect();
                assert_eq!(some.shape, vec![3, 64, 5]);
                assert!(some.data.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{h}x{w} {method} subset");
            }
        }
        assert!(resample_cells(&map(1, 2, 0, 3, 1), None, 8, Resample::Auto).is_err());
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
