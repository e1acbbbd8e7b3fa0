//! Layer map (DESIGN §7): each voxel coloured by the depth `d_v` of the layer it reads from
//! (blue = first layer, white = middle, red = last), darkened in proportion to its selection
//! entropy `e_v`, so uncertain choices recede. Confident voxels are drawn last, on top.

use std::path::Path;

use crate::data::Brain;
use crate::error::{Error, Result};
use crate::model::Selections;
use crate::scores::hierarchy;

use super::brain_map::{self, BrainMap, Geometry, Legend, UNCERTAIN_DARKEN};
use super::colormap;

/// Default size of a single map picture.
pub const SIZE: (usize, usize) = (800, 600);

/// Checks that the selections describe the brain's voxels.
pub fn check_selections(brain: &Brain, sel: &Selections) -> Result<()> {
    let v = brain.roi.len();
    let l = sel.n_layers();
    if sel.layer_probs.shape != [v, l] || sel.space.shape != [v, 2] || sel.scale.len() != v {
        return Err(Error::mismatch(format!(
            "selections (layer {:?}, space {:?}, scale [{}]) do not match the brain's {v} voxels",
            sel.layer_probs.shape,
            sel.space.shape,
            sel.scale.len()
        )));
    }
    Ok(())
}

/// The layer map of `sel` on `brain`.
pub fn layer_panel(brain: &Brain, sel: &Selections, title: &str) -> Result<BrainMap> {
    check_selections(brain, sel)?;
    let depth = hierarchy::voxel_depth(sel);
    let entropy = hierarchy::selection_entropy(sel);
    let colors = depth
        .iter()
        .zip(&entropy)
        .map(|(&d, &e)| colormap::darken(colormap::diverging(d), UNCERTAIN_DARKEN * e))
        .collect();
    let mut order: Vec<usize> = (0..depth.len()).collect();
    order.sort_by(|&i, &j| entropy[j].total_cmp(&entropy[i]));
    let last = sel.n_layers().saturating_sub(1);
    let ticks = vec![(0.0, "0  layer 0".to_string()), (0.5, "0.5".to_string()), (1.0, format!("1  layer {last}"))];
    Ok(BrainMap {
        title: title.to_string(),
        colors,
        order,
        legend: Legend::Bar {
            title: "layer depth".into(),
            map: colormap::diverging,
            ticks,
            marks: vec![],
            swatches: vec![],
            entropy_key: true,
        },
    })
}

/// Writes the layer map of `sel` on `brain` to `path` (800×600 PNG).
pub fn layer_map(path: &Path, brain: &Brain, sel: &Selections, title: &str) -> Result<()> {
    let m = layer_panel(brain, sel, title)?;
    brain_map::save(path, SIZE, brain, &Geometry::of(brain)?, &m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Array;

    #[test]
    fn mismatched_selections_rejected() {
        let brain = Brain {
            responses: Array::zeros(vec![2, 3]).into(),
            coords: Array::zeros(vec![3, 3]),
            roi: vec![0, 0, -1],
            noise_ceiling: None,
            flat: None,
            hemisphere: None,
            roi_names: vec!["V1".into()],
            roi_levels: vec![0],
            stimulus_ids: None,
            subject: None,
        };
        let sel = Selections { layer_probs: Array::zeros(vec![2, 4]), space: Array::zeros(vec![2, 2]), scale: vec![0.5; 2] };
        let dir = std::env::temp_dir().join("factortopy-never-written.png");
        assert!(layer_map(&dir, &brain, &sel, "x").is_err());
    }
}
