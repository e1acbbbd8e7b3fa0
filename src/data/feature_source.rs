//! Where a feature set's values come from: arrays in memory ([`Features`]) or a features file
//! read on demand ([`FeatureFile`]). Everything that consumes features (preparation for a fit,
//! score, predict and the monitor, the ridge baseline's global tokens, the pairing with a brain)
//! reads them through [`FeatureSource`], so a command reads only the tensors it uses, a block of
//! images at a time, and a subject-scale file is never decoded whole.

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;

use crate::data::array::Array;
use crate::data::features::{layer_slots, meta_string_list, Features};
use crate::data::precision::Precision;
use crate::data::tensor_index::TensorIndex;
use crate::error::{Error, Result};

/// A feature set (DESIGN §2) whose shapes and names are known and checked, and whose values are
/// read on request.
pub trait FeatureSource: Sync {
    /// Names the source in error messages (a file's path, or `features`).
    fn origin(&self) -> String;
    /// Free text naming the network.
    fn model(&self) -> &str;
    /// One name per layer.
    fn layer_names(&self) -> &[String];
    /// The N images' identifiers, when the source names them.
    fn stimulus_ids(&self) -> Option<&[String]>;
    /// Number of layers L.
    fn n_layers(&self) -> usize;
    /// `[N, C, H, W]` of layer `l`'s local map.
    fn local_shape(&self, l: usize) -> [usize; 4];
    /// Whether layer `l` has a stored global token (otherwise the local map's spatial mean).
    fn has_global(&self, l: usize) -> bool;
    /// The precision the values arrive in (the widest over the layers' local maps).
    fn precision(&self) -> Precision;
    /// Checks that the values a command will read are finite: the local maps of `images` (all
    /// when `None`) and every global token. In memory this scans them now; a file checks each
    /// block as it is read, so nothing is read twice. `origin` names the source in the error.
    fn check_images(&self, origin: &str, images: Option<&[usize]>) -> Result<()>;

    /// [`FeatureSource::check_images`] over every image.
    fn check(&self) -> Result<()> {
        self.check_images(&self.origin(), None)
    }
    /// Layer `l`'s whole local map `[N, C, H, W]` when it is already in memory as f32 (the fast
    /// path for small in-memory sets: no copy).
    fn local_in_memory(&self, l: usize) -> Option<&[f32]>;
    /// Images `images` of layer `l`'s local map, `[n, C, H, W]` f32, checked finite.
    fn local_rows(&self, l: usize, images: Range<usize>) -> Result<Cow<'_, [f32]>>;
    /// Layer `l`'s stored global token `[N, C]` (checked finite), or `None` when it has none.
    fn stored_global(&self, l: usize) -> Result<Option<Cow<'_, [f32]>>>;

    /// Layer `l` when it is held in device memory (given as CUDA tensors through the C ABI), so
    /// work on the same device can prepare it there instead of reading it through the host.
    #[cfg(feature = "cuda")]
    fn device_layer(&self, _l: usize) -> Option<&crate::cuda::resident::DeviceLayer> {
        None
    }

    /// Images N.
    fn n_images(&self) -> usize {
        if self.n_layers() == 0 {
            0
        } else {
            self.local_shape(0)[0]
        }
    }

    /// Channels per layer.
    fn widths(&self) -> Vec<usize> {
        (0..self.n_layers()).map(|l| self.local_shape(l)[1]).collect()
    }

    /// Layer `l`'s global token `[N, C]`: the stored one, or the spatial mean of the local map,
    /// read a block of images at a time.
    fn global_tokens(&self, l: usize) -> Result<Array> {
        let [n, c, h, w] = self.local_shape(l);
        if let Some(g) = self.stored_global(l)? {
            return Array::new(vec![n, c], g.into_owned());
        }
        let mut data = crate::data::limits::try_with_capacity("global tokens", n * c)?;
        for images in image_blocks(n, c * h * w) {
            let rows = self.local_rows(l, images)?;
            data.extend(spatial_means(&rows, h * w));
        }
        Array::new(vec![n, c], data)
    }
}

/// Consecutive blocks of images covering `0..n`, each at most about 64 MiB of f32 (one image at
/// least): what a streaming reader holds at once.
pub fn image_blocks(n: usize, values_per_image: usize) -> impl Iterator<Item = Range<usize>> {
    const BLOCK_VALUES: usize = 16 << 20;
    let k = (BLOCK_VALUES / values_per_image.max(1)).max(1);
    (0..n).step_by(k).map(move |s| s..(s + k).min(n))
}

