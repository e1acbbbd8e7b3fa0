//! The monitor's state file: one safetensors file that a resumed training run loads to continue
//! the same curves.
//!
//! Tensors:
//! - `reference_encoder` U8: a complete encoder file (`save_encoder`'s format and DESIGN §3.7
//!   names, byte for byte), so the encoder serialisation exists once and the blob can be
//!   extracted and used as an encoder on its own;
//! - `reference.{l}.global` F32 `[N, C_l]`: reference global tokens (for CKA);
//! - `reference.r2` F32 `[V]`: per-voxel held-out R² of `E_0` on `Φ_0` (retention denominators);
//! - `split.train`, `split.val` I32: the probe-image split;
//! - `history` U8: the history as a JSON list of step reports, floats stored as their bits
//!   (`{"$f64": bits}`) so that a resumed run continues exactly the same numbers.
//!
//! Metadata: `format`, `config` (JSON), `brain` (fingerprint of the brain it was built for),
//! `model`, `layer_names`, `n_images`, `stimulus_ids` (optional).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::data::safetensors_io::{serialize_tensors, OutTensor, TensorFile};
use crate::data::{Array, Brain};
use crate::error::{Error, Result};
use crate::data::io::atomic_write;
use crate::model::encoder_file::{encoder_from_bytes, encoder_to_bytes};
use crate::model::fit::Split;
use crate::model::FitConfig;
use crate::monitor::{Monitor, MonitorConfig, Parts, StepReport};

pub const FORMAT: &str = "factortopy-monitor/1";

/// FNV-1a over the brain's responses (as loaded, i.e. z-scored), positions, ROI labels and names:
/// catches a state file resumed against a different subject or preprocessing.
pub(crate) fn brain_fingerprint(b: &Brain) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &x in bytes {
            h ^= x as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for s in &b.responses.shape {
        eat(&(*s as u64).to_le_bytes());
    }
    for x in b.responses.data.iter().chain(&b.coords.data) {
        eat(&x.to_le_bytes());
    }
    for r in &b.roi {
        eat(&r.to_le_bytes());
    }
    for n in &b.roi_names {
        eat(n.as_bytes());
        eat(&[0]);
    }
    format!("{h:016x}")
}

fn opt_f64(v: Option<f64>) -> Value {
    match v {
        Some(x) if x.is_finite() => json!(x),
        _ => Value::Null,
    }
}

fn config_json(c: &MonitorConfig) -> String {
    let f = &c.fit;
    json!({
        "held_out_fraction": c.held_out_fraction,
        "refit_every": c.refit_every,
        "refit_max_steps": c.refit_max_steps,
        "refit_max_seconds": opt_f64(c.refit_max_seconds),
        "forgetting_threshold": opt_f64(Some(c.forgetting_threshold)),
        "weighted": c.weighted,
        "fit": {
            "seed": f.seed,
            "val_fraction": f.val_fraction,
            "max_epochs": f.max_epochs,
            "batch_size": f.batch_size,
            "lr": f.lr,
            "weight_decay": f.weight_decay,
            "clip_norm": f.clip_norm,
            "beta": f.beta,
            "reg_lambda": f.reg_lambda,
            "reg_steps": f.reg_steps,
            "patience": f.patience,
            "min_delta": f.min_delta,
            "d": f.d,
            "grid": f.grid,
            "resample": f.resample.name(),
            "max_steps": f.max_steps,
            "max_seconds": opt_f64(f.max_seconds),
        }
    })
    .to_string()
}

fn parse_config(origin: &Path, s: &str) -> Result<MonitorConfig> {
    let bad = |m: String| Error::data(origin, format!("metadata `config`: {m}"));
    let v: Value = serde_json::from_str(s).map_err(|e| bad(e.to_string()))?;
    let num = |v: &Value, k: &str| -> Result<f64> {
        v.get(k).and_then(Value::as_f64).ok_or_else(|| bad(format!("`{k}` is missing or not a number")))
    };
    let int = |v: &Value, k: &str| -> Result<u64> {
        v.get(k).and_then(Value::as_u64).ok_or_else(|| bad(format!("`{k}` is missing or not an integer")))
    };
    let opt = |v: &Value, k: &str| -> Option<f64> { v.get(k).and_then(Value::as_f64) };
    let f = v.get("fit").ok_or_else(|| bad("`fit` is missing".into()))?;
    let fit = FitConfig {
        seed: int(f, "seed")?,
        val_fraction: num(f, "val_fraction")?,
        max_epochs: int(f, "max_epochs")? as usize,
        batch_size: int(f, "batch_size")? as usize,
        lr: num(f, "lr")?,
        weight_decay: num(f, "weight_decay")?,
        clip_norm: num(f, "clip_norm")?,
        beta: num(f, "beta")?,
        reg_lambda: num(f, "reg_lambda")?,
        reg_steps: int(f, "reg_steps")? as usize,
        patience: int(f, "patience")? as usize,
        min_delta: num(f, "min_delta")?,
        d: int(f, "d")? as usize,
        grid: int(f, "grid")? as usize,
        // States saved before the setting existed fitted with bilinear resampling.
        resample: match f.get("resample").and_then(Value::as_str) {
            None => crate::model::Resample::Bilinear,
            Some(name) => crate::model::Resample::parse(name).map_err(|e| bad(e.to_string()))?,
        },
        max_steps: f.get("max_steps").and_then(Value::as_u64).map(|x| x as usize),
        max_seconds: opt(f, "max_seconds"),
        ..FitConfig::default()
    };
    let cfg = MonitorConfig {
        fit,
        held_out_fraction: num(&v, "held_out_fraction")?,
        refit_every: int(&v, "refit_every")? as usize,
        refit_max_steps: int(&v, "refit_max_steps")? as usize,
        refit_max_seconds: opt(&v, "refit_max_seconds"),
        forgetting_threshold: opt(&v, "forgetting_threshold").unwrap_or(f64::INFINITY),
        weighted: v.get("weighted").and_then(Value::as_bool).unwrap_or(false),
        device: crate::engine::Device::Cpu,
    };
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    Ok(cfg)
}

