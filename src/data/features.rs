//! The features file (DESIGN §2): one network's per-layer patch-token maps and global tokens on
//! a probe set of N images.

use std::collections::BTreeMap;
use std::path::Path;

use crate::data::array::Array;
use crate::data::safetensors_io::{write_tensors, OutTensor, TensorFile};
use crate::error::{Error, Result};

/// One layer of a feature set.
#[derive(Debug, Clone)]
pub struct LayerFeatures {
    /// `[N, C, H, W]` patch-token map.
    pub local: Array,
    /// `[N, C]` CLS/global token; `None` means "use the spatial mean of `local`".
    pub global: Option<Array>,
}

/// One network's features of the N probe images, in f32 and in memory. [`Features::load`]
/// reads and validates a file; [`crate::data::FeatureFile`] reads one a block of images at a
/// time instead.
#[derive(Debug, Clone)]
pub struct Features {
    /// Free text from the file's `model` metadata.
    pub model: String,
    /// One name per layer (from `layer_names` metadata, else `layer{i}`).
    pub layer_names: Vec<String>,
    /// Optional stimulus ids, N strings.
    pub stimulus_ids: Option<Vec<String>>,
    /// Layers in depth order.
    pub layers: Vec<LayerFeatures>,
}

/// Reads an optional metadata key holding a JSON list of strings.
pub(crate) fn json_string_list(file: &TensorFile, key: &str) -> Result<Option<Vec<String>>> {
    meta_string_list(&file.path, file.metadata(), key)
}

/// [`json_string_list`] from a file's metadata map.
pub(crate) fn meta_string_list(
    path: &Path,
    meta: &std::collections::HashMap<String, String>,
    key: &str,
) -> Result<Option<Vec<String>>> {
    match meta.get(key) {
        None => Ok(None),
        Some(s) => serde_json::from_str::<Vec<String>>(s).map(Some).map_err(|e| {
            Error::data(path, format!("metadata `{key}` is not a JSON list of strings: {}", one_line(&e)))
        }),
    }
}

pub(crate) fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string().replace('\n', " ")
}

/// Error text for the first non-finite value of a tensor, or `None` when all are finite.
pub(crate) fn non_finite_msg(a: &Array, tensor: &str) -> Option<String> {
    let i = a.first_non_finite()?;
    Some(format!(
        "tensor `{tensor}` has a non-finite value ({}) at index {:?}",
        a.data[i],
        a.unravel(i)
    ))
}

/// [`non_finite_msg`] over the rows (first index) `rows` of `a` only. Rows past the end are
/// not there to check: the caller compares the image count with what it expects.
fn non_finite_rows_msg(a: &Array, rows: &[usize], tensor: &str) -> Option<String> {
    use rayon::prelude::*;
    let n = a.shape.first().copied().unwrap_or(0);
    let row = a.data.len().checked_div(n).unwrap_or(0);
    let in_range: Vec<usize> = rows.iter().copied().filter(|&r| r < n).collect();
    // One image is smaller than `first_non_finite`'s parallel block: the images are checked in
    // parallel instead (the monitor checks its held-out images at every observation).
    let bad = in_range.par_iter().find_first(|&&r| crate::data::array::first_non_finite(&a.data[r * row..(r + 1) * row]).is_some())?;
    let at = bad * row;
    let i = crate::data::array::first_non_finite(&a.data[at..at + row])?;
    Some(format!(
        "tensor `{tensor}` has a non-finite value ({}) at index {:?}",
        a.data[at + i],
        a.unravel(at + i)
    ))
}

#[derive(Default)]
struct Slot {
    local: bool,
    global: bool,
}

/// Parses `layers.{i}.local` / `layers.{i}.global`, accepting only the canonical decimal index
/// so that `layers.01.local` cannot shadow `layers.1.local`.
fn parse_layer_name(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("layers.")?;
    let (idx, kind) = rest.split_once('.')?;
    let i: usize = idx.parse().ok()?;
    (i.to_string() == idx).then_some((i, kind))
}

