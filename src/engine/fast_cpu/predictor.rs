//! Predictions of a fixed encoder (for validation scores, `predict` and the forgetting
//! monitor's retention): the selector outputs, bilinear taps and the readout's `Ω` are computed
//! once, when the predictor is built, so a prediction is only the alignment and the dense
//! products of [`FixedReadout`].

use super::layout::{self, Layout};
use super::mlp::{self, MlpWork};
use super::fixed_readout::FixedReadout;
use super::{check_indices, fixed_readout, predict_with};
use crate::error::{Error, Result};
use crate::model::encoder::{Encoder, EncoderSpec};
use crate::model::posenc::ENC_DIM;
use crate::model::prepared::PreparedFeatures;
use candle_core::Tensor;
use std::sync::{Mutex, PoisonError};

/// A fixed encoder ready to predict on the CPU (see the module docs).
pub struct FastPredictor {
    spec: EncoderSpec,
    lay: Layout,
    params: Vec<f32>,
    /// Head outputs `[V, L + 3]`.
    sel: Vec<f32>,
    readout: FixedReadout,
    /// The aligned maps of one chunk of images, kept between calls: the monitor predicts at
    /// every observation, and a fresh buffer of this size costs thousands of page faults.
    maps: Mutex<Vec<f32>>,
}

impl FastPredictor {
    /// `pe`: the `[V, 192]` positional encoding of the voxels (`BrainTensors::pe`).
    pub fn new(encoder: &Encoder, pe: &Tensor) -> Result<Self> {
        let spec = encoder.spec.clone();
        let pe = pe.flatten_all()?.to_vec1::<f32>()?;
        if pe.len() != spec.n_voxels * ENC_DIM {
            return Err(Error::mismatch(format!(
                "the positional encoding has {} values, the encoder needs [{}, {ENC_DIM}]",
                pe.len(),
                spec.n_voxels
            )));
        }
        let lay = Layout::new(&spec);
        let params = layout::pack(encoder, &lay)?;
        let mut work = MlpWork::new(&lay);
        mlp::forward(&lay, &params, &pe, &mut work);
        let sel = std::mem::take(&mut work.sel);
        let readout = fixed_readout(&lay, spec.grid, &params, &sel)?;
        Ok(Self { spec, lay, params, sel, readout, maps: Mutex::new(Vec::new()) })
    }

    /// Selector head outputs `[V, L + 3]` (x, y, p_1..p_L, s).
    pub fn selector_outputs(&self) -> &[f32] {
        &self.sel
    }

    /// Predictions `[idx.len(), V]`, row-major, for the images `idx` of `prepared`.
    pub fn predict(&self, prepared: &PreparedFeatures, idx: &[usize]) -> Result<Vec<f32>> {
        prepared.check_matches(&self.spec)?;
        prepared.load_host()?;
        check_indices(idx, prepared.n_images())?;
        let (l, d, gg) = (self.lay.l, self.lay.d, self.spec.grid * self.spec.grid);
        let shape = [super::EVAL_CHUNK.min(idx.len().max(1)), gg + 1, l, d];
        let count = crate::data::limits::elements("aligned maps [B, G·G + 1, L, D]", &shape)?;
        // A panic while the lock was held left only scratch values behind, all overwritten.
        let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        if maps.len() < count {
            *maps = crate::data::limits::try_zeroed("aligned maps [B, G·G + 1, L, D]", count)?;
        }
        Ok(predict_with(&self.lay, self.spec.grid, &self.params, &self.readout, prepared, idx, &mut maps))
    }
}
