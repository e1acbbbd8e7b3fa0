//! R² map: each voxel coloured by its held-out R² (how much of its response to unseen images the
//! encoder predicts). Where the brain gives a noise ceiling, the colour bar runs up to it and its
//! median is marked, so a voxel near the ceiling reads as "as good as the data allow".

use std::path::Path;

use crate::data::Brain;
use crate::error::{Error, Result};
use crate::scores::stats;

use super::brain_map::{self, BrainMap, Geometry, Legend};
use super::colormap;
use super::layer_map::SIZE;

/// Colour of voxels the encoder does not predict at all (R² ≤ 0).
pub const NO_FIT: [u8; 3] = [72, 72, 76];

/// Top of the colour bar: the 99th percentile of R² (or of the noise ceiling, when it is
/// higher), rounded up to a tenth, in [0.1, 1].
pub fn r2_top(r2: &[f32], nc: Option<&[f32]>) -> f64 {
    let q99 = |xs: &[f32]| -> f64 {
        let mut v: Vec<f64> = xs.iter().map(|&x| x as f64).filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * 0.99).round() as usize]
    };
    let top = q99(r2).max(nc.map_or(0.0, q99));
    ((top * 10.0 - 1e-9).ceil() / 10.0).clamp(0.1, 1.0)
}

/// The R² map of per-voxel held-out `r2` on `brain`.
pub fn r2_panel(brain: &Brain, r2: &[f32], title: &str) -> Result<BrainMap> {
    let v = brain.roi.len();
    if r2.len() != v {
        return Err(Error::mismatch(format!("{} R² values for the brain's {v} voxels", r2.len())));
    }
    let nc = brain.noise_ceiling.as_deref();
    let top = r2_top(r2, nc);
    let colors = r2
        .iter()
        .map(|&x| if x.is_finite() && x > 0.0 { colormap::sequential(x as f64 / top) } else { NO_FIT })
        .collect();
    let mut order: Vec<usize> = (0..v).collect();
    order.sort_by(|&a, &b| r2[a].total_cmp(&r2[b]));
    let ticks = vec![(0.0, "0".to_string()), (0.5, format!("{:.2}", top / 2.0)), (1.0, format!("{top:.1}"))];
    let marks = match nc {
        Some(nc) if !nc.is_empty() => {
            let m = stats::median(nc);
            vec![(m / top, format!("NC median {m:.2}"))]
        }
        _ => vec![],
    };
    let none = r2.iter().filter(|&&x| !(x.is_finite() && x > 0.0)).count();
    Ok(BrainMap {
        title: title.to_string(),
        colors,
        order,
        legend: Legend::Bar {
            title: "held-out R^2".into(),
            map: colormap::sequential,
            ticks,
            marks,
            swatches: vec![(NO_FIT, format!("R^2 <= 0 ({none})"))],
            entropy_key: false,
        },
    })
}

/// Writes the R² map to `path` (800×600 PNG).
pub fn r2_map(path: &Path, brain: &Brain, r2: &[f32], title: &str) -> Result<()> {
    let m = r2_panel(brain, r2, title)?;
    brain_map::save(path, SIZE, brain, &Geometry::of(brain)?, &m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_bar_top() {
        let r2: Vec<f32> = (0..100).map(|i| i as f32 / 200.0).collect(); // 0 … 0.495
        assert!((r2_top(&r2, None) - 0.5).abs() < 1e-12);
        assert!((r2_top(&r2, Some(&[0.7; 100])) - 0.7).abs() < 1e-12);
        assert!((r2_top(&[-1.0, 0.0], None) - 0.1).abs() < 1e-12);
        assert!((r2_top(&[3.0], None) - 1.0).abs() < 1e-12);
    }
}