/// The mean of every plane of `hw` values (f64 accumulation: large grids of f16-origin values
/// otherwise lose digits). The one definition of a missing global token.
pub fn spatial_means(planes: &[f32], hw: usize) -> impl Iterator<Item = f32> + '_ {
    planes.chunks_exact(hw.max(1)).map(move |p| {
        let sum: f64 = p.iter().map(|&v| v as f64).sum();
        (sum / hw as f64) as f32
    })
}

impl FeatureSource for Features {
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
        let s = &self.layers[l].local.shape;
        std::array::from_fn(|k| s.get(k).copied().unwrap_or(0))
    }
    fn has_global(&self, l: usize) -> bool {
        self.layers[l].global.is_some()
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn check_images(&self, origin: &str, images: Option<&[usize]>) -> Result<()> {
        self.validate_images(origin, images)
    }
    fn local_in_memory(&self, l: usize) -> Option<&[f32]> {
        Some(&self.layers[l].local.data)
    }
    fn local_rows(&self, l: usize, images: Range<usize>) -> Result<Cow<'_, [f32]>> {
        let [n, c, h, w] = self.local_shape(l);
        if images.start > images.end || images.end > n {
            return Err(Error::invalid(format!("images {images:?} of layer {l} with {n} images")));
        }
        let row = c * h * w;
        Ok(Cow::Borrowed(&self.layers[l].local.data[images.start * row..images.end * row]))
    }
    fn stored_global(&self, l: usize) -> Result<Option<Cow<'_, [f32]>>> {
        Ok(self.layers[l].global.as_ref().map(|g| Cow::Borrowed(&g.data[..])))
    }
}

/// A features file opened by its header: the layer structure, names and ids are read and
/// checked at once, the values only when a command reads them (each block checked finite as it
/// is read, errors naming the file, the tensor and the index).
#[derive(Debug)]
pub struct FeatureFile {
    index: TensorIndex,
    model: String,
    layer_names: Vec<String>,
    stimulus_ids: Option<Vec<String>>,
    shapes: Vec<[usize; 4]>,
    globals: Vec<bool>,
    precision: Precision,
}

