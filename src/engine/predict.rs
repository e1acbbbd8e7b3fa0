//! The one prediction path (DESIGN §3.4 forward of a fixed encoder): `score`, the monitor's
//! retention, `predict` and a fit's reported held-out scores all go through [`Predictor`] (the
//! fast CPU forward or the CUDA one); [`predict_cpu`] is the candle formula, the oracle and the
//! candle trainer's validation.

use crate::engine::device::Device;
use crate::engine::fast_cpu::FastPredictor;
use crate::error::{Error, Result};
use crate::model::readout::fused_readout;
use crate::model::{Encoder, PreparedFeatures, Selections};
use candle_core::Tensor;

/// Images per forward pass: bounds the aligned maps `[chunk, L, G·G + 1, D]` held at once.
const CHUNK: usize = 64;

/// Predictions `[idx.len(), V]` (row-major) of `encoder` for the images `idx` of `prepared`, on
/// the CPU, with the selectors evaluated on the positional encoding `pe` `[V, 192]`.
pub fn predict_cpu(encoder: &Encoder, prepared: &PreparedFeatures, pe: &Tensor, idx: &[usize]) -> Result<Vec<f32>> {
    let packed = encoder.selectors(pe)?.packed()?;
    let wc = encoder.readout_params()?;
    predict_packed(encoder, &packed, &wc, prepared, idx)
}

fn predict_packed(
    encoder: &Encoder,
    packed: &Tensor,
    wc: &Tensor,
    prepared: &PreparedFeatures,
    idx: &[usize],
) -> Result<Vec<f32>> {
    check_features(encoder, prepared)?;
    if let Some(&bad) = idx.iter().find(|&&i| i >= prepared.n_images()) {
        return Err(Error::invalid(format!("image index {bad} out of range for {} images", prepared.n_images())));
    }
    let mut out = Vec::with_capacity(idx.len() * encoder.spec.n_voxels);
    for chunk in idx.chunks(CHUNK) {
        let (locals, globals) = prepared.batch(chunk)?;
        let maps = encoder.align(&locals, &globals)?;
        let pred = fused_readout(&maps, packed, wc, encoder.spec.grid)?;
        out.extend(pred.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// The features must have the encoder's layer widths and grid.
pub fn check_features(encoder: &Encoder, prepared: &PreparedFeatures) -> Result<()> {
    prepared.check_matches(&encoder.spec)
}

/// A fixed encoder ready to predict on one device: the selectors (and on the CPU the bilinear
/// taps) are evaluated once.
pub struct Predictor {
    encoder: Encoder,
    /// The CPU path: the explicit forward of `engine::fast_cpu`.
    fast: FastPredictor,
    /// For the CUDA path, which evaluates the selectors on the device itself.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pe: Tensor,
    device: Device,
    selections: Selections,
}

impl Predictor {
    /// `pe` is the positional encoding `[V, 192]` of the brain's voxels (normalised with the
    /// encoder's own constants). Checks that `device` can be used now.
    pub fn new(encoder: &Encoder, pe: &Tensor, device: Device) -> Result<Self> {
        device.check_available()?;
        let sel = encoder.selectors(pe)?;
        Ok(Self {
            encoder: encoder.clone(),
            fast: FastPredictor::new(encoder, pe)?,
            pe: pe.clone(),
            device,
            selections: sel.to_host()?,
        })
    }

    /// Where the predictions run.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The fixed encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The encoder's per-voxel choices.
    pub fn selections(&self) -> &Selections {
        &self.selections
    }

    /// Predictions `[idx.len(), V]`, row-major, for the images `idx` of `prepared`.
    pub fn predict(&self, prepared: &PreparedFeatures, idx: &[usize]) -> Result<Vec<f32>> {
        match self.device {
            Device::Cpu => {
                check_features(&self.encoder, prepared)?;
                self.fast.predict(prepared, idx)
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(ordinal) => {
                check_features(&self.encoder, prepared)?;
                crate::cuda::trainer::gpu_predict(ordinal, &self.encoder, prepared, &self.pe, idx)
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(n) => Err(Error::device_unavailable(Device::Cuda(n), crate::engine::device::NO_CUDA_BUILD)),
        }
    }

    /// Predictions for every image of `prepared`.
    pub fn predict_all(&self, prepared: &PreparedFeatures) -> Result<Vec<f32>> {
        let all: Vec<usize> = (0..prepared.n_images()).collect();
        self.predict(prepared, &all)
    }
}
