//! Grid resampling (DESIGN §3.1): every layer's local map is resized once to G×G so that all
//! layers share one sampling grid.

use crate::data::Array;
use crate::error::{Error, Result};
use rayon::prelude::*;

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

/// Resizes `[N, C, H, W]` to `[N, C, G, G]`.
pub fn resample(local: &Array, g: usize) -> Result<Array> {
    if local.ndim() != 4 || g == 0 {
        return Err(Error::invalid(format!("resample needs a [N, C, H, W] map and G > 0, got {:?}", local.shape)));
    }
    let (n, c, h, w) = (local.shape[0], local.shape[1], local.shape[2], local.shape[3]);
    if h == g && w == g {
        return Ok(local.clone());
    }
    // G comes from a flag or an encoder file: size the output before asking for it.
    let count = crate::data::limits::elements("resampled local map [N, C, G, G]", &[n, c, g, g])?;
    let mut out: Vec<f32> = crate::data::limits::try_zeroed("resampled local map", count)?;
    let ty = axis_taps(h, g);
    let tx = axis_taps(w, g);
    out.par_chunks_mut(g * g).enumerate().for_each(|(nc, dst)| {
        let src = &local.data[nc * h * w..(nc + 1) * h * w];
        for (oy, &(y0, y1, wy)) in ty.iter().enumerate() {
            for (ox, &(x0, x1, wx)) in tx.iter().enumerate() {
                let top = src[y0 * w + x0] * (1.0 - wx) + src[y0 * w + x1] * wx;
                let bot = src[y1 * w + x0] * (1.0 - wx) + src[y1 * w + x1] * wx;
                dst[oy * g + ox] = top * (1.0 - wy) + bot * wy;
            }
        }
    });
    Array::new(vec![n, c, g, g], out)
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
        let r = resample(&a, 4).unwrap();
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
        let r = resample(&a, 2).unwrap();
        assert_eq!(r.data, vec![2.5, 4.5, 10.5, 12.5]);
        let two = Array::new(vec![1, 2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(to_cells(&two).unwrap().data, vec![1.0, 3.0, 2.0, 4.0]);
    }
}