/// JSON text does not carry every f64 exactly through serde_json's default parser (the last
/// bit can differ), and a resumed run must continue *the same* history. So the stored history
/// writes each float as `{"$f64": <its IEEE bits as an integer>}`, which is exact both ways.
fn encode_floats(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let bits = n.as_f64().expect("is_f64").to_bits();
            *v = json!({ "$f64": bits });
        }
        Value::Array(xs) => xs.iter_mut().for_each(encode_floats),
        Value::Object(m) => m.values_mut().for_each(encode_floats),
        _ => {}
    }
}

fn decode_floats(v: &mut Value) {
    let bits = match v {
        Value::Object(m) if m.len() == 1 => m.get("$f64").and_then(Value::as_u64),
        _ => None,
    };
    if let Some(b) = bits {
        // Stored values were finite (reports hold no NaN); anything else becomes null.
        *v = serde_json::Number::from_f64(f64::from_bits(b)).map(Value::Number).unwrap_or(Value::Null);
        return;
    }
    match v {
        Value::Array(xs) => xs.iter_mut().for_each(decode_floats),
        Value::Object(m) => m.values_mut().for_each(decode_floats),
        _ => {}
    }
}

fn indices_i32(xs: &[usize]) -> Vec<i32> {
    xs.iter().map(|&i| i as i32).collect()
}

