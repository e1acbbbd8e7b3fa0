//! Saving and loading encoders with the DESIGN §3.7 tensor names, so checkpoints of the original
//! PyTorch implementation load by renaming nothing. Everything that is not a parameter (widths,
//! grid, coordinate normalisation, the split that produced it) travels in the metadata.

use crate::data::io::atomic_write;
use crate::data::Array;
use crate::data::safetensors_io::{serialize_tensors, OutTensor, TensorFile};
use crate::error::{Error, Result};
use crate::model::encoder::{Encoder, EncoderSpec};
use crate::model::posenc::CoordNorm;
use crate::model::resample::Resample;
use crate::model::fit::FitSummary;
use candle_core::{Device, Tensor};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;

/// The `format` metadata value of an encoder file.
pub const FORMAT: &str = "factortopy-encoder/1";

/// The optional tensor with the fitted voxels' coordinates.
pub const COORDS: &str = "voxel_coords";

/// The metadata key of the grid resampling (`bilinear`, `area` or `auto`). Encoder files written
/// before it existed, and checkpoints of the original implementation, have none: they were
/// fitted on bilinearly resampled maps (DESIGN §3.1), so a missing key reads as `bilinear`.
pub const RESAMPLE: &str = "resample";

/// Metadata key of the per-layer units the fit put the features in (channel means and scales,
/// JSON). Absent in encoders fitted on the features as they come (DESIGN §3, converted
/// checkpoints, files written before the setting existed).
pub const LAYER_UNITS: &str = "layer_units";