/// The layers a features file holds, from its tensor names: per layer `0..L`, whether it has a
/// stored global token. Refuses unknown `layers.*` names, a global without its local map and gaps
/// in the indices.
pub(crate) fn layer_slots(path: &Path, names: &[String]) -> Result<Vec<bool>> {
    let err = |msg: String| Error::data(path, msg);
    let mut slots: BTreeMap<usize, Slot> = BTreeMap::new();
    for name in names {
        if !name.starts_with("layers.") {
            // Producers may store extras (e.g. logits); they are not ours to judge.
            continue;
        }
        match parse_layer_name(name) {
            Some((i, "local")) => slots.entry(i).or_default().local = true,
            Some((i, "global")) => slots.entry(i).or_default().global = true,
            _ => {
                return Err(err(format!(
                    "unexpected tensor `{name}`; layer tensors must be named \
                     `layers.{{i}}.local` or `layers.{{i}}.global`"
                )))
            }
        }
    }
    for (&i, slot) in &slots {
        if !slot.local {
            return Err(err(format!("layer {i} has no local map `layers.{i}.local`")));
        }
    }
    let count = slots.keys().next_back().map_or(0, |&m| m + 1);
    if let Some(missing) = (0..count).find(|i| !slots.contains_key(i)) {
        return Err(err(format!(
            "layer indices must run 0..L-1 without gaps: `layers.{missing}.local` is missing \
             but `layers.{}.local` exists",
            count - 1
        )));
    }
    Ok(slots.values().map(|s| s.global).collect())
}

impl Features {
    /// Number of probe images N (0 when there are no layers).
    pub fn n_images(&self) -> usize {
        self.layers.first().and_then(|l| l.local.shape.first().copied()).unwrap_or(0)
    }

    /// Number of layers L.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// `[N, C_l]` global token of layer `l`: the stored CLS token, or the spatial mean of the
    /// local map when the file has none. Panics if `l` is out of range or the layer is not
    /// 4-D (call [`Features::validate`] first).
    pub fn global(&self, l: usize) -> Array {
        let layer = &self.layers[l];
        if let Some(g) = &layer.global {
            return g.clone();
        }
        let s = &layer.local.shape;
        let (n, c, hw) = (s[0], s[1], s[2] * s[3]);
        let data: Vec<f32> =
            crate::data::feature_source::spatial_means(&layer.local.data, hw).take(n * c).collect();
        Array { shape: vec![n, c], data }
    }

    /// Checks the contract of DESIGN §2; `origin` names the source in error messages.
    pub fn validate(&self, origin: &str) -> Result<()> {
        self.validate_images(origin, None)
    }

