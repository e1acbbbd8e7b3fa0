//! A feature set made ready for fitting: every layer resampled to the shared grid (§3.1) once,
//! stored cell-major for the channel alignment, with the global tokens beside it. Every fit,
//! score, prediction and monitor observation prepares its features here, with the resampling
//! its settings or its encoder name; `resample::Resample::kernel` decides what that means.

use std::borrow::Cow;
use std::sync::Arc;

use once_cell::sync::OnceCell;

use crate::data::feature_source::{image_blocks, spatial_means};
use crate::data::{FeatureSource, Precision, Store};
use crate::error::{Error, Result};
use crate::model::encoder::EncoderSpec;
use crate::model::preparation::LayerUnits;
use crate::model::resample::{resample_cells_slice, Resample};
use candle_core::{Device, Tensor};

/// A feature set resampled to an encoder's grid, as every trainer and predictor reads it. Only
/// the constructors and [`PreparedFeatures::refill`] write it, so its sizes and buffers always
/// agree; the rest of the crate reads it through the accessors.
///
/// The values are kept in a [`Precision`] (by default the one they arrive in: 16-bit features
/// stay 16-bit) and widened to f32 an image at a time where they are multiplied
/// ([`PreparedFeatures::local_image`]), so a subject-scale set takes the bytes of its file and
/// no more.
///
/// Features prepared on a CUDA device (layers given as CUDA tensors, prepared for work on that
/// device: `crate::engine::prepare`) keep their values there ([`DeviceValues`]); the CUDA
/// trainer and predictor read them in place, and host code that reads them gets one
/// device-to-host copy, made the first time it asks ([`PreparedFeatures::load_host`]).
#[derive(Debug, Clone)]
pub struct PreparedFeatures {
    n_images: usize,
    grid: usize,
    /// How the layers were resized to the grid.
    resample: Resample,
    widths: Vec<usize>,
    /// The precision the values are kept in.
    precision: Precision,
    /// The values in host memory: set when the features were prepared on the host, filled from
    /// the device the first time host code reads device-prepared features.
    host: OnceCell<HostValues>,
    /// The values in device memory, for features prepared on a device.
    device: Option<Arc<dyn DeviceValues>>,
    /// Per layer, the units the values were put in after resampling (the identity unless the
    /// features are put in common units: [`PreparedFeatures::normalise`]).
    units: Vec<LayerUnits>,
}

/// Prepared values in host memory.
#[derive(Debug, Clone)]
struct HostValues {
    /// Per layer `[N, G·G, C_l]`, row-major. Plain buffers, not tensors, so that
    /// [`PreparedFeatures::refill`] can write the next checkpoint's images into them.
    locals: Vec<Store>,
    /// Per layer `[N, C_l]`.
    globals: Vec<Store>,
}

/// The values of a prepared feature set held in a device's memory: per layer the local maps
/// `[N, G·G, C_l]` and global tokens `[N, C_l]` as f32 holding values of the set's precision.
/// Implemented by the CUDA path (`crate::cuda::prepare`), which reads its own buffers through
/// [`DeviceValues::as_any`].
pub trait DeviceValues: std::fmt::Debug + Send + Sync {
    /// The concrete values, for the device code that made them.
    fn as_any(&self) -> &dyn std::any::Any;
    /// Copies the values to host memory: per layer `(local, global)` as f32.
    fn to_host(&self) -> Result<Vec<(Vec<f32>, Vec<f32>)>>;
    /// Copies only the images `idx` of layer `l`'s local maps (`global`: tokens) to host memory,
    /// in that order, as f32.
    fn images_to_host(&self, l: usize, global: bool, idx: &[usize]) -> Result<Vec<f32>>;
    /// Per-channel sums and the sum of squares of layer `l`'s local maps (`global`: tokens), in
    /// f64: what [`PreparedFeatures::normalise`] needs, without copying the values to the host.
    fn channel_moments(&self, l: usize, global: bool) -> Result<(Vec<f64>, f64)>;
    /// `x ← round((x − mean[c])·k)` on layer `l`'s local maps (`global`: tokens), rounding to
    /// `precision`.
    fn affine(&mut self, l: usize, global: bool, mean: &[f32], k: f32, precision: Precision) -> Result<()>;
}

/// Bytes a prepared feature set of `n` images takes for layers of `widths` at grid `g` in
/// `precision` (the memory estimate's main term).
pub fn prepared_bytes(n: usize, widths: &[usize], g: usize, precision: Precision) -> u128 {
    widths.iter().map(|&c| n as u128 * (g * g + 1) as u128 * c as u128).sum::<u128>() * precision.bytes() as u128
}