impl FeatureFile {
    /// Opens and checks a features file (DESIGN §2) without reading its values.
    pub fn open(path: &Path) -> Result<FeatureFile> {
        let index = TensorIndex::open(path)?;
        let err = |msg: String| Error::data(path, msg);
        let globals = layer_slots(path, &index.names())?;
        if globals.is_empty() {
            return Err(err("no layers: expected tensors `layers.0.local`, `layers.1.local`, ...".into()));
        }
        crate::data::limits::positive_at_most("the number of layers", globals.len(), crate::data::limits::MAX_LAYERS)
            .map_err(|e| err(e.to_string()))?;
        let mut shapes = Vec::with_capacity(globals.len());
        let mut precision: Option<Precision> = None;
        let mut n0 = None;
        for (i, &has_global) in globals.iter().enumerate() {
            let name = format!("layers.{i}.local");
            index.check_float(&name)?;
            let s = index.shape(&name)?;
            if s.len() != 4 || s.contains(&0) {
                return Err(err(format!(
                    "tensor `{name}` has shape {s:?}; expected [N, C, H, W] with every dimension > 0"
                )));
            }
            crate::data::limits::elements(&format!("tensor `{name}`"), s).map_err(|e| err(e.to_string()))?;
            let shape = [s[0], s[1], s[2], s[3]];
            match n0 {
                None => n0 = Some(shape[0]),
                Some(n) if n != shape[0] => {
                    return Err(err(format!("tensor `{name}` has {} images but `layers.0.local` has {n}", shape[0])))
                }
                _ => {}
            }
            let p = Precision::of_dtype(index.dtype(&name)?);
            // Mixed precisions are kept in the widest of them.
            precision = Some(match precision {
                None => p,
                Some(q) if q == p => p,
                Some(_) => Precision::F32,
            });
            if has_global {
                let gname = format!("layers.{i}.global");
                index.check_float(&gname)?;
                let want = [shape[0], shape[1]];
                if index.shape(&gname)? != want {
                    return Err(err(format!(
                        "tensor `{gname}` has shape {:?}; expected {want:?} (images × channels of `{name}`)",
                        index.shape(&gname)?
                    )));
                }
            }
            shapes.push(shape);
        }
        let model = match index.metadata().get("model") {
            Some(m) => m.clone(),
            None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        let count = globals.len();
        let layer_names = meta_string_list(path, index.metadata(), "layer_names")?
            .unwrap_or_else(|| (0..count).map(|i| format!("layer{i}")).collect());
        if layer_names.len() != count {
            return Err(err(format!("`layer_names` has {} names but there are {count} layers", layer_names.len())));
        }
        let stimulus_ids = meta_string_list(path, index.metadata(), "stimulus_ids")?;
        let n = shapes[0][0];
        if let Some(ids) = &stimulus_ids {
            if ids.len() != n {
                return Err(err(format!("`stimulus_ids` has {} entries but there are {n} images", ids.len())));
            }
        }
        Ok(FeatureFile { index, model, layer_names, stimulus_ids, shapes, globals, precision: precision.unwrap_or_default() })
    }

    /// The features file.
    pub fn path(&self) -> &Path {
        self.index.path()
    }

    /// A whole tensor in the precision it is stored in (F64 as f32), checked finite, read a
    /// block of rows at a time (the values pass through f32 exactly).
    pub fn read_store(&self, name: &str) -> Result<crate::data::Store> {
        let shape = self.index.shape(name)?.to_vec();
        let precision = Precision::of_dtype(self.index.dtype(name)?);
        let count = crate::data::limits::elements(&format!("tensor `{name}`"), &shape)?;
        let mut store = crate::data::Store::zeroed(name, precision, count)?;
        let n = shape.first().copied().unwrap_or(1);
        let row = count / n.max(1);
        for rows in image_blocks(n, row) {
            let block = self.read_checked(name, rows.clone())?;
            store.write(rows.start * row, &block);
        }
        Ok(store)
    }

    /// Replaces the descriptive metadata (the C ABI's `ft_features_set_metadata`); the caller
    /// has checked the counts.
    pub fn set_names(&mut self, model: Option<String>, layer_names: Option<Vec<String>>, ids: Option<Vec<String>>) {
        if let Some(m) = model {
            self.model = m;
        }
        if let Some(n) = layer_names {
            self.layer_names = n;
        }
        if ids.is_some() {
            self.stimulus_ids = ids;
        }
    }

    /// Reads rows of a tensor and checks them finite, naming the first bad value by its index
    /// in the whole tensor.
    fn read_checked(&self, name: &str, rows: Range<usize>) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.index.read_rows(name, rows.clone(), &mut out)?;
        if let Some(i) = crate::data::array::first_non_finite(&out) {
            let shape = self.index.shape(name)?.to_vec();
            let row: usize = shape[1..].iter().product();
            let full = Array { shape, data: Vec::new() };
            return Err(Error::data(
                self.path(),
                format!(
                    "tensor `{name}` has a non-finite value ({}) at index {:?}",
                    out[i],
                    full.unravel(rows.start * row + i)
                ),
            ));
        }
        Ok(out)
    }
}

