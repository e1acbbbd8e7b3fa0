//! A feature set made ready for fitting: every layer resampled to the shared grid (§3.1) once,
//! stored cell-major for the channel alignment, with the global tokens beside it. Every fit,
//! score, prediction and monitor observation prepares its features here, with the resampling
//! its settings or its encoder name; `resample::Resample::kernel` decides what that means.

use crate::data::Features;
use crate::error::{Error, Result};
use crate::model::encoder::EncoderSpec;
use crate::model::resample::{resample_cells_into, Resample};
use candle_core::{Device, Tensor};

/// The number of images, once every layer is checked to be a `[N, C, H, W]` map of the same
/// `N` (before anything is allocated from those sizes).
fn check_layers(features: &Features) -> Result<usize> {
    let Some(first) = features.layers.first() else {
        return Err(Error::invalid("the feature set has no layers"));
    };
    let n_all = first.local.shape.first().copied().unwrap_or(0);
    for (l, layer) in features.layers.iter().enumerate() {
        let local = &layer.local;
        if local.ndim() != 4 || local.shape[0] != n_all {
            return Err(Error::invalid(format!(
                "layer {l}: local map must be [N={n_all}, C, H, W], got {:?}",
                local.shape
            )));
        }
    }
    Ok(n_all)
}

/// A feature set resampled to an encoder's grid, as every trainer and predictor reads it. Only
/// the constructors and [`PreparedFeatures::refill`] write it, so its sizes and buffers always
/// agree; the rest of the crate reads it through the accessors.
#[derive(Debug, Clone)]
pub struct PreparedFeatures {
    n_images: usize,
    grid: usize,
    /// How the layers were resized to the grid.
    resample: Resample,
    widths: Vec<usize>,
    /// Per layer `[N, G·G, C_l]`, row-major. Plain buffers, not tensors, so that
    /// [`PreparedFeatures::refill`] can write the next checkpoint's images into them.
    locals: Vec<Vec<f32>>,
    /// Per layer `[N, C_l]`.
    globals: Vec<Vec<f32>>,
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
        Self::build(features, Some(idx), spec.grid, spec.resample)
    }

    /// Images N.
    pub fn n_images(&self) -> usize {
        self.n_images
    }

    /// The grid G of the local maps.
    pub fn grid(&self) -> usize {
        self.grid
    }

    /// How the layers were resized to the grid.
    pub fn resample(&self) -> Resample {
        self.resample
    }

    /// Channels C_l per layer.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Layer `l`'s resampled local maps `[N, G·G, C_l]`, row-major.
    pub fn local(&self, l: usize) -> &[f32] {
        &self.locals[l]
    }

    /// Layer `l`'s global tokens `[N, C_l]`, row-major.
    pub fn global(&self, l: usize) -> &[f32] {
        &self.globals[l]
    }

    fn build(features: &Features, idx: Option<&[usize]>, grid: usize, method: Resample) -> Result<Self> {
        let n = idx.map_or(check_layers(features)?, <[usize]>::len);
        let mut widths = Vec::with_capacity(features.layers.len());
        let mut locals = Vec::with_capacity(features.layers.len());
        let mut globals = Vec::with_capacity(features.layers.len());
        for layer in &features.layers {
            let c = layer.local.shape.get(1).copied().unwrap_or(0);
            let count = crate::data::limits::elements("resampled local map [N, G·G, C]", &[n, grid, grid, c])?;
            locals.push(crate::data::limits::try_zeroed("resampled local map", count)?);
            globals.push(crate::data::limits::try_zeroed("global tokens", n * c)?);
            widths.push(c);
        }
        let mut p = Self { n_images: n, grid, resample: method, widths, locals, globals };
        p.fill(features, idx)?;
        Ok(p)
    }

    /// Replaces the contents with the images `idx` of `features` (the same images, network
    /// shape, grid and resampling as these were prepared with; the monitor's next checkpoint),
    /// reusing the buffers. On an error the contents are undefined: drop them.
    pub fn refill(&mut self, features: &Features, idx: &[usize]) -> Result<()> {
        let widths: Vec<usize> = features.layers.iter().map(|l| l.local.shape.get(1).copied().unwrap_or(0)).collect();
        if idx.len() != self.n_images || widths != self.widths {
            return Err(Error::mismatch(format!(
                "features to refill: {} images of widths {widths:?}, prepared for {} images of widths {:?}",
                idx.len(),
                self.n_images,
                self.widths
            )));
        }
        self.fill(features, Some(idx))
    }

    /// Resamples the images `idx` (all when `None`) of every layer into the buffers, which have
    /// the sizes `build` gave them.
    fn fill(&mut self, features: &Features, idx: Option<&[usize]>) -> Result<()> {
        let n_all = check_layers(features)?;
        if let Some(&i) = idx.and_then(|idx| idx.iter().find(|&&i| i >= n_all)) {
            return Err(Error::invalid(format!("image index {i} out of range for {n_all} images")));
        }
        let (grid, method) = (self.grid, self.resample);
        for (l, layer) in features.layers.iter().enumerate() {
            let local = &layer.local;
            let c = local.shape[1];
            resample_cells_into(local, idx, grid, method, &mut self.locals[l])?;
            let g = features.global(l);
            if g.shape != [n_all, c] {
                return Err(Error::invalid(format!(
                    "layer {l}: global token must be [{n_all}, {c}], got {:?}",
                    g.shape
                )));
            }
            let dst = &mut self.globals[l];
            match idx {
                None => dst.copy_from_slice(&g.data),
                Some(idx) => {
                    for (row, &i) in dst.chunks_exact_mut(c.max(1)).zip(idx) {
                        row.copy_from_slice(&g.data[i * c..(i + 1) * c]);
                    }
                }
            }
        }
        Ok(())
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

    /// The layers' tensors for the images `idx` (copies; the candle paths' batches).
    pub fn batch(&self, idx: &[usize]) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let gather = |data: &[f32], row: usize, shape: &[usize]| -> Result<Tensor> {
            let mut out = crate::data::limits::try_with_capacity("a batch of prepared features", idx.len() * row)?;
            for &i in idx {
                let at = i.checked_mul(row).filter(|&a| a + row <= data.len()).ok_or_else(|| {
                    Error::invalid(format!("image index {i} out of range for {} images", self.n_images))
                })?;
                out.extend_from_slice(&data[at..at + row]);
            }
            Ok(Tensor::from_vec(out, shape, &Device::Cpu)?)
        };
        let gg = self.grid * self.grid;
        let mut locals = Vec::with_capacity(self.widths.len());
        let mut globals = Vec::with_capacity(self.widths.len());
        for (l, &c) in self.widths.iter().enumerate() {
            locals.push(gather(&self.locals[l], gg * c, &[idx.len(), gg, c])?);
            globals.push(gather(&self.globals[l], c, &[idx.len(), c])?);
        }
        Ok((locals, globals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Array, LayerFeatures};
    use crate::model::resample::{resample_cells, Resample};
    use crate::rng::Rng;

    fn features(seed: u64, n: usize) -> Features {
        let mut rng = Rng::new(seed);
        let mut arr = |shape: Vec<usize>| {
            let k: usize = shape.iter().product();
            Array::new(shape, (0..k).map(|_| rng.normal() as f32).collect()).expect("shape matches data")
        };
        Features {
            model: "m".into(),
            layer_names: vec!["a".into(), "b".into()],
            stimulus_ids: None,
            layers: vec![
                LayerFeatures { local: arr(vec![n, 9, 6, 5]), global: Some(arr(vec![n, 9])) },
                LayerFeatures { local: arr(vec![n, 4, 2, 2]), global: None },
            ],
        }
    }

    /// Every layer's buffers against the resampler and the global tokens taken directly.
    fn assert_prepared(p: &PreparedFeatures, f: &Features, idx: &[usize]) {
        for l in 0..2 {
            let want = resample_cells(&f.layers[l].local, Some(idx), 3, Resample::Area).unwrap();
            assert_eq!(p.local(l), &want.data[..], "layer {l} local");
            let g = f.global(l);
            let c = g.shape[1];
            let want: Vec<f32> = idx.iter().flat_map(|&i| g.data[i * c..(i + 1) * c].to_vec()).collect();
            assert_eq!(p.global(l), &want[..], "layer {l} global");
        }
    }

    #[test]
    fn refill_gives_what_a_fresh_preparation_gives() {
        let spec_of = |p: &PreparedFeatures| (p.grid, p.resample, p.widths.clone());
        let (a, b) = (features(1, 7), features(2, 7));
        let idx = [5usize, 0, 5, 3];
        let mut p = PreparedFeatures::build(&a, Some(&idx), 3, Resample::Area).unwrap();
        assert_prepared(&p, &a, &idx);
        let before = spec_of(&p);
        p.refill(&b, &idx).unwrap();
        assert_prepared(&p, &b, &idx);
        assert_eq!(spec_of(&p), before);
        // Another image count or network shape is refused, not written.
        assert!(p.refill(&b, &idx[..3]).is_err());
        let mut wider = features(3, 7);
        wider.layers[1] = LayerFeatures { local: Array::new(vec![7, 5, 2, 2], vec![0.0; 140]).unwrap(), global: None };
        assert!(p.refill(&wider, &idx).unwrap_err().to_string().contains("widths"));
        assert!(p.refill(&b, &[0, 1, 2, 7]).unwrap_err().to_string().contains("out of range"));
        // The batch the candle paths read holds the same numbers.
        let fresh = PreparedFeatures::build(&b, Some(&idx), 3, Resample::Area).unwrap();
        let (locals, globals) = fresh.batch(&[3, 1]).unwrap();
        assert_eq!(locals[0].dims(), &[2, 9, 9]);
        assert_eq!(globals[1].dims(), &[2, 4]);
        let row = 9 * 9;
        assert_eq!(locals[0].flatten_all().unwrap().to_vec1::<f32>().unwrap()[..row], fresh.local(0)[3 * row..4 * row]);
        assert!(fresh.batch(&[4]).is_err());
    }
}
