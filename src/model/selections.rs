//! The per-voxel choices a fitted encoder makes (DESIGN §3.3), as plain host data: what scores,
//! pictures and the monitor consume.

use crate::data::Array;

/// Every voxel's layer distribution, image location and scale.
#[derive(Debug, Clone)]
pub struct Selections {
    /// `[V, L]` softmax over layers, rows sum to 1.
    pub layer_probs: Array,
    /// `[V, 2]` selected image location `(x, y)` in [-1, 1]² (x along width, y along height).
    pub space: Array,
    /// `[V]` scale in (0, 1): 0 = local patch token, 1 = global token.
    pub scale: Vec<f32>,
}

impl Selections {
    /// Number of voxels V.
    pub fn n_voxels(&self) -> usize {
        self.scale.len()
    }
    /// Number of layers L.
    pub fn n_layers(&self) -> usize {
        self.layer_probs.shape[1]
    }
}
