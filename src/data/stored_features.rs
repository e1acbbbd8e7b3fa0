//! A feature set held in memory in the precision its layers arrived in: what the C ABI and
//! Python build from the collectors' tensors (bf16 and f16 from mixed-precision networks stay
//! 16-bit, half the bytes of f32) and what `ft_features_load` reads a file into.

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;
#[cfg(feature = "cuda")]
use std::sync::{Arc, OnceLock};

#[cfg(feature = "cuda")]
use crate::cuda::resident::DeviceLayer;
use crate::data::array::Array;
use crate::data::feature_source::{image_blocks, spatial_means, FeatureSource};
use crate::data::features::{Features, LayerFeatures};
use crate::data::precision::{Precision, Store};
use crate::data::FeatureFile;
use crate::error::{Error, Result};

/// One layer: the local map `[N, C, H, W]` and the optional global token `[N, C]`.
#[derive(Debug, Clone)]
pub struct StoredLayer {
    shape: [usize; 4],
    values: Values,
}

/// Where a layer's values are: host memory, or (a layer given as CUDA tensors) the library's own
/// copy in device memory, copied to the host once, the first time host code reads it.
#[derive(Debug, Clone)]
enum Values {
    Host(HostValues),
    #[cfg(feature = "cuda")]
    Device { layer: Arc<DeviceLayer>, host: Arc<OnceLock<HostValues>> },
}

#[derive(Debug, Clone)]
struct HostValues {
    local: Store,
    global: Option<Store>,
}

impl StoredLayer {
    /// A layer from its values; the shapes must match the stores' lengths and the values be
    /// finite (checked here, so a stored layer is always valid).
    pub fn new(shape: [usize; 4], local: Store, global: Option<Store>) -> Result<Self> {
        let [n, c, h, w] = shape;
        if shape.contains(&0) || local.len() != n * c * h * w {
            return Err(Error::shape("local", format!(
                "a local map of shape {shape:?} (every dimension > 0) needs {} values, got {}",
                n * c * h * w,
                local.len()
            )));
        }
        if let Some(g) = &global {
            if g.len() != n * c {
                return Err(Error::invalid(format!("a global token [{n}, {c}] needs {} values, got {}", n * c, g.len())));
            }
        }
        Ok(Self { shape, values: Values::Host(HostValues { local, global }) })
    }

    /// A layer held in device memory (checked finite when it was copied there).
    #[cfg(feature = "cuda")]
    pub fn on_device(layer: DeviceLayer) -> Self {
        Self { shape: layer.shape(), values: Values::Device { layer: Arc::new(layer), host: Arc::default() } }
    }

    /// The layer's device copy, when it is held in device memory.
    #[cfg(feature = "cuda")]
    pub fn device(&self) -> Option<&DeviceLayer> {
        match &self.values {
            Values::Host(_) => None,
            Values::Device { layer, .. } => Some(layer),
        }
    }

    /// The values in host memory: a device layer is copied to the host on first use, once.
    fn host(&self) -> Result<&HostValues> {
        match &self.values {
            Values::Host(h) => Ok(h),
            #[cfg(feature = "cuda")]
            Values::Device { layer, host } => {
                if let Some(h) = host.get() {
                    return Ok(h);
                }
                let (local, global) = layer.to_host()?;
                let keep = |v: Vec<f32>| -> Result<Store> {
                    Ok(match layer.precision() {
                        Precision::F32 => Store::F32(v),
                        p => {
                            let mut s = Store::zeroed("a 16-bit layer copied from the device", p, v.len())?;
                            s.write(0, &v);
                            s
                        }
                    })
                };
                let values = HostValues { local: keep(local)?, global: global.map(keep).transpose()? };
                Ok(host.get_or_init(|| values))
            }
        }
    }

    /// `[N, C, H, W]` of the local map.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// The local map's values when they are kept as f32.
    pub fn local_f32(&self) -> Option<&[f32]> {
        self.host().ok()?.local.as_f32()
    }

    /// The global token's values when there is one and it is kept as f32.
    pub fn global_f32(&self) -> Option<&[f32]> {
        self.host().ok()?.global.as_ref().and_then(Store::as_f32)
    }

