//! The two interpolation rules the encoding model applies to feature maps (DESIGN §3.1 grid
//! resampling and §3.4 point sampling), used to plant voxels that point-sample the G×G maps
//! (`--prf-size 0`: the model can represent the planted answer without approximation error),
//! and the box window of voxels with a receptive field, read at each layer's own resolution.

use crate::data::Array;
use crate::error::{Error, Result};

/// Source taps of one output index along one axis for half-pixel-centred bilinear resizing
/// (DESIGN §3.1): `(lower index, upper index, weight of the upper index)`.
fn resize_taps(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|dst| {
            // Computed in f64 so the tap positions do not depend on f32 rounding of the ratio.
            let src = ((dst as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            let frac = if i1 == i0 {
                0.0
            } else {
                (src - i0 as f64) as f32
            };
            (i0, i1, frac)
        })
        .collect()
}

/// Resizes one `[C, H, W]` map to `[C, G, G]` with bilinear interpolation, half-pixel centres,
/// no antialiasing (DESIGN §3.1, the convention of `F.interpolate(..., align_corners=False)`).
pub fn resize_map(src: &[f32], c: usize, h: usize, w: usize, g: usize, dst: &mut [f32]) {
    assert_eq!(src.len(), c * h * w, "resize_map: source length");
    assert_eq!(dst.len(), c * g * g, "resize_map: destination length");
    let ty = resize_taps(h, g);
    let tx = resize_taps(w, g);
    for ch in 0..c {
        let s = &src[ch * h * w..(ch + 1) * h * w];
        let d = &mut dst[ch * g * g..(ch + 1) * g * g];
        for (oy, &(y0, y1, fy)) in ty.iter().enumerate() {
            let r0 = &s[y0 * w..(y0 + 1) * w];
            let r1 = &s[y1 * w..(y1 + 1) * w];
            for (ox, &(x0, x1, fx)) in tx.iter().enumerate() {
                let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
                d[oy * g + ox] = top + (bottom - top) * fy;
            }
        }
    }
}

/// Resizes a `[N, C, H, W]` layer to `[N, C, G, G]` (DESIGN §3.1). A map that is already G×G is
/// copied unchanged, since the half-pixel rule is the identity there.
pub fn resize_layer(local: &Array, g: usize) -> Result<Array> {
    if local.ndim() != 4 {
        return Err(Error::invalid(format!(
            "a local feature map must be [N, C, H, W], got shape {:?}",
            local.shape
        )));
    }
    if g == 0 {
        return Err(Error::invalid("grid size must be at least 1"));
    }
    let (n, c, h, w) = (
        local.shape[0],
        local.shape[1],
        local.shape[2],
        local.shape[3],
    );
    if h == 0 || w == 0 {
        return Err(Error::invalid(format!(
            "local feature map has an empty grid {h}x{w}"
        )));
    }
    if h == g && w == g {
        return Ok(local.clone());
    }
    use rayon::prelude::*;
    let mut out = vec![0.0f32; n * c * g * g];
    out.par_chunks_mut(c * g * g)
        .zip(local.data.par_chunks(c * h * w))
        .for_each(|(d, s)| resize_map(s, c, h, w, g, d));
    Array::new(vec![n, c, g, g], out)
}

/// The four taps `(flat index into a G_h×G_w plane, weight)` of bilinear sampling at `(x, y)` in
/// [-1, 1]² with the half-pixel convention `ix = ((x + 1)·W − 1)/2` and zero padding (DESIGN §3.4,
/// `grid_sample(..., align_corners=False, padding_mode="zeros")`). Taps that fall outside the
/// map are returned with weight 0 and index 0, so callers can sum all four unconditionally.
pub fn bilinear_taps(x: f32, y: f32, h: usize, w: usize) -> [(usize, f32); 4] {
    let ix = ((x as f64 + 1.0) * w as f64 - 1.0) / 2.0;
    let iy = ((y as f64 + 1.0) * h as f64 - 1.0) / 2.0;
    let x0 = ix.floor();
    let y0 = iy.floor();
    let fx = ix - x0;
    let fy = iy - y0;
    let corners = [
        (x0, y0, (1.0 - fx) * (1.0 - fy)),
        (x0 + 1.0, y0, fx * (1.0 - fy)),
        (x0, y0 + 1.0, (1.0 - fx) * fy),
        (x0 + 1.0, y0 + 1.0, fx * fy),
    ];
    let mut taps = [(0usize, 0.0f32); 4];
    for (t, &(cx, cy, wt)) in taps.iter_mut().zip(corners.iter()) {
        if cx >= 0.0 && cy >= 0.0 && cx < w as f64 && cy < h as f64 {
            *t = (cy as usize * w + cx as usize, wt as f32);
        }
    }
    taps
}

/// Samples every channel of one `[C, H, W]` map at `(x, y)` (DESIGN §3.4), writing `C` values.
pub fn bilinear_sample(map: &[f32], c: usize, h: usize, w: usize, x: f32, y: f32, out: &mut [f32]) {
    assert_eq!(map.len(), c * h * w, "bilinear_sample: map length");
    assert_eq!(out.len(), c, "bilinear_sample: output length");
    let taps = bilinear_taps(x, y, h, w);
    let plane = h * w;
    for (ch, o) in out.iter_mut().enumerate() {
        let p = &map[ch * plane..(ch + 1) * plane];
        *o = taps.iter().map(|&(i, wt)| wt * p[i]).sum();
    }
}

/// Weights `(pixel, weight)` of a box window along one axis of `n` pixels: the window has side
/// `size` (a fraction of the image) and is centred at `centre` in [-1, 1] (the selector's
/// convention); pixel `i` covers `[i/n, (i+1)/n]` of the image and weighs the part of it inside
/// the window divided by the whole window's side, so a window partly outside the image reads
/// zeros there (the model's zero padding). Computed in f64; `size` must be positive.
pub fn box_window(centre: f32, size: f64, n: usize) -> Vec<(usize, f64)> {
    let c = (centre as f64 + 1.0) / 2.0;
    let (lo, hi) = (c - size / 2.0, c + size / 2.0);
    let first = ((lo * n as f64).floor().max(0.0)) as usize;
    let last = (((hi * n as f64).ceil()).min(n as f64)).max(0.0) as usize;
    (first..last)
        .filter_map(|i| {
            let (a, b) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
            let overlap = hi.min(b) - lo.max(a);
            (overlap > 0.0).then(|| (i, overlap / size))
        })
        .collect()
}

/// `w · (window average of a [C, H, W] map)`: every channel averaged over the separable window
/// `wy × wx` (from [`box_window`]) at the map's own resolution, then read out by `w` (length C).
/// In f64 with a fixed summation order.
pub fn window_dot(map: &[f32], c: usize, h: usize, w: usize, wy: &[(usize, f64)], wx: &[(usize, f64)], readout: &[f32]) -> f64 {
    debug_assert_eq!(map.len(), c * h * w);
    let mut y = 0.0f64;
    for (ch, &k) in readout.iter().enumerate().take(c) {
        let plane = &map[ch * h * w..(ch + 1) * h * w];
        let mut acc = 0.0f64;
        for &(py, ay) in wy {
            let row = &plane[py * w..(py + 1) * w];
            let mut r = 0.0f64;
            for &(px, ax) in wx {
                r += ax * row[px] as f64;
            }
            acc += ay * r;
        }
        y += k as f64 * acc;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_averages_pixel_pairs() {
        // 4 -> 2: source = 2·dst + 0.5, the mean of pixels 2·dst and 2·dst + 1.
        let src: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut dst = vec![0.0; 4];
        resize_map(&src, 1, 4, 4, 2, &mut dst);
        let expect = |r: usize, c: usize| {
            let at = |y: usize, x: usize| src[y * 4 + x];
            (at(2 * r, 2 * c)
                + at(2 * r, 2 * c + 1)
                + at(2 * r + 1, 2 * c)
                + at(2 * r + 1, 2 * c + 1))
                / 4.0
        };
        for r in 0..2 {
            for c in 0..2 {
                assert!((dst[r * 2 + c] - expect(r, c)).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn upsampling_clamps_both_ends() {
        // 2 -> 4 (1-D): sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (upper tap clamped to 1).
        let src = vec![0.0f32, 1.0];
        let mut dst = vec![0.0; 16];
        let src2: Vec<f32> = [src.clone(), src.clone()].concat();
        resize_map(&src2, 1, 2, 2, 4, &mut dst);
        let row: Vec<f32> = dst[0..4].to_vec();
        let expect = [0.0, 0.25, 0.75, 1.0];
        for (a, b) in row.iter().zip(expect.iter()) {
            assert!((a - b).abs() < 1e-6, "{row:?}");
        }
    }

    #[test]
    fn pixel_centres_and_zero_padding() {
        // Sampling at a pixel centre returns that pixel; at the border corner, 1/4 of it.
        let g = 4;
        let map: Vec<f32> = (0..g * g).map(|v| v as f32 + 1.0).collect();
        let mut out = [0.0f32];
        for py in 0..g {
            for px in 0..g {
                let x = (2.0 * px as f32 + 1.0) / g as f32 - 1.0;
                let y = (2.0 * py as f32 + 1.0) / g as f32 - 1.0;
                bilinear_sample(&map, 1, g, g, x, y, &mut out);
                assert!((out[0] - map[py * g + px]).abs() < 1e-5);
            }
        }
        bilinear_sample(&map, 1, g, g, -1.0, -1.0, &mut out);
        assert!((out[0] - map[0] / 4.0).abs() < 1e-6);
        bilinear_sample(&map, 1, g, g, 1.0, 1.0, &mut out);
        assert!((out[0] - map[g * g - 1] / 4.0).abs() < 1e-6);
    }

    #[test]
    fn box_window_hand_worked() {
        // A quarter of the image centred at the centre of an 8-pixel axis: pixels 3 and 4, half
        // the window each.
        assert_eq!(box_window(0.0, 0.25, 8), vec![(3, 0.5), (4, 0.5)]);
        // Centred on pixel 0's centre (x = −1 + 1/8) with one pixel's width: pixel 0 alone.
        let w = box_window(-1.0 + 1.0 / 8.0, 1.0 / 8.0, 8);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].0, 0);
        assert!((w[0].1 - 1.0).abs() < 1e-12);
        // At the border half the window is outside: the weights sum to 1/2 (zero padding).
        let w = box_window(-1.0, 0.5, 10);
        assert!((w.iter().map(|p| p.1).sum::<f64>() - 0.5).abs() < 1e-12, "{w:?}");
        assert_eq!(w.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        // A window smaller than a pixel inside one pixel reads that pixel with weight 1.
        let w = box_window(0.1, 0.01, 4);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].0, 2);
        assert!((w[0].1 - 1.0).abs() < 1e-12, "{w:?}");
    }
}
