//! Channel map: voxels grouped by the direction of their channel readout `W[v]` (which mix of
//! the network's bottleneck channels predicts them), one distinct colour per group. Voxels that
//! read the same features share a colour wherever they sit on the cortex; the grouping is the
//! bounded, seeded spherical k-means of [`crate::cluster`].

use std::path::Path;

use crate::cluster::{spherical_kmeans, Clustering, DEFAULT_MAX_ITER};
use crate::data::Brain;
use crate::error::{Error, Result};

use super::brain_map::{self, BrainMap, Geometry, Legend};
use super::colormap;
use super::layer_map::SIZE;

/// Groups the rows of the readout `weight` (`[V, D]` row-major) into `k` channel groups.
pub fn channel_groups(weight: &[f32], d: usize, k: usize, seed: u64) -> Result<Clustering> {
    if d == 0 || weight.len() % d != 0 {
        return Err(Error::mismatch(format!("readout of {} values is not a [V, {d}] matrix", weight.len())));
    }
    spherical_kmeans(weight, weight.len() / d, d, k, seed, DEFAULT_MAX_ITER)
}

/// The channel map of a grouping on `brain`.
pub fn channel_panel(brain: &Brain, groups: &Clustering, title: &str) -> Result<BrainMap> {
    let v = brain.roi.len();
    if groups.labels.len() != v {
        return Err(Error::mismatch(format!("{} grouped readouts for the brain's {v} voxels", groups.labels.len())));
    }
    let k = groups.k;
    let colors = groups.labels.iter().map(|&g| colormap::distinct(g, k)).collect();
    let items = (0..k).map(|g| (colormap::distinct(g, k), format!("{:>2}: {} vox", g + 1, groups.sizes[g]))).collect();
    Ok(BrainMap {
        title: title.to_string(),
        colors,
        order: (0..v).collect(),
        legend: Legend::Swatches { title: format!("{k} readout groups"), items },
    })
}

/// Writes the channel map to `path` (800×600 PNG).
pub fn channel_map(path: &Path, brain: &Brain, groups: &Clustering, title: &str) -> Result<()> {
    let m = channel_panel(brain, groups, title)?;
    brain_map::save(path, SIZE, brain, &Geometry::of(brain)?, &m)
}
