//! Data contracts of DESIGN §2: loaders, validation and writers for the features and brain files,
//! plain `.npy` arrays, and atomic file output.

pub mod array;
pub mod brain;
pub mod features;
pub mod io;
pub mod npy;
pub mod safetensors_io;

pub use array::Array;
pub use brain::Brain;
pub use features::{Features, LayerFeatures};
pub use io::{atomic_write, ensure_output_dir};
pub use npy::{npy_bytes, read_npy, read_npy_i64, write_npy};
pub use safetensors_io::{serialize_tensors, write_tensors, OutTensor, TensorFile};

use crate::error::{Error, Result};

/// Checks that a features file and a brain file describe the same probe images: the same count
/// and, when both carry `stimulus_ids`, the same ids in the same order.
pub fn check_pair(
    features: &Features,
    features_origin: &str,
    brain: &Brain,
    brain_origin: &str,
) -> Result<()> {
    let (nf, nb) = (features.n_images(), brain.n_images());
    if nf != nb {
        return Err(Error::mismatch(format!(
            "{features_origin} has {nf} images but {brain_origin} has {nb}"
        )));
    }
    if let (Some(a), Some(b)) = (&features.stimulus_ids, &brain.stimulus_ids) {
        if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
            return Err(Error::mismatch(format!(
                "`stimulus_ids` differ at position {i}: {features_origin} has {:?} but \
                 {brain_origin} has {:?}; both files must list the same images in the same order",
                a[i], b[i]
            )));
        }
        if a.len() != b.len() {
            return Err(Error::mismatch(format!(
                "`stimulus_ids`: {features_origin} lists {} ids but {brain_origin} lists {}",
                a.len(),
                b.len()
            )));
        }
    }
    Ok(())
}
