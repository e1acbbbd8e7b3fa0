//! Scale map: each voxel coloured by its scale `s_v`, from 0 (reads the local patch tokens at
//! one image location) to 1 (reads the global token, a summary of the whole image).

use std::path::Path;

use crate::data::Brain;
use crate::error::Result;
use crate::model::Selections;

use super::brain_map::{self, BrainMap, Geometry, Legend};
use super::colormap;
use super::layer_map::{check_selections, SIZE};

/// The scale map of `sel` on `brain`.
pub fn scale_panel(brain: &Brain, sel: &Selections, title: &str) -> Result<BrainMap> {
    check_selections(brain, sel)?;
    let colors = sel.scale.iter().map(|&s| colormap::sequential(s as f64)).collect();
    let ticks = vec![(0.0, "0  local".to_string()), (0.5, "0.5".to_string()), (1.0, "1  global".to_string())];
    Ok(BrainMap {
        title: title.to_string(),
        colors,
        order: (0..brain.roi.len()).collect(),
        legend: Legend::Bar { title: "scale".into(), map: colormap::sequential, ticks, marks: vec![], swatches: vec![], entropy_key: false },
    })
}

/// Writes the scale map to `path` (800×600 PNG).
pub fn scale_map(path: &Path, brain: &Brain, sel: &Selections, title: &str) -> Result<()> {
    let m = scale_panel(brain, sel, title)?;
    brain_map::save(path, SIZE, brain, &Geometry::of(brain)?, &m)
}
