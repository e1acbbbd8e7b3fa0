//! Voxels grouped by the cells their bilinear taps read. All layers share the grid, so a
//! voxel's four taps are the same cells in every layer, and voxels with the same four cells
//! share the right-hand sides of their products: each group is one matrix product per cell.
//! Both dense readouts (the fixed one for predictions, the blocked one for training) group here.

use crate::model::readout::{taps, Taps};
use rayon::prelude::*;

/// Voxels per work item of [`TapTable::update`].
const TAP_CHUNK: usize = 64;

/// Bilinear taps of every voxel, recomputed when the selectors change (every training step).
pub struct TapTable {
    /// One entry per voxel.
    pub taps: Vec<Taps>,
}

impl TapTable {
    /// A table for `v` voxels (every voxel at the centre of a 1×1 grid until the first update).
    pub fn new(v: usize) -> Self {
        Self { taps: vec![taps(0.0, 0.0, 1); v] }
    }

    /// From the selector outputs `sel` `[V, sw]` (`x, y, ...`) on a `g × g` grid.
    pub fn update(&mut self, sel: &[f32], sw: usize, g: usize) {
        self.taps.par_chunks_mut(TAP_CHUNK).enumerate().for_each(|(ci, t)| {
            for (j, tap) in t.iter_mut().enumerate() {
                let v = ci * TAP_CHUNK + j;
                *tap = taps(sel[v * sw], sel[v * sw + 1], g);
            }
        });
    }
}

/// Voxels (consecutive rows of the sorted order) whose taps are the same cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// First sorted row of the block.
    pub first: usize,
    /// Rows in the block.
    pub len: usize,
    /// The four tap cells (`OUTSIDE` for zero padding), in the order of `Taps::idx`.
    pub cells: [usize; 4],
}

/// Reused buffers of [`Grouping::group`].
#[derive(Default)]
pub struct Grouping {
    keys: Vec<([usize; 4], usize)>,
    /// Sorted row → voxel.
    pub order: Vec<usize>,
    /// Voxel → sorted row.
    pub rank: Vec<usize>,
    /// The blocks, in sorted order.
    pub blocks: Vec<Block>,
}

impl Grouping {
    /// Groups the voxels by their tap cells: blocks in the order of their cells, voxels in
    /// index order within a block (deterministic), blocks longer than `rows` split so that the
    /// work spreads over threads (at initialisation every voxel sits at the image centre). Only
    /// the first call allocates.
    pub fn group(&mut self, taps: &[Taps], rows: usize) {
        self.keys.clear();
        self.keys.extend(taps.iter().enumerate().map(|(v, t)| (t.idx, v)));
        self.keys.sort_unstable();
        self.order.clear();
        self.blocks.clear();
        let mut start = 0;
        while start < self.keys.len() {
            let cells = self.keys[start].0;
            let end = start + self.keys[start..].iter().take_while(|k| k.0 == cells).count();
            for first in (start..end).step_by(rows.max(1)) {
                self.blocks.push(Block { first, len: rows.max(1).min(end - first), cells });
            }
            self.order.extend(self.keys[start..end].iter().map(|k| k.1));
            start = end;
        }
        self.rank.clear();
        self.rank.resize(self.order.len(), 0);
        for (r, &v) in self.order.iter().enumerate() {
            self.rank[v] = r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::readout::OUTSIDE;

    #[test]
    fn groups_by_cells_in_a_fixed_order_and_splits_long_groups() {
        // Seven voxels: five at one position (split 2 + 2 + 1), one elsewhere, one outside.
        let at = [(0.1, 0.1), (0.9, -0.9), (0.1, 0.1), (0.1, 0.1), (5.0, 5.0), (0.1, 0.1), (0.1, 0.1)];
        let t: Vec<_> = at.iter().map(|&(x, y)| taps(x, y, 4)).collect();
        let mut g = Grouping::default();
        g.group(&t, 2);
        let mut seen: Vec<usize> = g.order.clone();
        seen.sort();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        let mut covered = 0;
        for (i, b) in g.blocks.iter().enumerate() {
            assert_eq!(b.first, covered);
            assert!(b.len >= 1 && b.len <= 2);
            for r in b.first..b.first + b.len {
                assert_eq!(t[g.order[r]].idx, b.cells);
            }
            if let Some(next) = g.blocks.get(i + 1) {
                assert!(b.cells <= next.cells);
            }
            covered += b.len;
        }
        assert_eq!(covered, 7);
        assert!(g.order.iter().enumerate().all(|(r, &v)| g.rank[v] == r));
        assert_eq!(g.blocks.iter().filter(|b| b.cells == t[0].idx).map(|b| b.len).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert!(g.blocks.iter().any(|b| b.cells == [OUTSIDE; 4]));
        // Regrouping the same taps gives the same result.
        let (order, blocks) = (g.order.clone(), g.blocks.clone());
        g.group(&t, 2);
        assert_eq!((g.order.clone(), g.blocks.clone()), (order, blocks));
    }
}
