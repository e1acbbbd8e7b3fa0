//! Data contracts of DESIGN §2: loaders, validation and writers for the features and brain files,
//! plain `.npy` arrays, and atomic file output.

#![warn(missing_docs)]

pub mod algonauts;
pub mod array;
pub mod brain;
pub mod feature_source;
pub mod features;
pub mod io;
pub mod limits;
pub mod npy;
pub mod precision;
pub mod safetensors_io;
pub mod stored_features;
pub mod tensor_index;

pub use array::Array;
pub use brain::{Brain, BrainHeader};
pub use feature_source::{FeatureFile, FeatureSource};
pub use features::{Features, LayerFeatures};
pub use precision::{Precision, Store};
pub use stored_features::{StoredFeatures, StoredLayer};
pub use tensor_index::TensorIndex;
pub use io::{atomic_write, ensure_output_dir, write_into, OutputDir};
pub use npy::{npy_bytes, read_npy, read_npy_i64, write_npy};
pub use safetensors_io::{serialize_tensors, write_tensors, OutTensor, TensorFile};

use crate::error::{Error, Result};

/// Checks that a features file and a brain file describe the same probe images: the same count
/// and, when both carry `stimulus_ids`, the same ids in the same order.
pub fn check_pair(
    features: &dyn FeatureSource,
    features_origin: &str,
    brain: &Brain,
    brain_origin: &str,
) -> Result<()> {
    same_images(
        (features_origin, features.n_images(), features.stimulus_ids()),
        (brain_origin, brain.n_images(), brain.stimulus_ids.as_deref()),
    )
}

/// Two inputs list the same images: the same count, and the same `stimulus_ids` in the same
/// order where both have them. Each side is (origin for messages, image count, ids).
pub fn same_images(a: (&str, usize, Option<&[String]>), b: (&str, usize, Option<&[String]>)) -> Result<()> {
    let ((a_origin, na, a_ids), (b_origin, nb, b_ids)) = (a, b);
    if na != nb {
        return Err(Error::mismatch(format!("{a_origin} has {na} images but {b_origin} has {nb}")));
    }
    if let (Some(a), Some(b)) = (a_ids, b_ids) {
        if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
            return Err(Error::mismatch(format!(
                "`stimulus_ids` differ at position {i}: {a_origin} has {:?} but \
                 {b_origin} has {:?}; both files must list the same images in the same order",
                a[i], b[i]
            )));
        }
        if a.len() != b.len() {
            return Err(Error::mismatch(format!(
                "`stimulus_ids`: {a_origin} lists {} ids but {b_origin} lists {}",
                a.len(),
                b.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(n: usize, ids: Option<Vec<&str>>) -> Features {
        Features {
            model: "m".into(),
            layer_names: vec!["l0".into()],
            stimulus_ids: ids.map(|v| v.into_iter().map(String::from).collect()),
            layers: vec![LayerFeatures { local: Array::zeros(vec![n, 1, 1, 1]), global: None }],
        }
    }

    fn brain(n: usize, ids: Option<Vec<&str>>) -> Brain {
        Brain {
            responses: Array::zeros(vec![n, 1]).into(),
            coords: Array::zeros(vec![1, 3]),
            roi: vec![0],
            noise_ceiling: None,
            flat: None,
            hemisphere: None,
            roi_names: vec!["V1".into()],
            roi_levels: vec![0],
            stimulus_ids: ids.map(|v| v.into_iter().map(String::from).collect()),
            subject: None,
        }
    }

    #[test]
    fn pair_counts_and_ids() {
        check_pair(&features(3, None), "f", &brain(3, Some(vec!["a", "b", "c"])), "b").unwrap();
        check_pair(
            &features(3, Some(vec!["a", "b", "c"])),
            "f",
            &brain(3, Some(vec!["a", "b", "c"])),
            "b",
        )
        .unwrap();
        let e = check_pair(
            &features(1500, None),
            "features.safetensors",
            &brain(1400, None),
            "brain.safetensors",
        )
        .unwrap_err();
        assert!(matches!(e, Error::Mismatch(_)));
        assert!(e
            .to_string()
            .contains("features.safetensors has 1500 images but brain.safetensors has 1400"));
        let e = check_pair(
            &features(3, Some(vec!["a", "b", "c"])),
            "f.st",
            &brain(3, Some(vec!["a", "c", "b"])),
            "b.st",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("differ at position 1") && s.contains("\"b\"") && s.contains("b.st"),
            "{s}"
        );
        assert!(!s.contains('\n'));
    }
}
