//! A minimal owned, row-major f32 array used at the library's boundaries (files, FFI, synth).
//! The model converts these to candle tensors; keeping host data plain keeps loaders and
//! generators free of any tensor backend.

use crate::error::{Error, Result};

/// Index of the first non-finite value of `data`, if any. Every feature set is checked whole
/// before use (the monitor checks each checkpoint's), so this runs over gigabytes: blocks are
/// checked in parallel with a branch-free test the compiler vectorises, and only a block that
/// fails is searched for the position.
pub fn first_non_finite(data: &[f32]) -> Option<usize> {
    use rayon::prelude::*;
    const BLOCK: usize = 1 << 16;
    // An f32 is finite iff its exponent bits are not all ones.
    let all_finite = |b: &[f32]| b.iter().fold(true, |ok, v| ok & (v.to_bits() & 0x7f80_0000 != 0x7f80_0000));
    let block = data.par_chunks(BLOCK).position_first(|b| !all_finite(b))?;
    let start = block * BLOCK;
    data[start..].iter().position(|v| !v.is_finite()).map(|i| start + i)
}

/// Row-major multi-index of the flat index `flat` into `shape`, for error messages.
pub fn unravel(shape: &[usize], mut flat: usize) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[k] = flat % d;
            flat /= d;
        }
    }
    idx
}

/// A dense row-major f32 array: the library's plain host tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The size of each dimension.
    pub shape: Vec<usize>,
    /// The values, row-major (the last index varies fastest).
    pub data: Vec<f32>,
}

impl Array {
    /// An array of `shape` holding `data`; an error when the sizes disagree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::shape("array", format!(
                "array of shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }
    /// An array of zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Self { shape, data: vec![0.0; n] }
    }
    /// Number of values.
    pub fn numel(&self) -> usize {
        self.data.len()
    }
    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }
    /// Index of the first non-finite value, if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        first_non_finite(&self.data)
    }
    /// Row-major multi-index of a flat index, for error messages.
    pub fn unravel(&self, flat: usize) -> Vec<usize> {
        unravel(&self.shape, flat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unravel_is_row_major() {
        assert_eq!(unravel(&[4, 8, 32, 32], 5003), vec![0, 4, 28, 11]);
        assert_eq!(unravel(&[2, 3], 5), vec![1, 2]);
        assert_eq!(unravel(&[2, 3], 0), vec![0, 0]);
        let a = Array::zeros(vec![2, 3, 4]);
        assert_eq!(a.unravel(23), vec![1, 2, 3]);
    }

    #[test]
    fn first_non_finite_finds_the_first_across_blocks() {
        let mut data = vec![1.0f32; 3 * (1 << 16) + 17];
        assert_eq!(first_non_finite(&data), None);
        assert_eq!(first_non_finite(&[]), None);
        // Two bad values in different blocks, the later one written first: the first wins.
        data[2 * (1 << 16) + 5] = f32::INFINITY;
        data[(1 << 16) + 3] = f32::NAN;
        assert_eq!(first_non_finite(&data), Some((1 << 16) + 3));
        data[0] = f32::NEG_INFINITY;
        assert_eq!(first_non_finite(&data), Some(0));
        // Largest finite values and subnormals are finite.
        assert_eq!(first_non_finite(&[f32::MAX, f32::MIN, f32::MIN_POSITIVE / 2.0, -0.0]), None);
        // The tail after the last full block is checked too.
        let mut tail = vec![0.5f32; (1 << 16) + 2];
        tail[(1 << 16) + 1] = f32::NAN;
        assert_eq!(first_non_finite(&tail), Some((1 << 16) + 1));
    }
}
