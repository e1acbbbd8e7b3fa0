//! The synthetic cortical sheet: ROIs as contiguous patches of a 2-D sheet, voxel positions, and
//! a retinotopic map of image location that varies smoothly across it.
//!
//! The sheet is [0, 100]² (mm-like units). Five vertical strips of width 20 hold the five
//! hierarchy levels left to right (V1, V2, V3, hV4, high-level); the high-level strip is split
//! along y into FFA, PPA and EBA. Neighbouring strips mirror their retinotopy, as adjacent
//! visual areas do, so image location is continuous across every strip border; this matters
//! because the model's selectors are smooth functions of position (DESIGN §3.3).

use crate::data::Array;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// ROI names in the order of the brain file's ROI list.
pub const ROI_NAMES: [&str; 7] = ["V1", "V2", "V3", "hV4", "FFA", "PPA", "EBA"];
/// Hierarchy level of each ROI (DESIGN §2 defaults for these names).
pub const ROI_LEVELS: [i32; 7] = [0, 1, 2, 3, 4, 4, 4];
/// Number of hierarchy levels, i.e. of strips on the sheet.
pub const N_LEVELS: usize = 5;

const SHEET: f64 = 100.0;
const STRIP: f64 = SHEET / N_LEVELS as f64;
/// Image locations stay inside ±0.75, away from the image border, where the model's zero
/// padding (DESIGN §3.4) would dim the planted signal.
const EXTENT: f64 = 0.75;
/// Peak height of the sheet's gentle curvature (the third coordinate).
const CURVE: f64 = 5.0;

/// The rectangle `(x0, x1, y0, y1)` of ROI `r` on the sheet.
pub fn roi_rect(r: usize) -> (f64, f64, f64, f64) {
    let level = ROI_LEVELS[r] as usize;
    let (x0, x1) = (level as f64 * STRIP, (level + 1) as f64 * STRIP);
    if level + 1 < N_LEVELS {
        (x0, x1, 0.0, SHEET)
    } else {
        let k = r - (ROI_NAMES.len() - 3);
        let h = SHEET / 3.0;
        (x0, x1, k as f64 * h, (k + 1) as f64 * h)
    }
}

/// Image location `(x, y)` in [-1, 1]² (x along width, y along height) that the sheet point
/// `(sx, sy)` in ROI level `level` looks at.
pub fn retinotopy(level: usize, sx: f64, sy: f64) -> (f64, f64) {
    let x = EXTENT * (2.0 * sy / SHEET - 1.0);
    let mut t = ((sx - level as f64 * STRIP) / STRIP).clamp(0.0, 1.0);
    if level % 2 == 1 {
        t = 1.0 - t;
    }
    let y = EXTENT * (2.0 * t - 1.0);
    (x, y)
}

/// Voxel positions and their ROI and retinotopic location.
#[derive(Debug, Clone)]
pub struct Sheet {
    /// `[V, 3]` (sheet x, sheet y, curved height).
    pub coords: Array,
    /// `[V, 2]` flatmap positions (sheet x, sheet y).
    pub flat: Array,
    /// `[V]` ROI index into `ROI_NAMES`.
    pub roi: Vec<i32>,
    /// `[V, 2]` planted image location in [-1, 1]².
    pub space: Array,
}