    /// [`Features::validate`] where only the local maps of the images `images` will be read
    /// (the monitor's retention reads only the held-out images): every shape is checked, but the
    /// finite check of the local maps covers only those images (global tokens: all of them).
    /// The finite check reads every value, gigabytes for a large probe set; a value that is never
    /// read cannot make a result undefined.
    pub fn validate_images(&self, origin: &str, images: Option<&[usize]>) -> Result<()> {
        let err = |msg: String| Error::data(origin, msg);
        let shape_err = |tensor: &str, msg: String| Error::shape_in(origin, tensor, msg);
        if self.layers.is_empty() {
            return Err(err(
                "no layers: expected tensors `layers.0.local`, `layers.1.local`, ...".into()
            ));
        }
        let mut n0 = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let name = format!("layers.{i}.local");
            let s = &layer.local.shape;
            if s.len() != 4 || s.contains(&0) {
                return Err(shape_err(&name, format!(
                    "tensor `{name}` has shape {s:?}; expected [N, C, H, W] with every dimension > 0"
                )));
            }
            if layer.local.data.len() != s.iter().product::<usize>() {
                return Err(shape_err(&name, format!(
                    "tensor `{name}` has {} values for shape {s:?}",
                    layer.local.data.len()
                )));
            }
            match n0 {
                None => n0 = Some(s[0]),
                Some(n) if n != s[0] => {
                    return Err(shape_err(&name, format!(
                        "tensor `{name}` has {} images but `layers.0.local` has {n}",
                        s[0]
                    )))
                }
                _ => {}
            }
            let bad = match images {
                None => non_finite_msg(&layer.local, &name),
                Some(idx) => non_finite_rows_msg(&layer.local, idx, &name),
            };
            if let Some(m) = bad {
                return Err(err(m));
            }
            if let Some(g) = &layer.global {
                let gname = format!("layers.{i}.global");
                let want = vec![s[0], s[1]];
                if g.shape != want || g.data.len() != s[0] * s[1] {
                    return Err(shape_err(&gname, format!(
                        "tensor `{gname}` has shape {:?}; expected {want:?} (images × channels of \
                         `{name}`)",
                        g.shape
                    )));
                }
                if let Some(m) = non_finite_msg(g, &gname) {
                    return Err(err(m));
                }
            }
        }
        let l = self.layers.len();
        if self.layer_names.len() != l {
            return Err(err(format!(
                "`layer_names` has {} names but there are {l} layers",
                self.layer_names.len()
            )));
        }
        let n = self.n_images();
        if let Some(ids) = &self.stimulus_ids {
            if ids.len() != n {
                return Err(err(format!(
                    "`stimulus_ids` has {} entries but there are {n} images",
                    ids.len()
                )));
            }
        }
        Ok(())
    }

    /// Loads and validates a features file (DESIGN §2), every value decoded to f32 in memory.
    /// Commands read large files through [`crate::data::FeatureFile`] instead, which reads only
    /// what is used, a block at a time.
    pub fn load(path: &Path) -> Result<Features> {
        let file = TensorFile::open(path)?;
        let slots = layer_slots(path, &file.names())?;
        let count = slots.len();
        let mut layers = Vec::with_capacity(count);
        for (i, &has_global) in slots.iter().enumerate() {
            let local = file.f32(&format!("layers.{i}.local"))?;
            let global = if has_global { Some(file.f32(&format!("layers.{i}.global"))?) } else { None };
            layers.push(LayerFeatures { local, global });
        }
        let model = match file.metadata().get("model") {
            Some(m) => m.clone(),
            None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        let layer_names = json_string_list(&file, "layer_names")?
            .unwrap_or_else(|| (0..count).map(|i| format!("layer{i}")).collect());
        let stimulus_ids = json_string_list(&file, "stimulus_ids")?;
        let f = Features { model, layer_names, stimulus_ids, layers };
        f.validate(&path.display().to_string())?;
        Ok(f)
    }

    /// Writes the features file (f32, atomic). Refuses data that [`Features::load`] would
    /// reject, so a saved file always loads.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.validate(&format!("{} (not written)", path.display()))?;
        let mut tensors = Vec::with_capacity(2 * self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            tensors.push((format!("layers.{i}.local"), OutTensor::from_array(&l.local)));
            if let Some(g) = &l.global {
                tensors.push((format!("layers.{i}.global"), OutTensor::from_array(g)));
            }
        }
        let mut meta = BTreeMap::new();
        meta.insert("model".to_string(), self.model.clone());
        meta.insert("layer_names".to_string(), serde_json::to_string(&self.layer_names).unwrap());
        if let Some(ids) = &self.stimulus_ids {
            meta.insert("stimulus_ids".to_string(), serde_json::to_string(ids).unwrap());
        }
        write_tensors(path, &tensors, &meta)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::safetensors_io::tests::{bf16_bytes, f16_bytes, write_raw};
    use safetensors::Dtype;

    fn arr(shape: Vec<usize>, seed: f32) -> Array {
        let n = shape.iter().product();
        Array { shape, data: (0..n).map(|i| ((i as f32) * 0.37 + seed).sin()).collect() }
    }

    /// A small two-layer feature set: one layer without a global token, one with.
    pub(crate) fn sample() -> Features {
        Features {
            model: "toy".into(),
            layer_names: vec!["a".into(), "b".into()],
            stimulus_ids: Some(vec!["s0".into(), "s1".into(), "s2".into()]),
            layers: vec![
                LayerFeatures { local: arr(vec![3, 4, 2, 2], 0.0), global: None },
                LayerFeatures {
                    local: arr(vec![3, 5, 3, 1], 1.0),
                    global: Some(arr(vec![3, 5], 2.0)),
                },
            ],
        }
    }

    fn data_err(r: Result<impl std::fmt::Debug>) -> String {
        let e = r.unwrap_err();
        // A file's content: its data, or a tensor's shape or dtype in it.
        assert!(
            matches!(e, Error::Data { .. } | Error::Shape { file: Some(_), .. } | Error::Dtype { file: Some(_), .. }),
            "{e}"
        );
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        s
    }

    #[test]
    fn counts_and_global_mean() {
        let f = sample();
        assert_eq!(f.n_images(), 3);
        assert_eq!(f.n_layers(), 2);
        let g = f.global(0);
        assert_eq!(g.shape, vec![3, 4]);
        let l = &f.layers[0].local.data;
        // [n=1, c=2] is the mean of the 4 cells of that plane.
        let plane = &l[(4 + 2) * 4..(4 + 2) * 4 + 4];
        let want = plane.iter().sum::<f32>() / 4.0;
        assert!((g.data[4 + 2] - want).abs() < 1e-6);
        assert_eq!(f.global(1), f.layers[1].global.clone().unwrap());
        f.validate("x").unwrap();
    }

    #[test]
    fn validate_paths() {
        let e = |f: Features| data_err(f.validate("feat.safetensors").map(|_| ()));
        let mut f = sample();
        f.layers.clear();
        f.layer_names.clear();
        assert!(e(f).contains("no layers"));

        let mut f = sample();
        f.layers[1].local = arr(vec![3, 5, 3], 0.0);
        let s = e(f);
        assert!(
            s.contains("feat.safetensors")
                && s.contains("`layers.1.local`")
                && s.contains("[3, 5, 3]"),
            "{s}"
        );

        let mut f = sample();
        f.layers[0].local = arr(vec![3, 4, 0, 2], 0.0);
        assert!(e(f).contains("every dimension > 0"));

        let mut f = sample();
        f.layers[1].local = arr(vec![2, 5, 3, 1], 0.0);
        assert!(e(f).contains("`layers.1.local` has 2 images but `layers.0.local` has 3"));

        let mut f = sample();
        f.layers[1].global = Some(arr(vec![3, 4], 0.0));
        let s = e(f);
        assert!(s.contains("`layers.1.global`") && s.contains("[3, 5]"), "{s}");

        let mut f = sample();
        f.layers[0].local.data[4 * 4 * 2 + 3] = f32::NAN;
        let s = e(f);
        assert!(
            s.contains("`layers.0.local`") && s.contains("NaN") && s.contains("[2, 0, 1, 1]"),
            "{s}"
        );

        let mut f = sample();
        f.layers[1].global.as_mut().unwrap().data[7] = f32::INFINITY;
        let s = e(f);
        assert!(
            s.contains("`layers.1.global`") && s.contains("inf") && s.contains("[1, 2]"),
            "{s}"
        );

        let mut f = sample();
        f.layer_names.pop();
        assert!(e(f).contains("`layer_names` has 1 names but there are 2 layers"));

        let mut f = sample();
        f.stimulus_ids.as_mut().unwrap().pop();
        assert!(e(f).contains("`stimulus_ids` has 2 entries but there are 3 images"));
    }

    #[test]
    fn save_load_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.safetensors");
        let f = sample();
        f.save(&p).unwrap();
        let g = Features::load(&p).unwrap();
        assert_eq!(g.model, "toy");
        assert_eq!(g.layer_names, f.layer_names);
        assert_eq!(g.stimulus_ids, f.stimulus_ids);
        assert_eq!(g.layers.len(), 2);
        for (a, b) in f.layers.iter().zip(&g.layers) {
            assert_eq!(a.local, b.local);
            assert_eq!(a.global, b.global);
        }
        // Deterministic bytes.
        let q = d.path().join("g.safetensors");
        g.save(&q).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&q).unwrap());
    }

    #[test]
    fn save_refuses_invalid() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.safetensors");
        let mut f = sample();
        f.layer_names.push("extra".into());
        let s = data_err(f.save(&p));
        assert!(s.contains("not written"), "{s}");
        assert!(!p.exists());
    }

    #[test]
    fn load_f16_bf16_and_defaults() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("vit_small.safetensors");
        let v0: Vec<f32> = (0..2 * 3 * 2 * 2).map(|i| i as f32 * 0.25).collect();
        let v1: Vec<f32> = (0..4).map(|i| i as f32 - 1.0).collect();
        let g1: Vec<f32> = vec![0.5, 1.5, -2.0, 4.0];
        write_raw(
            &p,
            &[
                ("layers.0.local", Dtype::F16, vec![2, 3, 2, 2], f16_bytes(&v0)),
                ("layers.1.local", Dtype::BF16, vec![2, 2, 1, 1], bf16_bytes(&v1)),
                ("layers.1.global", Dtype::BF16, vec![2, 2], bf16_bytes(&g1)),
                ("logits", Dtype::F32, vec![1], 1f32.to_le_bytes().to_vec()),
            ],
            &[],
        );
        let f = Features::load(&p).unwrap();
        assert_eq!(f.model, "vit_small");
        assert_eq!(f.layer_names, vec!["layer0", "layer1"]);
        assert_eq!(f.stimulus_ids, None);
        assert_eq!(f.layers[0].local.data, v0);
        assert_eq!(f.layers[1].local.data, v1);
        assert_eq!(f.layers[1].global.as_ref().unwrap().data, g1);
        assert!(f.layers[0].global.is_none());
        // Re-saved as f32 and reloaded: identical values.
        let q = d.path().join("out.safetensors");
        f.save(&q).unwrap();
        let g = Features::load(&q).unwrap();
        assert_eq!(g.layers[0].local, f.layers[0].local);
        assert_eq!(g.model, "vit_small");
    }

    fn f32b(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
    }

    #[test]
    fn load_structure_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.safetensors");
        let load = |t: &[(&str, Dtype, Vec<usize>, Vec<u8>)], m: &[(&str, &str)]| {
            write_raw(&p, t, m);
            data_err(Features::load(&p).map(|_| ()))
        };
        let l0 = ("layers.0.local", Dtype::F32, vec![2, 1, 2, 2], f32b(8));
        let s = load(&[l0.clone(), ("layers.1.global", Dtype::F32, vec![2, 1], f32b(2))], &[]);
        assert!(
            s.contains("layer 1 has no local map `layers.1.local`") && s.contains("f.safetensors"),
            "{s}"
        );
        let s = load(&[l0.clone(), ("layers.2.local", Dtype::F32, vec![2, 1, 2, 2], f32b(8))], &[]);
        assert!(s.contains("`layers.1.local` is missing"), "{s}");
        let s = load(&[("layers.1.local", Dtype::F32, vec![2, 1, 2, 2], f32b(8))], &[]);
        assert!(s.contains("`layers.0.local` is missing"), "{s}");
        let s = load(&[l0.clone(), ("layers.01.local", Dtype::F32, vec![1], f32b(1))], &[]);
        assert!(s.contains("unexpected tensor `layers.01.local`"), "{s}");
        let s = load(&[("other", Dtype::F32, vec![1], f32b(1))], &[]);
        assert!(s.contains("no layers"), "{s}");
        let s = load(std::slice::from_ref(&l0), &[("layer_names", "[\"a\", ")]);
        assert!(s.contains("metadata `layer_names` is not a JSON list of strings"), "{s}");
        let s = load(std::slice::from_ref(&l0), &[("stimulus_ids", "{\"a\": 1}")]);
        assert!(s.contains("metadata `stimulus_ids`"), "{s}");
        let s = load(std::slice::from_ref(&l0), &[("stimulus_ids", "[\"a\"]")]);
        assert!(s.contains("`stimulus_ids` has 1 entries but there are 2 images"), "{s}");
        let s = load(&[("layers.0.local", Dtype::I32, vec![2, 1, 2, 2], f32b(8))], &[]);
        assert!(s.contains("`layers.0.local` has dtype I32"), "{s}");
        let mut nan = f32b(8);
        nan[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
        let s = load(&[("layers.0.local", Dtype::F32, vec![2, 1, 2, 2], nan)], &[]);
        assert!(s.contains("`layers.0.local`") && s.contains("[1, 0, 0, 1]"), "{s}");
        // Metadata model and names are honoured.
        write_raw(&p, &[l0], &[("model", "resnet"), ("layer_names", "[\"conv1\"]")]);
        let f = Features::load(&p).unwrap();
        assert_eq!((f.model.as_str(), f.layer_names[0].as_str()), ("resnet", "conv1"));
    }

    #[test]
    fn truncated_features_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.safetensors");
        sample().save(&p).unwrap();
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() - 7]).unwrap();
        let s = data_err(Features::load(&p).map(|_| ()));
        assert!(s.contains("truncated or corrupt safetensors file"), "{s}");
    }
}