    /// Whether the layer has a global token (else the local map's spatial mean stands in).
    pub fn has_global(&self) -> bool {
        match &self.values {
            Values::Host(h) => h.global.is_some(),
            #[cfg(feature = "cuda")]
            Values::Device { layer, .. } => layer.has_global(),
        }
    }

    /// The precision the layer is kept in.
    pub fn precision(&self) -> Precision {
        match &self.values {
            Values::Host(h) => h.local.precision(),
            #[cfg(feature = "cuda")]
            Values::Device { layer, .. } => layer.precision(),
        }
    }
}

/// A feature set (DESIGN §2) in memory, each layer in its own precision.
#[derive(Debug, Clone, Default)]
pub struct StoredFeatures {
    /// Free text naming the network.
    pub model: String,
    /// One name per layer.
    pub layer_names: Vec<String>,
    /// The N images' identifiers, when known.
    pub stimulus_ids: Option<Vec<String>>,
    layers: Vec<StoredLayer>,
}

impl StoredFeatures {
    /// An empty feature set of the network `model`.
    pub fn new(model: impl Into<String>) -> Self {
        Self { model: model.into(), ..Self::default() }
    }

    /// The layers, in depth order.
    pub fn layers(&self) -> &[StoredLayer] {
        &self.layers
    }

    /// Appends a layer whose image count matches the others', named `layer{i}`.
    pub fn push(&mut self, layer: StoredLayer) -> Result<()> {
        if let Some(first) = self.layers.first() {
            if first.shape[0] != layer.shape[0] {
                return Err(Error::mismatch(format!(
                    "layer {}: the local map has {} images but layer 0 has {}",
                    self.layers.len(),
                    layer.shape[0],
                    first.shape[0]
                )));
            }
        }
        self.layer_names.push(format!("layer{}", self.layers.len()));
        self.layers.push(layer);
        Ok(())
    }

    /// Reads a whole features file, each tensor kept in the precision it is stored in (F64 as
    /// f32), checking every value.
    pub fn load(path: &Path) -> Result<Self> {
        let file = FeatureFile::open(path)?;
        let mut out = StoredFeatures {
            model: file.model().to_string(),
            layer_names: file.layer_names().to_vec(),
            stimulus_ids: file.stimulus_ids().map(<[String]>::to_vec),
            layers: Vec::with_capacity(file.n_layers()),
        };
        for l in 0..file.n_layers() {
            let shape = file.local_shape(l);
            let local = file.read_store(&format!("layers.{l}.local"))?;
            let global =
                if file.has_global(l) { Some(file.read_store(&format!("layers.{l}.global"))?) } else { None };
            out.layers.push(StoredLayer::new(shape, local, global)?);
        }
        Ok(out)
    }

    /// The same feature set with every value widened to f32 (for writing a file).
    pub fn to_features(&self) -> Result<Features> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let h = l.host()?;
                let local = Array::new(l.shape.to_vec(), h.local.to_f32()?)?;
                let global = match &h.global {
                    Some(g) => Some(Array::new(vec![l.shape[0], l.shape[1]], g.to_f32()?)?),
                    None => None,
                };
                Ok(LayerFeatures { local, global })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Features {
            model: self.model.clone(),
            layer_names: self.layer_names.clone(),
            stimulus_ids: self.stimulus_ids.clone(),
            layers,
        })
    }
}