/// Splits `n` voxels over the ROIs in proportion to their area (largest remainder), with at
/// least one voxel per ROI so every ROI exists in the brain file.
fn voxels_per_roi(n: usize) -> Vec<usize> {
    let areas: Vec<f64> = (0..ROI_NAMES.len())
        .map(|r| {
            let (x0, x1, y0, y1) = roi_rect(r);
            (x1 - x0) * (y1 - y0)
        })
        .collect();
    let total: f64 = areas.iter().sum();
    let raw: Vec<f64> = areas.iter().map(|a| a / total * n as f64).collect();
    let mut counts: Vec<usize> = raw.iter().map(|r| r.floor() as usize).collect();
    let mut order: Vec<usize> = (0..raw.len()).collect();
    // Ties broken by index so the split is a pure function of n.
    order.sort_by(|&a, &b| {
        let fa = raw[a] - raw[a].floor();
        let fb = raw[b] - raw[b].floor();
        fb.partial_cmp(&fa)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    let mut left = n - counts.iter().sum::<usize>();
    for &r in order.iter().cycle() {
        if left == 0 {
            break;
        }
        counts[r] += 1;
        left -= 1;
    }
    while let Some(empty) = counts.iter().position(|&c| c == 0) {
        let donor = (0..counts.len())
            .max_by_key(|&r| (counts[r], std::cmp::Reverse(r)))
            .unwrap_or(0);
        counts[donor] -= 1;
        counts[empty] += 1;
    }
    counts
}

/// Lays out `n_voxels` voxels on the sheet: a jittered grid inside each ROI, so coverage is even
/// without the regularity of a lattice.
pub fn layout(n_voxels: usize, seed: u64) -> Result<Sheet> {
    if n_voxels < ROI_NAMES.len() {
        return Err(Error::invalid(format!(
            "need at least {} voxels (one per ROI), got {n_voxels}",
            ROI_NAMES.len()
        )));
    }
    let mut rng = Rng::derive(seed, "synth.sheet");
    let counts = voxels_per_roi(n_voxels);
    let mut coords = Vec::with_capacity(n_voxels * 3);
    let mut flat = Vec::with_capacity(n_voxels * 2);
    let mut space = Vec::with_capacity(n_voxels * 2);
    let mut roi = Vec::with_capacity(n_voxels);
    for (r, &count) in counts.iter().enumerate() {
        let (x0, x1, y0, y1) = roi_rect(r);
        let (w, h) = (x1 - x0, y1 - y0);
        let cols = ((count as f64 * w / h).sqrt().ceil() as usize).max(1);
        let rows = count.div_ceil(cols).max(1);
        // A random subset of the cells, so the grid's unused cells do not all sit in one corner.
        let mut cells = rng.permutation(rows * cols);
        cells.truncate(count);
        cells.sort_unstable();
        let level = ROI_LEVELS[r] as usize;
        for cell in cells {
            let (cy, cx) = (cell / cols, cell % cols);
            let sx = x0 + (cx as f64 + rng.uniform()) * w / cols as f64;
            let sy = y0 + (cy as f64 + rng.uniform()) * h / rows as f64;
            let z = CURVE * (std::f64::consts::PI * sx / SHEET).sin();
            coords.extend_from_slice(&[sx as f32, sy as f32, z as f32]);
            flat.extend_from_slice(&[sx as f32, sy as f32]);
            let (ix, iy) = retinotopy(level, sx, sy);
            space.extend_from_slice(&[ix as f32, iy as f32]);
            roi.push(r as i32);
        }
    }
    Ok(Sheet {
        coords: Array::new(vec![n_voxels, 3], coords)?,
        flat: Array::new(vec![n_voxels, 2], flat)?,
        roi,
        space: Array::new(vec![n_voxels, 2], space)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cover_every_roi_and_sum() {
        for n in [7, 8, 10, 100, 2000, 2001] {
            let c = voxels_per_roi(n);
            assert_eq!(c.iter().sum::<usize>(), n);
            assert!(c.iter().all(|&k| k >= 1), "{n}: {c:?}");
        }
    }

    #[test]
    fn retinotopy_is_continuous_across_strips() {
        for level in 0..N_LEVELS - 1 {
            let border = (level + 1) as f64 * STRIP;
            for sy in [0.0, 37.0, 100.0] {
                let a = retinotopy(level, border, sy);
                let b = retinotopy(level + 1, border, sy);
                assert!((a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn voxels_sit_inside_their_roi() {
        let s = layout(500, 3).unwrap();
        for v in 0..500 {
            let (x0, x1, y0, y1) = roi_rect(s.roi[v] as usize);
            let (x, y) = (s.flat.data[2 * v] as f64, s.flat.data[2 * v + 1] as f64);
            assert!(x >= x0 - 1e-4 && x <= x1 + 1e-4 && y >= y0 - 1e-4 && y <= y1 + 1e-4);
            assert!(s.space.data[2 * v].abs() <= 0.75 + 1e-6);
            assert!(s.space.data[2 * v + 1].abs() <= 0.75 + 1e-6);
        }
    }
}