impl Monitor {
    /// Writes the whole state (reference encoder, reference statistics, history and settings)
    /// to one safetensors file, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        atomic_write(path, &self.to_bytes()?)
    }

    /// The state file's bytes (what [`Monitor::save`] writes), for hosts that keep the state
    /// inside their own checkpoints.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let enc = encoder_to_bytes(&self.encoder, &self.record)?;
        let mut history = serde_json::to_value(&self.history).expect("step reports serialise");
        encode_floats(&mut history);
        let history = serde_json::to_vec(&history).expect("JSON values serialise");
        let (train, val) = (indices_i32(&self.split.train), indices_i32(&self.split.val));
        let v = self.reference_r2.len();
        let mut tensors = vec![
            ("reference_encoder".to_string(), OutTensor::U8 { shape: vec![enc.len()], data: &enc }),
            ("reference.r2".to_string(), OutTensor::F32 { shape: vec![v], data: &self.reference_r2 }),
            ("split.train".to_string(), OutTensor::I32 { shape: vec![train.len()], data: &train }),
            ("split.val".to_string(), OutTensor::I32 { shape: vec![val.len()], data: &val }),
            ("history".to_string(), OutTensor::U8 { shape: vec![history.len()], data: &history }),
        ];
        for (l, g) in self.reference_globals.iter().enumerate() {
            tensors.push((format!("reference.{l}.global"), OutTensor::from_array(g)));
        }
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("config".to_string(), config_json(&self.config));
        meta.insert("brain".to_string(), brain_fingerprint(&self.brain));
        meta.insert("model".to_string(), self.model.clone());
        meta.insert("layer_names".to_string(), serde_json::to_string(&self.layer_names).unwrap());
        meta.insert("n_images".to_string(), self.n_images.to_string());
        if let Some(ids) = &self.stimulus_ids {
            meta.insert("stimulus_ids".to_string(), serde_json::to_string(ids).unwrap());
        }
        serialize_tensors(&tensors, &meta)
    }

    /// Restores a monitor saved by [`Monitor::save`], for the same brain (checked by a
    /// fingerprint). The history continues; the history file setting is not part of the state.
    pub fn load(path: &Path, brain: &Brain) -> Result<Monitor> {
        Self::from_file(TensorFile::open(path)?, brain)
    }

    /// Restores a monitor from [`Monitor::to_bytes`]' output; `origin` names the bytes in error
    /// messages (a checkpoint path, say).
    pub fn from_bytes(origin: &Path, bytes: Vec<u8>, brain: &Brain) -> Result<Monitor> {
        Self::from_file(TensorFile::from_bytes(origin, bytes)?, brain)
    }

    fn from_file(file: TensorFile, brain: &Brain) -> Result<Monitor> {
        let path_buf = file.path.clone();
        let path = path_buf.as_path();
        let meta = file.metadata();
        let err = |m: String| Error::data(path, m);
        let get = |k: &str| -> Result<&String> {
            meta.get(k).ok_or_else(|| err(format!("metadata `{k}` is missing; is this a factortopy monitor state?")))
        };
        if get("format")? != FORMAT {
            // File contents are escaped: an error is one line whatever the file holds.
            let found = crate::error::one_line(get("format")?);
            return Err(err(format!("unsupported monitor state format `{found}` (expected {FORMAT})")));
        }
        let fp = brain_fingerprint(brain);
        if get("brain")? != &fp {
            return Err(Error::mismatch(format!(
                "{} was saved for a different brain (fingerprint {}, this brain's is {fp}); load \
                 it with the brain file it was created with",
                path.display(),
                crate::error::one_line(get("brain")?)
            )));
        }
        let config = parse_config(path, get("config")?)?;
        let layer_names: Vec<String> = serde_json::from_str(get("layer_names")?)
            .map_err(|e| err(format!("metadata `layer_names`: {e}")))?;
        let n_images: usize =
            get("n_images")?.parse().map_err(|e| err(format!("metadata `n_images`: {e}")))?;
        let stimulus_ids: Option<Vec<String>> = match meta.get("stimulus_ids") {
            None => None,
            Some(s) => Some(serde_json::from_str(s).map_err(|e| err(format!("metadata `stimulus_ids`: {e}")))?),
        };
        if n_images != brain.n_images() {
            return Err(Error::mismatch(format!(
                "{} has {n_images} probe images, the brain has {}",
                path.display(),
                brain.n_images()
            )));
        }
        let (_, enc_bytes) = file.u8("reference_encoder")?;
        let enc_origin = PathBuf::from(format!("{} (tensor `reference_encoder`)", path.display()));
        let (encoder, record) = encoder_from_bytes(&enc_origin, enc_bytes)?;
        let l = layer_names.len();
        if encoder.spec.n_layers() != l || encoder.spec.n_voxels != brain.n_voxels() {
            return Err(err(format!(
                "the embedded encoder has {} layers and {} voxels; the state lists {l} layers and \
                 the brain has {} voxels",
                encoder.spec.n_layers(),
                encoder.spec.n_voxels,
                brain.n_voxels()
            )));
        }
        let mut reference_globals = Vec::with_capacity(l);
        for i in 0..l {
            let name = format!("reference.{i}.global");
            let g: Array = file.f32(&name)?;
            let want = [n_images, encoder.spec.widths[i]];
            if g.shape != want {
                return Err(err(format!("tensor `{name}` has shape {:?}, expected {want:?}", g.shape)));
            }
            if g.first_non_finite().is_some() {
                return Err(err(format!("tensor `{name}` has a non-finite value")));
            }
            reference_globals.push(g);
        }
        let r2 = file.f32("reference.r2")?;
        if r2.shape != [brain.n_voxels()] {
            return Err(err(format!(
                "tensor `reference.r2` has shape {:?}, expected [{}]",
                r2.shape,
                brain.n_voxels()
            )));
        }
        if let Some(i) = r2.first_non_finite() {
            return Err(err(format!("tensor `reference.r2` has a non-finite value ({}) at voxel {i}", r2.data[i])));
        }
        let index_list = |name: &str| -> Result<Vec<usize>> {
            let (_, xs) = file.i32(name)?;
            xs.iter()
                .map(|&x| {
                    usize::try_from(x)
                        .ok()
                        .filter(|&i| i < n_images)
                        .ok_or_else(|| err(format!("tensor `{name}` has image index {x} outside 0..{n_images}")))
                })
                .collect()
        };
        let split = Split { train: index_list("split.train")?, val: index_list("split.val")? };
        if split.val.is_empty() || split.train.is_empty() {
            return Err(err("the stored split has no training or no held-out images".into()));
        }
        let (_, hist) = file.u8("history")?;
        let bad_history = |e: serde_json::Error| err(format!("tensor `history` is not a list of step reports: {e}"));
        let mut hv: Value = serde_json::from_slice(&hist).map_err(bad_history)?;
        decode_floats(&mut hv);
        let history: Vec<StepReport> = serde_json::from_value(hv).map_err(bad_history)?;
        let parts = Parts {
            config,
            brain: brain.clone(),
            encoder,
            record,
            split,
            model: get("model")?.clone(),
            layer_names,
            n_images,
            stimulus_ids,
            reference_globals,
            history,
        };
        Monitor::assemble(parts, move |_| Ok(r2.data))
    }
}
