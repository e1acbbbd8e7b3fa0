//! Space map: each voxel coloured by the image location `(x_v, y_v)` it reads from, on a 2-D
//! colour wheel (hue = direction from the image centre, saturation = distance from it), with the
//! wheel as legend. Retinotopy shows as hue sweeping smoothly across early visual cortex.

use std::path::Path;

use crate::data::Brain;
use crate::error::Result;
use crate::model::Selections;

use super::brain_map::{self, BrainMap, Geometry, Legend};
use super::colormap;
use super::layer_map::{check_selections, SIZE};

/// The space map of `sel` on `brain`.
pub fn space_panel(brain: &Brain, sel: &Selections, title: &str) -> Result<BrainMap> {
    check_selections(brain, sel)?;
    let colors = sel.space.data.chunks(2).map(|p| colormap::wheel(p[0] as f64, p[1] as f64)).collect();
    Ok(BrainMap { title: title.to_string(), colors, order: (0..brain.roi.len()).collect(), legend: Legend::Wheel })
}

/// Writes the space map to `path` (800×600 PNG).
pub fn space_map(path: &Path, brain: &Brain, sel: &Selections, title: &str) -> Result<()> {
    let m = space_panel(brain, sel, title)?;
    brain_map::save(path, SIZE, brain, &Geometry::of(brain)?, &m)
}

/// Reads a space map back: for each voxel in `voxels`, the angle (degrees, in [0, 180]) between
/// the direction its pixel's hue stands for and the direction of `reference` `[V, 2]` (an image
/// location in the selector's convention), 180 for a pixel that is off the colour wheel. `px`
/// are the voxel positions the map was drawn at ([`super::brain_map::Placement`]).
pub fn hue_errors(c: &super::Canvas, px: &[[f64; 2]], reference: &[f32], voxels: &[usize]) -> Vec<f64> {
    voxels
        .iter()
        .map(|&i| {
            let (x, y) = (reference[2 * i] as f64, reference[2 * i + 1] as f64);
            let pixel = c.get(px[i][0].floor() as i64, px[i][1].floor() as i64);
            match pixel.and_then(colormap::wheel_inverse) {
                Some((angle, _)) => {
                    let want = (-y).atan2(x).to_degrees();
                    ((angle - want + 540.0).rem_euclid(360.0) - 180.0).abs()
                }
                None => 180.0,
            }
        })
        .collect()
}