impl FeatureSource for StoredFeatures {
    fn origin(&self) -> String {
        "features".into()
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn layer_names(&self) -> &[String] {
        &self.layer_names
    }
    fn stimulus_ids(&self) -> Option<&[String]> {
        self.stimulus_ids.as_deref()
    }
    fn n_layers(&self) -> usize {
        self.layers.len()
    }
    fn local_shape(&self, l: usize) -> [usize; 4] {
        self.layers[l].shape
    }
    fn has_global(&self, l: usize) -> bool {
        self.layers[l].has_global()
    }
    fn precision(&self) -> Precision {
        let mut it = self.layers.iter().map(StoredLayer::precision);
        let first = it.next().unwrap_or_default();
        if it.all(|p| p == first) {
            first
        } else {
            Precision::F32
        }
    }
    fn check_images(&self, origin: &str, _images: Option<&[usize]>) -> Result<()> {
        // Every layer was checked when it was added.
        if self.layers.is_empty() {
            return Err(Error::data(origin, "no layers"));
        }
        if self.layer_names.len() != self.layers.len() {
            return Err(Error::data(
                origin,
                format!("`layer_names` has {} names but there are {} layers", self.layer_names.len(), self.layers.len()),
            ));
        }
        Ok(())
    }
    fn local_in_memory(&self, l: usize) -> Option<&[f32]> {
        self.layers[l].local_f32()
    }
    fn local_rows(&self, l: usize, images: Range<usize>) -> Result<Cow<'_, [f32]>> {
        let layer = &self.layers[l];
        let [n, c, h, w] = layer.shape;
        if images.start > images.end || images.end > n {
            return Err(Error::invalid(format!("images {images:?} of layer {l} with {n} images")));
        }
        let row = c * h * w;
        let local = &layer.host()?.local;
        Ok(match local.as_f32() {
            Some(v) => Cow::Borrowed(&v[images.start * row..images.end * row]),
            None => {
                let mut out = crate::data::limits::try_zeroed("widened features", images.len() * row)?;
                local.read(images.start * row, &mut out);
                Cow::Owned(out)
            }
        })
    }
    #[cfg(feature = "cuda")]
    fn device_layer(&self, l: usize) -> Option<&DeviceLayer> {
        self.layers[l].device()
    }
    fn global_tokens(&self, l: usize) -> Result<Array> {
        let [n, c, h, w] = self.layers[l].shape;
        #[cfg(feature = "cuda")]
        if let Some(d) = self.layers[l].device() {
            // On the device: the global tokens are H·W times smaller than the local map, and
            // only they come to the host.
            return Array::new(vec![n, c], d.global_tokens()?);
        }
        if let Some(g) = self.stored_global(l)? {
            return Array::new(vec![n, c], g.into_owned());
        }
        let mut data = crate::data::limits::try_with_capacity("global tokens", n * c)?;
        for images in image_blocks(n, c * h * w) {
            data.extend(spatial_means(&self.local_rows(l, images)?, h * w));
        }
        Array::new(vec![n, c], data)
    }
    fn stored_global(&self, l: usize) -> Result<Option<Cow<'_, [f32]>>> {
        let layer = &self.layers[l];
        if !layer.has_global() {
            return Ok(None);
        }
        Ok(match &layer.host()?.global {
            None => None,
            Some(g) => Some(match g.as_f32() {
                Some(v) => Cow::Borrowed(v),
                None => Cow::Owned(g.to_f32()?),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::safetensors_io::tests::{bf16_bytes, write_raw};
    use safetensors::Dtype;

    #[test]
    fn a_16_bit_file_stays_16_bit_and_reads_as_the_file_does() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.safetensors");
        let v: Vec<f32> = (0..24).map(|i| i as f32 * 0.125 - 1.0).collect();
        let g: Vec<f32> = (0..6).map(|i| i as f32).collect();
        write_raw(
            &p,
            &[
                ("layers.0.local", Dtype::BF16, vec![2, 3, 2, 2], bf16_bytes(&v)),
                ("layers.0.global", Dtype::BF16, vec![2, 3], bf16_bytes(&g)),
            ],
            &[("model", "m")],
        );
        let s = StoredFeatures::load(&p).unwrap();
        assert_eq!(s.precision(), Precision::Bf16);
        assert_eq!(s.layers()[0].host().unwrap().local.bytes(), 48);
        let file = FeatureFile::open(&p).unwrap();
        assert_eq!(s.local_rows(0, 0..2).unwrap(), file.local_rows(0, 0..2).unwrap());
        assert_eq!(s.global_tokens(0).unwrap(), file.global_tokens(0).unwrap());
        assert!(s.local_in_memory(0).is_none());
        let f = s.to_features().unwrap();
        assert_eq!(f.layers[0].local.data, file.local_rows(0, 0..2).unwrap().into_owned());
        let mut bad = s.clone();
        let wrong = StoredLayer::new([3, 3, 2, 2], Store::zeroed("x", Precision::F16, 36).unwrap(), None).unwrap();
        assert!(bad.push(wrong).unwrap_err().to_string().contains("3 images but layer 0 has 2"));
        assert!(StoredLayer::new([2, 3, 2, 2], Store::zeroed("x", Precision::F16, 5).unwrap(), None).is_err());
    }
}
