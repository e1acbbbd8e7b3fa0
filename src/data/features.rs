//! The features file (DESIGN §2): one network's per-layer patch-token maps and global tokens on
//! a probe set of N images.

use crate::data::array::Array;

#[derive(Debug, Clone)]
pub struct LayerFeatures {
    /// `[N, C, H, W]` patch-token map.
    pub local: Array,
    /// `[N, C]` CLS/global token; `None` means "use the spatial mean of `local`".
    pub global: Option<Array>,
}

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

use std::collections::BTreeMap;
use std::path::Path;

use crate::data::safetensors_io::{write_tensors, OutTensor, TensorFile};
use crate::error::{Error, Result};

/// Reads an optional metadata key holding a JSON list of strings.
pub(crate) fn json_string_list(
    file: &TensorFile,
    key: &str,
) -> Result<Option<Vec<String>>> {
    match file.metadata().get(key) {
        None => Ok(None),
        Some(s) => serde_json::from_str::<Vec<String>>(s).map(Some).map_err(|e| {
            Error::data(
                &file.path,
                format!("metadata `{key}` is not a JSON list of strings: {}", one_line(&e)),
            )
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

impl Features {
    /// Number of probe images N (0 when there are no layers).
    pub fn n_images(&self) -> usize {
        self.layers.first().and_then(|l| l.local.shape.first().copied()).unwrap_or(0)
    }

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
        let mut data = Vec::with_capacity(n * c);
        for plane in layer.local.data.chunks_exact(hw.max(1)).take(n * c) {
            // f64 accumulation: large grids of f16-origin values otherwise lose digits.
            let sum: f64 = plane.iter().map(|&v| v as f64).sum();
            data.push((sum / hw as f64) as f32);
        }
        Array { shape: vec![n, c], data }
    }

    /// Checks the contract of DESIGN §2; `origin` names the source in error messages.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let err = |msg: String| Error::data(origin, msg);
        if self.layers.is_empty() {
            return Err(err(
                "no layers: expected tensors `layers.0.local`, `layers.1.local`, ...".into(),
            ));
        }
        let mut n0 = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let name = format!("layers.{i}.local");
            let s = &layer.local.shape;
            if s.len() != 4 || s.iter().any(|&d| d == 0) {
                return Err(err(format!(
                    "tensor `{name}` has shape {s:?}; expected [N, C, H, W] with every dimension > 0"
                )));
            }
            if layer.local.data.len() != s.iter().product::<usize>() {
                return Err(err(format!(
                    "tensor `{name}` has {} values for shape {s:?}",
                    layer.local.data.len()
                )));
            }
            match n0 {
                None => n0 = Some(s[0]),
                Some(n) if n != s[0] => {
                    return Err(err(format!(
                        "tensor `{name}` has {} images but `layers.0.local` has {n}",
                        s[0]
                    )))
                }
                _ => {}
            }
            if let Some(m) = non_finite_msg(&layer.local, &name) {
                return Err(err(m));
            }
            if let Some(g) = &layer.global {
                let gname = format!("layers.{i}.global");
                let want = vec![s[0], s[1]];
                if g.shape != want || g.data.len() != s[0] * s[1] {
                    return Err(err(format!(
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

    /// Loads and validates a features file (DESIGN §2).
    pub fn load(path: &Path) -> Result<Features> {
        let file = TensorFile::open(path)?;
        let err = |msg: String| Error::data(path, msg);
        let mut slots: BTreeMap<usize, Slot> = BTreeMap::new();
        for name in file.names() {
            if !name.starts_with("layers.") {
                // Producers may store extras (e.g. logits); they are not ours to judge.
                continue;
            }
            match parse_layer_name(&name) {
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
        let mut layers = Vec::with_capacity(count);
        for (i, slot) in &slots {
            let local = file.f32(&format!("layers.{i}.local"))?;
            let global =
                if slot.global { Some(file.f32(&format!("layers.{i}.global"))?) } else { None };
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