impl FeatureSource for FeatureFile {
    fn origin(&self) -> String {
        self.path().display().to_string()
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
        self.shapes.len()
    }
    fn local_shape(&self, l: usize) -> [usize; 4] {
        self.shapes[l]
    }
    fn has_global(&self, l: usize) -> bool {
        self.globals[l]
    }
    fn precision(&self) -> Precision {
        self.precision
    }
    fn check_images(&self, _origin: &str, _images: Option<&[usize]>) -> Result<()> {
        Ok(())
    }
    fn local_in_memory(&self, _l: usize) -> Option<&[f32]> {
        None
    }
    fn local_rows(&self, l: usize, images: Range<usize>) -> Result<Cow<'_, [f32]>> {
        Ok(Cow::Owned(self.read_checked(&format!("layers.{l}.local"), images)?))
    }
    fn stored_global(&self, l: usize) -> Result<Option<Cow<'_, [f32]>>> {
        if !self.globals[l] {
            return Ok(None);
        }
        let n = self.shapes[l][0];
        Ok(Some(Cow::Owned(self.read_checked(&format!("layers.{l}.global"), 0..n)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::safetensors_io::tests::{bf16_bytes, f16_bytes, write_raw};
    use crate::data::features::tests::sample;
    use safetensors::Dtype;

    /// The file reader gives what the whole-file loader gives, block by block.
    #[test]
    fn file_source_reads_what_load_reads() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.safetensors");
        let f = sample();
        f.save(&p).unwrap();
        let file = FeatureFile::open(&p).unwrap();
        let mem = Features::load(&p).unwrap();
        assert_eq!(file.model(), "toy");
        assert_eq!(file.layer_names(), mem.layer_names.as_slice());
        assert_eq!(file.stimulus_ids(), mem.stimulus_ids.as_deref());
        assert_eq!((file.n_images(), file.widths()), (3, vec![4, 5]));
        assert_eq!(file.precision(), Precision::F32);
        for l in 0..2 {
            assert_eq!(file.local_shape(l), FeatureSource::local_shape(&mem, l));
            assert_eq!(file.local_rows(l, 1..3).unwrap(), mem.local_rows(l, 1..3).unwrap());
            assert_eq!(file.global_tokens(l).unwrap(), mem.global(l));
            assert_eq!(mem.global_tokens(l).unwrap(), mem.global(l));
        }
        assert!(file.local_in_memory(0).is_none() && mem.local_in_memory(0).is_some());
    }

    #[test]
    fn file_source_keeps_16_bit_precision_and_names_bad_values() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.safetensors");
        let mut v: Vec<f32> = (0..16).map(|i| i as f32 * 0.5).collect();
        write_raw(&p, &[("layers.0.local", Dtype::F16, vec![2, 2, 2, 2], f16_bytes(&v))], &[]);
        assert_eq!(FeatureFile::open(&p).unwrap().precision(), Precision::F16);
        write_raw(&p, &[("layers.0.local", Dtype::BF16, vec![2, 2, 2, 2], bf16_bytes(&v))], &[]);
        assert_eq!(FeatureFile::open(&p).unwrap().precision(), Precision::Bf16);
        write_raw(
            &p,
            &[
                ("layers.0.local", Dtype::BF16, vec![2, 2, 2, 2], bf16_bytes(&v)),
                ("layers.1.local", Dtype::F16, vec![2, 2, 2, 2], f16_bytes(&v)),
            ],
            &[],
        );
        assert_eq!(FeatureFile::open(&p).unwrap().precision(), Precision::F32);
        v[13] = f32::INFINITY;
        write_raw(&p, &[("layers.0.local", Dtype::F16, vec![2, 2, 2, 2], f16_bytes(&v))], &[]);
        let file = FeatureFile::open(&p).unwrap();
        // The first image is fine; the second holds the bad value at [1, 1, 0, 1].
        file.local_rows(0, 0..1).unwrap();
        let e = file.local_rows(0, 1..2).unwrap_err().to_string();
        assert!(e.contains("f.safetensors") && e.contains("`layers.0.local`") && e.contains("[1, 1, 0, 1]"), "{e}");
    }

    #[test]
    fn file_source_refuses_bad_structure_before_reading() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.safetensors");
        let z = |n: usize| vec![0u8; 4 * n];
        let open = |t: &[(&str, Dtype, Vec<usize>, Vec<u8>)], m: &[(&str, &str)]| {
            write_raw(&p, t, m);
            FeatureFile::open(&p).unwrap_err().to_string()
        };
        let l0 = ("layers.0.local", Dtype::F32, vec![2, 1, 2, 2], z(8));
        assert!(open(&[("x", Dtype::F32, vec![1], z(1))], &[]).contains("no layers"));
        assert!(open(&[("layers.0.local", Dtype::F32, vec![2, 4], z(8))], &[]).contains("[N, C, H, W]"));
        let e = open(&[l0.clone(), ("layers.1.local", Dtype::F32, vec![3, 1, 2, 2], z(12))], &[]);
        assert!(e.contains("has 3 images"), "{e}");
        let e = open(&[l0.clone(), ("layers.0.global", Dtype::F32, vec![2, 2], z(4))], &[]);
        assert!(e.contains("`layers.0.global`") && e.contains("[2, 1]"), "{e}");
        let e = open(std::slice::from_ref(&l0), &[("layer_names", "[\"a\", \"b\"]")]);
        assert!(e.contains("`layer_names` has 2 names"), "{e}");
        let e = open(std::slice::from_ref(&l0), &[("stimulus_ids", "[\"a\"]")]);
        assert!(e.contains("`stimulus_ids` has 1 entries"), "{e}");
        let e = open(&[("layers.0.local", Dtype::I32, vec![2, 1, 2, 2], z(8))], &[]);
        assert!(e.contains("dtype I32"), "{e}");
    }
}