impl PreparedFeatures {
    /// The features as an encoder with `spec` reads them (its grid and resampling), kept in the
    /// precision they arrive in.
    pub fn for_encoder(features: &dyn FeatureSource, spec: &EncoderSpec) -> Result<Self> {
        Self::build(features, None, spec.grid, spec.resample, None, spec.layer_units.as_deref())
    }

    /// Every image of `features` resampled to `grid` with `method`, stored in `precision`
    /// (`None`: the precision the features arrive in).
    pub fn new(features: &dyn FeatureSource, grid: usize, method: Resample, precision: Option<Precision>) -> Result<Self> {
        Self::build(features, None, grid, method, precision, None)
    }

    /// Only the images `idx` of `features`, in that order (the monitor's and `score`'s held-out
    /// images), as an encoder with `spec` reads them: the other images are neither read nor
    /// resampled.
    pub fn for_images(features: &dyn FeatureSource, idx: &[usize], spec: &EncoderSpec) -> Result<Self> {
        Self::build(features, Some(idx), spec.grid, spec.resample, None, spec.layer_units.as_deref())
    }

    /// [`PreparedFeatures::for_images`] in a chosen precision.
    pub fn for_images_in(
        features: &dyn FeatureSource,
        idx: &[usize],
        spec: &EncoderSpec,
        precision: Option<Precision>,
    ) -> Result<Self> {
        Self::build(features, Some(idx), spec.grid, spec.resample, precision, spec.layer_units.as_deref())
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

    /// The precision the values are kept in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Bytes the values take (in host or device memory, where they are kept).
    pub fn bytes(&self) -> usize {
        prepared_bytes(self.n_images, &self.widths, self.grid, self.precision) as usize
    }

    /// The values in device memory, for features prepared on a device.
    pub fn device_values(&self) -> Option<&dyn DeviceValues> {
        self.device.as_deref()
    }

    /// Features prepared on a device: the values stay there, the host gets them only when it
    /// reads them ([`PreparedFeatures::load_host`]).
    #[allow(clippy::too_many_arguments)]
    pub fn on_device(
        values: Arc<dyn DeviceValues>,
        n_images: usize,
        grid: usize,
        resample: Resample,
        widths: Vec<usize>,
        precision: Precision,
        units: Vec<LayerUnits>,
    ) -> Result<Self> {
        if units.len() != widths.len() || widths.is_empty() {
            return Err(Error::mismatch(format!("device features: {} layers of units for {} layers", units.len(), widths.len())));
        }
        Ok(Self { n_images, grid, resample, widths, precision, host: OnceCell::new(), device: Some(values), units })
    }

    /// Makes the values readable by host code: a no-op for features prepared on the host; for
    /// features prepared on a device, the one device-to-host copy. Every CPU trainer and
    /// predictor calls this before it reads [`PreparedFeatures::local_image`].
    pub fn load_host(&self) -> Result<()> {
        self.host_values().map(|_| ())
    }

    fn host_values(&self) -> Result<&HostValues> {
        self.host.get_or_try_init(|| {
            let device = self.device.as_ref().ok_or_else(|| Error::invalid("prepared features hold no values"))?;
            let layers = device.to_host()?;
            let gg = self.grid * self.grid;
            let (mut locals, mut globals) = (Vec::with_capacity(layers.len()), Vec::with_capacity(layers.len()));
            for ((local, global), &c) in layers.into_iter().zip(&self.widths) {
                if local.len() != self.n_images * gg * c || global.len() != self.n_images * c {
                    return Err(Error::mismatch("device features: a layer's values do not have its size"));
                }
                let mut l = Store::zeroed("resampled local map", self.precision, local.len())?;
                l.write(0, &local);
                let mut g = Store::zeroed("global tokens", self.precision, global.len())?;
                g.write(0, &global);
                locals.push(l);
                globals.push(g);
            }
            Ok(HostValues { locals, globals })
        })
    }

    /// The host values, after [`PreparedFeatures::load_host`] (always there for features
    /// prepared on the host).
    fn loaded(&self) -> &HostValues {
        self.host.get().expect("host code calls PreparedFeatures::load_host before reading device-prepared features")
    }

    /// Per layer, the units the resampled values were put in.
    pub fn units(&self) -> &[LayerUnits] {
        &self.units
    }

    /// Puts every layer in common units ([`LayerUnits`]): centres each channel of its local maps
    /// and of its global tokens on its mean over these images (and cells), and scales each of
    /// the two to a root mean square of 1; returns the units per layer (an encoder fitted on
    /// these features keeps them, and `score`, `predict` and the monitor apply them to new
    /// features). Multiplying a layer of the input by a positive constant, or adding a constant
    /// to a channel, then changes nothing the trainer sees but rounding: the learning rate,
    /// weight decay and initialisation act on every layer alike, and a layer's units cannot
    /// decide whether voxels choose it. A layer without spread keeps scale 1.
    pub fn normalise(&mut self) -> Result<Vec<LayerUnits>> {
        let gg = self.grid * self.grid;
        for l in 0..self.widths.len() {
            let c = self.widths[l];
            let mut fitted = [(Vec::new(), 1.0f32), (Vec::new(), 1.0f32)];
            for (slot, global) in [false, true].into_iter().enumerate() {
                let rows = if global { self.n_images } else { self.n_images * gg };
                fitted[slot] = match self.device.as_mut() {
                    Some(device) => {
                        let device = Arc::get_mut(device)
                            .ok_or_else(|| Error::invalid("device-prepared features are shared; put them in common units before sharing them"))?;
                        let (sums, sq) = device.channel_moments(l, global)?;
                        let (mean, k) = units_from_moments(&sums, sq, rows, c);
                        device.affine(l, global, &mean, k, self.precision)?;
                        (mean, k)
                    }
                    None => {
                        let values = self.host.get_mut().ok_or_else(|| Error::invalid("prepared features hold no values"))?;
                        let store = if global { &mut values.globals[l] } else { &mut values.locals[l] };
                        let (sums, sq) = store.channel_moments(c);
                        let (mean, k) = units_from_moments(&sums, sq, rows, c);
                        store.affine(&mean, k);
                        (mean, k)
                    }
                };
            }
            let [(local_mean, local_scale), (global_mean, global_scale)] = fitted;
            self.units[l] = LayerUnits { local_mean, local_scale, global_mean, global_scale };
        }
        if self.device.is_some() {
            // A host copy made before would hold the old units.
            self.host = OnceCell::new();
        }
        Ok(self.units.clone())
    }

    /// Image `img`'s layer `l` local map `[G·G, C_l]` as f32: the stored values when they are
    /// f32, otherwise widened into `scratch`.
    pub fn local_image<'s>(&'s self, l: usize, img: usize, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        let row = self.grid * self.grid * self.widths[l];
        Self::row(&self.loaded().locals[l], img * row, row, scratch)
    }

