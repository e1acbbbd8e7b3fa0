//! Where a feature set is prepared (resampled to the grid, put in the encoder's units): the one
//! place that decides it. Work on a CUDA device whose layers all arrived there as CUDA tensors is
//! prepared on that device (`crate::cuda::prepare`), so a fit, a refit, a prediction or a
//! monitor step on it never takes the layers through the host; everything else is prepared on
//! the host.

use crate::data::{FeatureSource, Precision};
use crate::engine::device::Device;
use crate::error::Result;
use crate::model::preparation::LayerUnits;
use crate::model::{EncoderSpec, PreparedFeatures, Resample};

/// How a feature set is prepared: the grid and resampling, the precision the values are kept in
/// (`None`: the features') and the layers' units (`None`: as they are).
#[derive(Debug, Clone, Copy)]
pub struct Recipe<'a> {
    /// The grid G of the local maps.
    pub grid: usize,
    /// How the layers are resized to the grid.
    pub resample: Resample,
    /// The precision the values are kept in.
    pub precision: Option<Precision>,
    /// The units the values are put in.
    pub units: Option<&'a [LayerUnits]>,
}

impl<'a> Recipe<'a> {
    /// As the encoder with `spec` reads its features, kept in `precision`.
    pub fn for_encoder(spec: &'a EncoderSpec, precision: Option<Precision>) -> Self {
        Self { grid: spec.grid, resample: spec.resample, precision, units: spec.layer_units.as_deref() }
    }
}

/// The images `idx` (all when `None`) of `features`, prepared for work on `device`.
pub fn prepare(device: Device, features: &dyn FeatureSource, idx: Option<&[usize]>, how: Recipe<'_>) -> Result<PreparedFeatures> {
    match on_device(device, features, idx, how)? {
        Some(p) => Ok(p),
        None => PreparedFeatures::build(features, idx, how.grid, how.resample, how.precision, how.units),
    }
}

/// Whether work on `device` prepares `features` there: a CUDA device that holds every layer.
pub fn prepares_on_device(device: Device, features: &dyn FeatureSource) -> bool {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => crate::cuda::prepare::resident_layers(features, ordinal).is_some(),
        _ => {
            let _ = features;
            false
        }
    }
}

/// [`prepare`] when `device` is a CUDA device that holds every layer of `features`; `None`
/// otherwise.
pub fn on_device(device: Device, features: &dyn FeatureSource, idx: Option<&[usize]>, how: Recipe<'_>) -> Result<Option<PreparedFeatures>> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => {
            let Some(layers) = crate::cuda::prepare::resident_layers(features, ordinal) else { return Ok(None) };
            let g = crate::cuda::gpu(ordinal)?;
            let all: Vec<usize>;
            let idx = match idx {
                Some(idx) => idx,
                None => {
                    all = (0..features.n_images()).collect();
                    &all
                }
            };
            let precision = how.precision.unwrap_or_else(|| features.precision());
            let values = crate::cuda::prepare::prepare(&g, &layers, idx, (how.grid, how.resample), how.units, precision)?;
            let (n, widths) = (values.n_images, values.widths.clone());
            let units = match how.units {
                Some(u) => u.to_vec(),
                None => widths.iter().map(|&c| LayerUnits::identity(c)).collect(),
            };
            PreparedFeatures::on_device(std::sync::Arc::new(values), n, how.grid, how.resample, widths, precision, units).map(Some)
        }
        _ => {
            let _ = (features, idx, how);
            Ok(None)
        }
    }
}
