//! A feature set made ready for fitting: every layer resampled to the shared grid (§3.1) once,
//! stored cell-major for the channel alignment, with the global tokens beside it. Every fit,
//! score, prediction and monitor observation prepares its features here, with the resampling
//! its settings or its encoder name; `resample::Resample::kernel` decides what that means.

use crate::data::{Array, Features};
use crate::error::{Error, Result};
use crate::model::encoder::EncoderSpec;
use crate::model::resample::{resample_cells, Resample};
use candle_core::{Device, Tensor};

/// The rows `idx` (first axis) of `a`.
fn rows(a: &Array, idx: &[usize]) -> Result<Array> {
    let row = a.data.len().checked_div(a.shape[0]).unwrap_or(0);
    let mut data = crate::data::limits::try_zeroed("selected images", idx.len() * row)?;
    for (dst, &i) in data.chunks_exact_mut(row.max(1)).zip(idx) {
        dst.copy_from_slice(&a.data[i * row..(i + 1) * row]);
    }
    let mut shape = a.shape.clone();
    shape[0] = idx.len();
    Ok(Array { shape, data })
}

#[derive(Debug, Clone)]
pub struct PreparedFeatures {
    pub n_images: usize,
    pub grid: usize,
    /// How the layers were resized to the grid.
    pub resample: Resample,
    pub widths: Vec<usize>,
    /// Per layer `[N, G·G, C_l]`.
    pub locals: Vec<Tensor>,
    /// Per layer `[N, C_l]`.
    pub globals: Vec<Tensor>,
}

impl PreparedFeatures {
    /// The features as an encoder with `spec` reads them (its grid and resampling).
    pub fn for_encoder(features: &Features, spec: &EncoderSpec) -> Result<Self> {
        Self::new(features, spec.grid, spec.resample)
    }

    pub fn new(features: &Features, grid: usize, method: Resample) -> Result<Self> {
        Self::build(features, None, grid, method)
    }

    /// Only the images `idx` of `features`, in that order (the monitor's held-out images), as
    /// an encoder with `spec` reads them: the other images are neither copied nor resampled.
    pub fn for_images(features: &Features, idx: &[usize], spec: &EncoderSpec) -> Result<Self> {
        let n = features.n_images();
        if let Some(&i) = idx.iter().find(|&&i| i >= n) {
            return Err(Error::invalid(format!("image index {i} out of range for {n} images")));
        }
        Self::build(features, Some(idx), spec.grid, spec.resample)
    }

    fn build(features: &Features, idx: Option<&[usize]>, grid: usize, method: Resample) -> Result<Self> {
        if features.layers.is_empty() {
            return Err(Error::invalid("the feature set has no layers"));
        }
        let dev = Device::Cpu;
        let n_all = features.layers[0].local.shape[0];
        let n = idx.map_or(n_all, <[usize]>::len);
        let mut locals = Vec::new();
        let mut globals = Vec::new();
        let mut widths = Vec::new();
        for (l, layer) in features.layers.iter().enumerate() {
            let local = &layer.local;
            if local.ndim() != 4 || local.shape[0] != n_all {
                return Err(Error::invalid(format!(
                    "layer {l}: local map must be [N={n_all}, C, H, W], got {:?}",
                    local.shape
                )));
            }
            let c = local.shape[1];
            let cells = resample_cells(local, idx, grid, method)?;
            locals.push(Tensor::from_vec(cells.data, (n, grid * grid, c), &dev)?);
            let g = features.global(l);
            if g.shape != [n_all, c] {
                return Err(Error::invalid(format!(
                    "layer {l}: global token must be [{n_all}, {c}], got {:?}",
                    g.shape
                )));
            }
            let g = match idx {
                None => g,
                Some(idx) => rows(&g, idx)?,
            };
            globals.push(Tensor::from_vec(g.data, (n, c), &dev)?);
            widths.push(c);
        }
        Ok(Self { n_images: n, grid, resample: method, widths, locals, globals })
    }

    /// Checks that these features are what an encoder with `spec` reads: its layer widths, grid
    /// and resampling (the one check, used by every trainer and predictor, CPU and GPU).
    pub fn check_matches(&self, spec: &EncoderSpec) -> Result<()> {
        if self.widths != spec.widths || self.grid != spec.grid || self.resample != spec.resample {
            return Err(Error::mismatch(format!(
                "features (widths {:?}, grid {}, {} resampling) do not match the encoder (widths {:?}, grid {}, {} resampling)",
                self.widths, self.grid, self.resample, spec.widths, spec.grid, spec.resample
            )));
        }
        Ok(())
    }

    /// The layers' tensors for the images `idx`.
    pub fn batch(&self, idx: &[usize]) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(ids, idx.len(), &Device::Cpu)?;
        let locals = self.locals.iter().map(|t| t.index_select(&ids, 0)).collect::<candle_core::Result<_>>()?;
        let globals = self.globals.iter().map(|t| t.index_select(&ids, 0)).collect::<candle_core::Result<_>>()?;
        Ok((locals, globals))
    }
}