/// Metadata about how a saved encoder was fitted.
#[derive(Debug, Clone, PartialEq)]
pub struct FitRecord {
    /// Fraction of images the fit held out (with the summary's seed, `score` recreates the split).
    pub val_fraction: f64,
    /// How the fit went; absent in converted checkpoints.
    pub summary: Option<FitSummary>,
    /// Coordinates `[V, 3]` of the voxels the encoder was fitted to (tensor `voxel_coords`), so
    /// `predict` needs no brain file. Absent in encoders converted from other implementations.
    pub coords: Option<Array>,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

/// Writes an encoder file (DESIGN §3.7 tensor names, the record in its metadata), atomically.
pub fn save_encoder(path: &Path, enc: &Encoder, record: &FitRecord) -> Result<()> {
    atomic_write(path, &encoder_to_bytes(enc, record)?)
}

/// The bytes of an encoder file (what [`save_encoder`] writes), for embedding an encoder in
/// another container such as the monitor's state.
pub fn encoder_to_bytes(enc: &Encoder, record: &FitRecord) -> Result<Vec<u8>> {
    let spec = &enc.spec;
    let mut host: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (name, var) in enc.named_vars() {
        let t = var.as_tensor();
        let mut shape = t.dims().to_vec();
        if name.starts_with("local_token_bottleneck.") {
            // Stored as the 1×1 convolution weight the PyTorch model has.
            shape.extend([1, 1]);
        }
        host.push((name, shape, t.flatten_all()?.to_vec1::<f32>()?));
    }
    let mut tensors: Vec<(String, OutTensor)> = host
        .iter()
        .map(|(n, s, d)| (n.clone(), OutTensor::F32 { shape: s.clone(), data: d }))
        .collect();
    if let Some(c) = &record.coords {
        if c.shape != [spec.n_voxels, 3] {
            return Err(Error::invalid(format!(
                "voxel coordinates are {:?}, the encoder has {} voxels",
                c.shape, spec.n_voxels
            )));
        }
        tensors.push((COORDS.to_string(), OutTensor::from_array(c)));
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("d".into(), spec.d.to_string());
    meta.insert("grid".into(), spec.grid.to_string());
    meta.insert(RESAMPLE.into(), spec.resample.name().into());
    if let Some(u) = &spec.layer_units {
        meta.insert(LAYER_UNITS.into(), json(u));
    }
    meta.insert("n_voxels".into(), spec.n_voxels.to_string());
    meta.insert("widths".into(), json(&spec.widths));
    meta.insert("coord_min".into(), json(&spec.coord_norm.min));
    meta.insert("coord_scale".into(), json(&spec.coord_norm.scale));
    meta.insert("layer_names".into(), json(&spec.layer_names));
    meta.insert("model".into(), spec.model.clone());
    meta.insert("val_fraction".into(), json(&record.val_fraction));
    if let Some(s) = &record.summary {
        meta.insert("fit".into(), json(s));
    }
    serialize_tensors(&tensors, &meta)
}

/// Reads and validates an encoder file.
pub fn load_encoder(path: &Path) -> Result<(Encoder, FitRecord)> {
    encoder_from_file(TensorFile::open(path)?)
}

/// Parses encoder-file bytes (see [`encoder_to_bytes`]); `origin` names them in error messages.
pub fn encoder_from_bytes(origin: &Path, bytes: Vec<u8>) -> Result<(Encoder, FitRecord)> {
    encoder_from_file(TensorFile::from_bytes(origin, bytes)?)
}

fn encoder_from_file(file: TensorFile) -> Result<(Encoder, FitRecord)> {
    let path_buf = file.path.clone();
    let path = path_buf.as_path();
    let meta = file.metadata();
    let get = |k: &str| -> Result<&String> {
        meta.get(k).ok_or_else(|| Error::data(path, format!("metadata `{k}` is missing; is this a factortopy encoder?")))
    };
    let parse = |k: &str| -> Result<serde_json::Value> {
        serde_json::from_str(get(k)?).map_err(|e| Error::data(path, format!("metadata `{k}` is not valid JSON: {e}")))
    };
    fn typed<T: DeserializeOwned>(path: &Path, k: &str, v: serde_json::Value) -> Result<T> {
        serde_json::from_value(v).map_err(|e| Error::data(path, format!("metadata `{k}`: {e}")))
    }
    if get("format")? != FORMAT {
        return Err(Error::data(path, format!("unsupported encoder format `{}` (expected {FORMAT})", get("format")?)));
    }
    let spec = EncoderSpec {
        widths: typed(path, "widths", parse("widths")?)?,
        d: typed(path, "d", parse("d")?)?,
        grid: typed(path, "grid", parse("grid")?)?,
        resample: match meta.get(RESAMPLE) {
            None => Resample::Bilinear,
            Some(name) => Resample::parse(name).map_err(|e| Error::data(path, format!("metadata `{RESAMPLE}`: {e}")))?,
        },
        n_voxels: typed(path, "n_voxels", parse("n_voxels")?)?,
        coord_norm: CoordNorm {
            min: typed(path, "coord_min", parse("coord_min")?)?,
            scale: typed(path, "coord_scale", parse("coord_scale")?)?,
        },
        layer_names: typed(path, "layer_names", parse("layer_names")?)?,
        model: get("model")?.clone(),
        layer_units: match meta.get(LAYER_UNITS) {
            None => None,
            Some(_) => {
                let units: Vec<crate::model::preparation::LayerUnits> = typed(path, LAYER_UNITS, parse(LAYER_UNITS)?)?;
                let widths: Vec<usize> = typed(path, "widths", parse("widths")?)?;
                if units.len() != widths.len() {
                    return Err(Error::data(path, format!("metadata `{LAYER_UNITS}` has {} layers, the encoder {}", units.len(), widths.len())));
                }
                // The channel counts are checked against the features where they are applied
                // (the widths themselves are checked against the size limits later).
                for (l, u) in units.iter().enumerate() {
                    u.check_values(&format!("layer {l}")).map_err(|e| Error::data(path, format!("metadata `{LAYER_UNITS}`: {e}")))?;
                }
                Some(units)
            }
        },
    };
    let record = FitRecord {
        val_fraction: typed(path, "val_fraction", parse("val_fraction")?)?,
        summary: match meta.get("fit") {
            Some(_) => Some(typed(path, "fit", parse("fit")?)?),
            None => None,
        },
        coords: None,
    };
    crate::data::limits::fraction("metadata `val_fraction`", record.val_fraction)
        .map_err(|e| Error::data(path, e.to_string()))?;
    spec.validate().map_err(|e| Error::data(path, format!("metadata: {e}")))?;
    // The tensors that scale with the metadata's sizes must be in the file with those shapes
    // before the template below allocates them: then every allocation is bounded by the file's
    // own size, whatever the metadata claims.
    let (v, d) = (spec.n_voxels, spec.d);
    let mut sized = vec![("weight".to_string(), vec![v, d]), ("bias".to_string(), vec![v])];
    for (l, &c) in spec.widths.iter().enumerate() {
        sized.push((format!("local_token_bottleneck.{l}.weight"), vec![d, c, 1, 1]));
        sized.push((format!("global_token_bottleneck.{l}.weight"), vec![d, c]));
    }
    for (name, want) in &sized {
        let have = file.shape(name)?;
        if have != want.as_slice() {
            return Err(Error::shape_in(
                path,
                name.as_str(),
                format!("tensor `{name}` has shape {have:?}, but the metadata (d, n_voxels, widths) says {want:?}"),
            ));
        }
    }
    // Build a template with the right shapes, then fill it from the file, checking each shape.
    let enc = Encoder::new(spec.clone(), 0).map_err(|e| Error::data(path, e.to_string()))?;
    for (name, var) in enc.named_vars() {
        let arr = file.f32(&name)?;
        let want: Vec<usize> = if name.starts_with("local_token_bottleneck.") {
            let mut s = var.as_tensor().dims().to_vec();
            s.extend([1, 1]);
            s
        } else {
            var.as_tensor().dims().to_vec()
        };
        if arr.shape != want {
            return Err(Error::shape_in(path, name.as_str(), format!("tensor `{name}` has shape {:?}, expected {want:?}", arr.shape)));
        }
        if let Some(i) = arr.first_non_finite() {
            return Err(Error::data(path, format!("tensor `{name}` has a non-finite value at {:?}", arr.unravel(i))));
        }
        var.set(&Tensor::from_vec(arr.data, var.as_tensor().dims(), &Device::Cpu)?)?;
    }
    let coords = if file.has(COORDS) {
        let c = file.f32(COORDS)?;
        if c.shape != [spec.n_voxels, 3] {
            return Err(Error::shape_in(path, COORDS, format!("tensor `{COORDS}` has shape {:?}, expected [{}, 3]", c.shape, spec.n_voxels)));
        }
        if let Some(i) = c.first_non_finite() {
            return Err(Error::data(path, format!("tensor `{COORDS}` has a non-finite value at {:?}", c.unravel(i))));
        }
        Some(c)
    } else {
        None
    };
    Ok((enc, FitRecord { coords, ..record }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::tiny;

    fn record() -> FitRecord {
        FitRecord { val_fraction: 0.2, summary: None, coords: None }
    }

    /// The encoder file's bytes with the metadata key `key` removed (what a file written before
    /// the key existed looks like): the safetensors header is JSON after an 8-byte length.
    fn without_metadata(bytes: &[u8], key: &str) -> Vec<u8> {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert!(header["__metadata__"].as_object_mut().unwrap().remove(key).is_some(), "no `{key}` to remove");
        let text = serde_json::to_string(&header).unwrap();
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend(text.as_bytes());
        out.extend(&bytes[8 + n..]);
        out
    }

    #[test]
    fn resampling_round_trips_and_old_files_read_as_bilinear() {
        let origin = Path::new("test.safetensors");
        for method in Resample::ALL {
            let (_, _, mut enc) = tiny(1, 3, 4);
            enc.spec.resample = method;
            let bytes = encoder_to_bytes(&enc, &record()).unwrap();
            let (back, _) = encoder_from_bytes(origin, bytes.clone()).unwrap();
            assert_eq!(back.spec, enc.spec);
            // Without the key (a file from before resampling was a setting): bilinear, and
            // every parameter as saved.
            let (old, _) = encoder_from_bytes(origin, without_metadata(&bytes, RESAMPLE)).unwrap();
            assert_eq!(old.spec.resample, Resample::Bilinear);
            assert_eq!(old.spec, crate::model::EncoderSpec { resample: Resample::Bilinear, ..enc.spec.clone() });
            for ((_, a), (_, b)) in old.named_vars().iter().zip(enc.named_vars().iter()) {
                let flat = |v: &candle_core::Var| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(flat(a), flat(b));
            }
        }
    }

    #[test]
    fn an_unknown_resampling_is_a_data_error_naming_the_key() {
        let (_, _, enc) = tiny(1, 3, 4);
        let bytes = encoder_to_bytes(&enc, &record()).unwrap();
        let key = b"\"resample\":\"bilinear\"";
        let at = bytes.windows(key.len()).position(|w| w == key).expect("the key is in the header");
        // A name of the same length, so the header's length prefix stays right.
        let mut patched = bytes.clone();
        patched[at..at + key.len()].copy_from_slice(b"\"resample\":\"triangle\"");
        let err = encoder_from_bytes(Path::new("old.safetensors"), patched).unwrap_err().to_string();
        assert!(err.contains("old.safetensors") && err.contains("resample") && err.contains("triangle"), "{err}");
    }
}