    /// Image `img`'s layer `l` global token `[C_l]` as f32 (see [`PreparedFeatures::local_image`]).
    pub fn global_image<'s>(&'s self, l: usize, img: usize, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        let row = self.widths[l];
        Self::row(&self.loaded().globals[l], img * row, row, scratch)
    }

    fn row<'s>(store: &'s Store, at: usize, len: usize, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        if let Some(v) = store.as_f32() {
            return &v[at..at + len];
        }
        scratch.resize(len, 0.0);
        store.read(at, scratch);
        scratch
    }

    /// Layer `l`'s resampled local maps `[N, G·G, C_l]` as f32 (borrowed when stored as f32, a
    /// widened copy otherwise: the GPU upload).
    pub fn local_f32(&self, l: usize) -> Result<Cow<'_, [f32]>> {
        let store = &self.host_values()?.locals[l];
        Ok(match store.as_f32() {
            Some(v) => Cow::Borrowed(v),
            None => Cow::Owned(store.to_f32()?),
        })
    }

    /// Layer `l`'s global tokens `[N, C_l]` as f32 (see [`PreparedFeatures::local_f32`]).
    pub fn global_f32(&self, l: usize) -> Result<Cow<'_, [f32]>> {
        let store = &self.host_values()?.globals[l];
        Ok(match store.as_f32() {
            Some(v) => Cow::Borrowed(v),
            None => Cow::Owned(store.to_f32()?),
        })
    }

    /// The images `idx` (all when `None`) of `features` prepared on the host; the engine's
    /// `prepare` decides between this and a device.
    pub(crate) fn build(
        features: &dyn FeatureSource,
        idx: Option<&[usize]>,
        grid: usize,
        method: Resample,
        precision: Option<Precision>,
        units: Option<&[LayerUnits]>,
    ) -> Result<Self> {
        let n_layers = features.n_layers();
        if n_layers == 0 {
            return Err(Error::invalid("the feature set has no layers"));
        }
        let units = match units {
            None => features.widths().into_iter().map(LayerUnits::identity).collect(),
            Some(u) if u.len() == n_layers => {
                for (l, (u, c)) in u.iter().zip(features.widths()).enumerate() {
                    u.check(c, &format!("layer {l}"))?;
                }
                u.to_vec()
            }
            Some(u) => {
                return Err(Error::mismatch(format!("the encoder has units for {} layers, the features have {n_layers}", u.len())))
            }
        };
        let n = idx.map_or(features.n_images(), <[usize]>::len);
        let precision = precision.unwrap_or_else(|| features.precision());
        let mut widths = Vec::with_capacity(n_layers);
        let mut locals = Vec::with_capacity(n_layers);
        let mut globals = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let c = features.local_shape(l)[1];
            let count = crate::data::limits::elements("resampled local map [N, G·G, C]", &[n, grid, grid, c])?;
            locals.push(Store::zeroed("resampled local map", precision, count)?);
            globals.push(Store::zeroed("global tokens", precision, n * c)?);
            widths.push(c);
        }
        let host = OnceCell::with_value(HostValues { locals, globals });
        let mut p = Self { n_images: n, grid, resample: method, widths, precision, host, device: None, units };
        p.fill(features, idx)?;
        Ok(p)
    }

    /// Replaces the contents with the images `idx` of `features` (the same images, network
    /// shape, grid and resampling as these were prepared with; the monitor's next checkpoint),
    /// reusing the buffers. On an error the contents are undefined: drop them.
    pub fn refill(&mut self, features: &dyn FeatureSource, idx: &[usize]) -> Result<()> {
        let widths = features.widths();
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
    /// the sizes `build` gave them. Layers already in memory as f32 are resampled in one pass;
    /// the others are read a block of images at a time, so no more than one block of the
    /// source is ever held beside the result.
    fn fill(&mut self, features: &dyn FeatureSource, idx: Option<&[usize]>) -> Result<()> {
        let n_all = features.n_images();
        for l in 0..features.n_layers() {
            let [n, c, h, w] = features.local_shape(l);
            if n != n_all || c != self.widths[l] {
                return Err(Error::invalid(format!(
                    "layer {l}: local map must be [N={n_all}, C={}, H, W], got [{n}, {c}, {h}, {w}]",
                    self.widths[l]
                )));
            }
        }
        if let Some(&i) = idx.and_then(|idx| idx.iter().find(|&&i| i >= n_all)) {
            return Err(Error::invalid(format!("image index {i} out of range for {n_all} images")));
        }
        let (grid, method) = (self.grid, self.resample);
        let values = self
            .host
            .get_mut()
            .filter(|_| self.device.is_none())
            .ok_or_else(|| Error::invalid("features prepared on a device are prepared again there, not refilled"))?;
        let mut cells: Vec<f32> = Vec::new();
        for l in 0..features.n_layers() {
            let shape @ [_, c, h, w] = features.local_shape(l);
            let stored = features.stored_global(l)?;
            let local = &mut values.locals[l];
            let global = &mut values.globals[l];
            match (features.local_in_memory(l), idx) {
                (Some(all), _) if local.as_f32().is_some() => {
                    // The in-memory fast path: straight into the buffer, in parallel over images.
                    let Store::F32(dst) = local else { unreachable!("checked f32") };
                    resample_cells_slice(all, shape, idx, grid, method, dst)?;
                    if stored.is_none() {
                        let hw = h * w;
                        let images: Box<dyn Iterator<Item = usize>> = match idx {
                            Some(idx) => Box::new(idx.iter().copied()),
                            None => Box::new(0..n_all),
                        };
                        for (o, i) in images.enumerate() {
                            let means: Vec<f32> = spatial_means(&all[i * c * hw..(i + 1) * c * hw], hw).collect();
                            global.write(o * c, &means);
                        }
                    }
                }
                (_, None) => {
                    for images in image_blocks(n_all, c * h * w) {
                        let block = features.local_rows(l, images.clone())?;
                        put_block(local, stored.is_none().then_some(&mut *global), images.start, &block, [images.len(), c, h, w], (grid, method), &mut cells)?;
                    }
                }
                (_, Some(idx)) => {
                    for (o, &i) in idx.iter().enumerate() {
                        let block = features.local_rows(l, i..i + 1)?;
                        put_block(local, stored.is_none().then_some(&mut *global), o, &block, [1, c, h, w], (grid, method), &mut cells)?;
                    }
                }
            }
            if let Some(g) = stored {
                match idx {
                    None => global.write(0, &g),
                    Some(idx) => {
                        for (o, &i) in idx.iter().enumerate() {
                            global.write(o * c, &g[i * c..(i + 1) * c]);
                        }
                    }
                }
            }
            // The encoder's units, applied after resampling exactly as the fit applied them
            // (`normalise`), so a fit and a later `score` see the same numbers.
            let u = &self.units[l];
            if !u.is_identity() {
                local.affine(&u.local_mean, u.local_scale);
                global.affine(&u.global_mean, u.global_scale);
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

    /// The layers' tensors for the images `idx` (f32 copies; the candle paths' batches).
    pub fn batch(&self, idx: &[usize]) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let mut locals = Vec::with_capacity(self.widths.len());
        let mut globals = Vec::with_capacity(self.widths.len());
        for l in 0..self.widths.len() {
            let (a, b) = self.layer_batch(l, idx)?;
            locals.push(a);
            globals.push(b);
        }
        Ok((locals, globals))
    }

    /// Layer `l`'s local maps `[B, G·G, C_l]` and global tokens `[B, C_l]` for the images `idx`
    /// (f32 copies).
    pub fn layer_batch(&self, l: usize, idx: &[usize]) -> Result<(Tensor, Tensor)> {
        let gather = |store: &Store, row: usize, shape: &[usize]| -> Result<Tensor> {
            let mut out = crate::data::limits::try_zeroed("a batch of prepared features", idx.len() * row)?;
            for (dst, &i) in out.chunks_exact_mut(row.max(1)).zip(idx) {
                let at = i.checked_mul(row).filter(|&a| a + row <= store.len()).ok_or_else(|| {
                    Error::invalid(format!("image index {i} out of range for {} images", self.n_images))
                })?;
                store.read(at, dst);
            }
            Ok(Tensor::from_vec(out, shape, &Device::Cpu)?)
        };
        let gg = self.grid * self.grid;
        let c = *self.widths.get(l).ok_or_else(|| Error::invalid(format!("layer {l} out of range for {} layers", self.widths.len())))?;
        if let (None, Some(device)) = (self.host.get(), &self.device) {
            // Only these images come from the device (the layer margins read a sample of them).
            let local = device.images_to_host(l, false, idx)?;
            let global = device.images_to_host(l, true, idx)?;
            return Ok((
                Tensor::from_vec(local, &[idx.len(), gg, c], &Device::Cpu)?,
                Tensor::from_vec(global, &[idx.len(), c], &Device::Cpu)?,
            ));
        }
        let values = self.host_values()?;
        Ok((gather(&values.locals[l], gg * c, &[idx.len(), gg, c])?, gather(&values.globals[l], c, &[idx.len(), c])?))
    }
}

/// A layer's units from the per-channel sums `sums` and the sum of squares `sq` of its values
/// over `rows` rows of `c` channels: the channel means, and the scale that brings the mean square
/// about them, pooled over channels, to 1 (1 for a layer without spread).
pub fn units_from_moments(sums: &[f64], sq: f64, rows: usize, c: usize) -> (Vec<f32>, f32) {
    let rows = rows.max(1) as f64;
    let mean: Vec<f64> = sums.iter().map(|s| s / rows).collect();
    // Mean square about the channel means, pooled over channels.
    let var = (sq / rows - mean.iter().map(|m| m * m).sum::<f64>()) / c.max(1) as f64;
    let sd = var.max(0.0).sqrt();
    let k = if sd > 0.0 && (1.0 / sd).is_finite() { (1.0 / sd) as f32 } else { 1.0 };
    (mean.iter().map(|&m| m as f32).collect(), k)
}

/// Resamples a block of `k` source images (`[k, C, H, W]`) into `local` from output image
/// `first` on, and writes their spatial means into `global` when the source stores no global
/// tokens; `cells` is the block's f32 scratch.
fn put_block(
    local: &mut Store,
    global: Option<&mut Store>,
    first: usize,
    block: &[f32],
    shape @ [k, c, h, w]: [usize; 4],
    (grid, method): (usize, Resample),
    cells: &mut Vec<f32>,
) -> Result<()> {
    cells.resize(k * grid * grid * c, 0.0);
    resample_cells_slice(block, shape, None, grid, method, cells)?;
    local.write(first * grid * grid * c, cells);
    if let Some(global) = global {
        let means: Vec<f32> = spatial_means(block, h * w).collect();
        global.write(first * c, &means);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Array, Features, LayerFeatures};
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
            assert_eq!(&p.local_f32(l).unwrap()[..], &want.data[..], "layer {l} local");
            let g = f.global(l);
            let c = g.shape[1];
            let want: Vec<f32> = idx.iter().flat_map(|&i| g.data[i * c..(i + 1) * c].to_vec()).collect();
            assert_eq!(&p.global_f32(l).unwrap()[..], &want[..], "layer {l} global");
        }
    }

    #[test]
    fn refill_gives_what_a_fresh_preparation_gives() {
        let spec_of = |p: &PreparedFeatures| (p.grid, p.resample, p.widths.clone());
        let (a, b) = (features(1, 7), features(2, 7));
        let idx = [5usize, 0, 5, 3];
        let mut p = PreparedFeatures::build(&a, Some(&idx), 3, Resample::Area, None, None).unwrap();
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
        let fresh = PreparedFeatures::build(&b, Some(&idx), 3, Resample::Area, None, None).unwrap();
        let (locals, globals) = fresh.batch(&[3, 1]).unwrap();
        assert_eq!(locals[0].dims(), &[2, 9, 9]);
        assert_eq!(globals[1].dims(), &[2, 4]);
        let row = 9 * 9;
        assert_eq!(locals[0].flatten_all().unwrap().to_vec1::<f32>().unwrap()[..row], fresh.local_f32(0).unwrap()[3 * row..4 * row]);
        assert!(fresh.batch(&[4]).is_err());
    }

    /// A features file read a block at a time gives the same prepared values as the whole
    /// feature set in memory: all images, some images, and with the global token computed.
    #[test]
    fn streaming_from_a_file_matches_memory() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.safetensors");
        let f = features(4, 9);
        f.save(&p).unwrap();
        let file = crate::data::FeatureFile::open(&p).unwrap();
        for method in [Resample::Area, Resample::Bilinear] {
            let mem = PreparedFeatures::new(&f, 3, method, None).unwrap();
            let streamed = PreparedFeatures::new(&file, 3, method, None).unwrap();
            assert_eq!(streamed.precision(), Precision::F32);
            for l in 0..2 {
                assert_eq!(streamed.local_f32(l).unwrap(), mem.local_f32(l).unwrap(), "{method} layer {l}");
                assert_eq!(streamed.global_f32(l).unwrap(), mem.global_f32(l).unwrap(), "{method} layer {l}");
            }
        }
        let idx = [8usize, 2, 2, 0];
        let spec_like = PreparedFeatures::build(&file, Some(&idx), 3, Resample::Area, None, None).unwrap();
        assert_prepared(&spec_like, &f, &idx);
    }

    /// 16-bit storage keeps each prepared value rounded to the nearest 16-bit value, and the
    /// widened rows the trainers read are those values.
    #[test]
    fn sixteen_bit_storage_rounds_each_value() {
        let f = features(5, 6);
        let wide = PreparedFeatures::new(&f, 3, Resample::Area, None).unwrap();
        for p in [Precision::F16, Precision::Bf16] {
            let narrow = PreparedFeatures::new(&f, 3, Resample::Area, Some(p)).unwrap();
            assert_eq!(narrow.precision(), p);
            assert_eq!(narrow.bytes() * 2, wide.bytes());
            for l in 0..2 {
                let w = wide.local_f32(l).unwrap();
                let round = |x: f32| match p {
                    Precision::F16 => half::f16::from_f32(x).to_f32(),
                    _ => half::bf16::from_f32(x).to_f32(),
                };
                let want: Vec<f32> = w.iter().map(|&x| round(x)).collect();
                assert_eq!(&narrow.local_f32(l).unwrap()[..], &want[..]);
                let row = 9 * wide.widths()[l];
                let mut scratch = Vec::new();
                assert_eq!(narrow.local_image(l, 4, &mut scratch), &want[4 * row..5 * row]);
                let g: Vec<f32> = wide.global_f32(l).unwrap().iter().map(|&x| round(x)).collect();
                let c = wide.widths()[l];
                assert_eq!(narrow.global_image(l, 2, &mut scratch), &g[2 * c..3 * c]);
            }
        }
    }
}
