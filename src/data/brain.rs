//! The brain file (DESIGN §2): one subject's responses to the probe images, voxel positions and
//! ROI membership.

use std::collections::BTreeMap;
use std::path::Path;

use crate::data::array::Array;
use crate::data::features::{json_string_list, non_finite_msg, one_line};
use crate::data::safetensors_io::{write_tensors, OutTensor, TensorFile};
use crate::error::{Error, Result};

/// One subject: responses to the probe images, voxel positions, ROI labels and what else the
/// brain file holds. [`Brain::load`] reads and validates a file.
#[derive(Debug, Clone)]
pub struct Brain {
    /// `[N, V]` responses (z-scored per voxel after `zscore()`; loaders do this by default).
    /// Shared, not copied, with the trainers' [`crate::model::BrainTensors`]: at a whole
    /// subject they are 1.5 GiB. Write through `Arc::make_mut`.
    pub responses: std::sync::Arc<Array>,
    /// `[V, 3]` voxel positions.
    pub coords: Array,
    /// `[V]` index into `roi_names`, -1 outside every ROI.
    pub roi: Vec<i32>,
    /// `[V]` noise ceiling in R² units, when known.
    pub noise_ceiling: Option<Vec<f32>>,
    /// `[V, 2]` flatmap positions for pictures, when known.
    pub flat: Option<Array>,
    /// `[V]` hemisphere of each voxel (0 = left, 1 = right), when known: pictures draw the two
    /// hemispheres side by side.
    pub hemisphere: Option<Vec<u8>>,
    /// The ROIs' names.
    pub roi_names: Vec<String>,
    /// Position of each ROI on the visual hierarchy (same length as `roi_names`).
    pub roi_levels: Vec<i32>,
    /// The N images' identifiers, when known (checked against the features').
    pub stimulus_ids: Option<Vec<String>>,
    /// The subject's name, when known.
    pub subject: Option<String>,
}

/// What a brain file's header says, read without its values: enough to check that several
/// subjects' brains share their images before any of them is loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct BrainHeader {
    /// Rows of `responses`.
    pub n_images: usize,
    /// Columns of `responses`.
    pub n_voxels: usize,
    /// The `subject` metadata, if any.
    pub subject: Option<String>,
    /// The `stimulus_ids` metadata, if any.
    pub stimulus_ids: Option<Vec<String>>,
}

impl BrainHeader {
    /// Reads the header of `path` (the tensor `responses` must be `[N, V]`).
    pub fn read(path: &Path) -> Result<BrainHeader> {
        let index = crate::data::tensor_index::TensorIndex::open(path)?;
        let shape = index.shape("responses")?;
        if shape.len() != 2 {
            return Err(Error::shape_in(path, "responses", format!("tensor `responses` has shape {shape:?}; expected [N, V]")));
        }
        Ok(BrainHeader {
            n_images: shape[0],
            n_voxels: shape[1],
            subject: index.metadata().get("subject").cloned(),
            stimulus_ids: crate::data::features::meta_string_list(path, index.metadata(), "stimulus_ids")?,
        })
    }
}

impl Brain {
    /// Number of probe images N.
    pub fn n_images(&self) -> usize {
        self.responses.shape.first().copied().unwrap_or(0)
    }

    /// Number of voxels V.
    pub fn n_voxels(&self) -> usize {
        self.responses.shape.get(1).copied().unwrap_or(0)
    }

    /// Hierarchy level of an ROI name (DESIGN §2): V1 0, V2 1, V3 2, hV4/V4 3, anything else 4.
    /// Case-insensitive; a hemisphere prefix (`lh_`, `rh.`, ...) and a ventral/dorsal suffix
    /// (`V1v`, `V3d`) are ignored, since NSD and Algonauts split early areas that way.
    pub fn default_level(name: &str) -> i32 {
        let mut n = name.trim().to_ascii_lowercase();
        for p in ["lh_", "rh_", "lh.", "rh.", "lh-", "rh-"] {
            if let Some(rest) = n.strip_prefix(p) {
                n = rest.to_string();
                break;
            }
        }
        let level = |s: &str| match s {
            "v1" => Some(0),
            "v2" => Some(1),
            "v3" => Some(2),
            "hv4" | "v4" => Some(3),
            _ => None,
        };
        if let Some(l) = level(&n) {
            return l;
        }
        n.strip_suffix('v').or_else(|| n.strip_suffix('d')).and_then(level).unwrap_or(4)
    }

    /// Checks the contract of DESIGN §2; `origin` names the source in error messages.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let err = |msg: String| Error::data(origin, msg);
        let shape_err = |tensor: &str, msg: String| Error::shape_in(origin, tensor, msg);
        let r = &self.responses;
        if r.shape.len() != 2
            || r.shape.contains(&0)
            || r.data.len() != r.shape.iter().product::<usize>()
        {
            return Err(shape_err(
                "responses",
                format!(
                    "tensor `responses` has shape {:?}; expected [N images, V voxels] with N, V > 0",
                    r.shape
                ),
            ));
        }
        let (n, v) = (r.shape[0], r.shape[1]);
        if let Some(i) = r.first_non_finite() {
            return Err(err(format!(
                "tensor `responses` has a non-finite value ({}) at [image {}, voxel {}]",
                r.data[i],
                i / v,
                i % v
            )));
        }
        let c = &self.coords;
        if c.shape != [v, 3] || c.data.len() != 3 * v {
            return Err(shape_err(
                "coords",
                format!(
                    "tensor `coords` has shape {:?}; expected [{v}, 3] (one position per voxel of \
                     `responses`)",
                    c.shape
                ),
            ));
        }
        if let Some(m) = non_finite_msg(c, "coords") {
            return Err(err(m));
        }
        if self.roi.len() != v {
            return Err(shape_err("roi", format!(
                "tensor `roi` has {} entries; expected {v} (one per voxel)",
                self.roi.len()
            )));
        }
        let n_rois = self.roi_names.len();
        if let Some((i, &x)) =
            self.roi.iter().enumerate().find(|(_, &x)| x < -1 || x >= n_rois as i32)
        {
            return Err(err(format!(
                "tensor `roi` has value {x} at voxel {i}; expected -1 (no ROI) or an index below \
                 {n_rois} (the number of `roi_names`)"
            )));
        }
        if self.roi.iter().all(|&x| x < 0) {
            return Err(err(
                "no voxel belongs to an ROI (`roi` is -1 everywhere); hierarchy scores need ROI \
                 labels"
                    .into(),
            ));
        }
        if self.roi_levels.len() != n_rois {
            return Err(err(format!(
                "`roi_levels` has {} entries but `roi_names` has {n_rois}",
                self.roi_levels.len()
            )));
        }
        if let Some((i, &l)) = self.roi_levels.iter().enumerate().find(|(_, &l)| l < 0) {
            return Err(err(format!(
                "`roi_levels` has negative level {l} for ROI `{}`",
                self.roi_names[i]
            )));
        }
        if let Some(nc) = &self.noise_ceiling {
            if nc.len() != v {
                return Err(err(format!(
                    "tensor `noise_ceiling` has {} entries; expected {v} (one per voxel)",
                    nc.len()
                )));
            }
            if let Some((i, &x)) =
                nc.iter().enumerate().find(|(_, &x)| !(x.is_finite() && (0.0..=1.0).contains(&x)))
            {
                return Err(err(format!(
                    "tensor `noise_ceiling` has value {x} at voxel {i}; expected a finite \
                     fraction of explainable variance in [0, 1]"
                )));
            }
        }
        if let Some(f) = &self.flat {
            if f.shape != [v, 2] || f.data.len() != 2 * v {
                return Err(shape_err(
                    "flat",
                    format!(
                        "tensor `flat` has shape {:?}; expected [{v}, 2]",
                        f.shape
                    ),
                ));
            }
            if let Some(m) = non_finite_msg(f, "flat") {
                return Err(err(m));
            }
        }
        if let Some(h) = &self.hemisphere {
            if h.len() != v {
                return Err(err(format!(
                    "tensor `hemisphere` has {} entries; expected {v} (one per voxel)",
                    h.len()
                )));
            }
            if let Some((i, &x)) = h.iter().enumerate().find(|(_, &x)| x > 1) {
                return Err(err(format!(
                    "tensor `hemisphere` has value {x} at voxel {i}; expected 0 (left) or 1 (right)"
                )));
            }
        }
        if let Some(ids) = &self.stimulus_ids {
            if ids.len() != n {
                return Err(err(format!(
                    "`stimulus_ids` has {} entries but `responses` has {n} images",
                    ids.len()
                )));
            }
        }
        Ok(())
    }

    /// Loads, validates and z-scores a brain file (DESIGN §2).
    pub fn load(path: &Path) -> Result<Brain> {
        Self::load_with(path, true)
    }

    /// Loads and validates a brain file; z-scores each voxel when `zscore` is true.
    pub fn load_with(path: &Path, zscore: bool) -> Result<Brain> {
        let file = TensorFile::open(path)?;
        let err = |msg: String| Error::data(path, msg);
        let shape_err = |tensor: &str, msg: String| Error::shape_in(path, tensor, msg);
        let responses = file.f32("responses")?;
        let coords = file.f32("coords")?;
        let (roi_shape, roi) = file.i32("roi")?;
        if roi_shape.len() != 1 {
            return Err(shape_err("roi", format!("tensor `roi` has shape {roi_shape:?}; expected [V]")));
        }
        let noise_ceiling = if file.has("noise_ceiling") {
            let a = file.f32("noise_ceiling")?;
            if a.shape.len() != 1 {
                return Err(shape_err(
                    "noise_ceiling",
                    format!(
                        "tensor `noise_ceiling` has shape {:?}; expected [V]",
                        a.shape
                    ),
                ));
            }
            Some(a.data)
        } else {
            None
        };
        let flat = if file.has("flat") { Some(file.f32("flat")?) } else { None };
        let hemisphere = if file.has("hemisphere") {
            let (shape, h) = file.i32("hemisphere")?;
            if shape.len() != 1 {
                return Err(shape_err("hemisphere", format!("tensor `hemisphere` has shape {shape:?}; expected [V]")));
            }
            if let Some((i, &x)) = h.iter().enumerate().find(|(_, &x)| x != 0 && x != 1) {
                return Err(err(format!(
                    "tensor `hemisphere` has value {x} at voxel {i}; expected 0 (left) or 1 (right)"
                )));
            }
            Some(h.iter().map(|&x| x as u8).collect())
        } else {
            None
        };
        let roi_names = match json_string_list(&file, "roi_names")? {
            Some(names) => names,
            None => {
                let labelled = roi.iter().filter(|&&x| x >= 0).count();
                if labelled > 0 {
                    return Err(err(format!(
                        "metadata `roi_names` is missing but `roi` assigns {labelled} voxels to \
                         ROIs; add a JSON list of ROI names"
                    )));
                }
                Vec::new()
            }
        };
        let roi_levels = match file.metadata().get("roi_levels") {
            Some(s) => serde_json::from_str::<Vec<i32>>(s).map_err(|e| {
                err(format!(
                    "metadata `roi_levels` is not a JSON list of integers: {}",
                    one_line(&e)
                ))
            })?,
            None => roi_names.iter().map(|n| Self::default_level(n)).collect(),
        };
        let stimulus_ids = json_string_list(&file, "stimulus_ids")?;
        let subject = file.metadata().get("subject").cloned();
        let mut b = Brain {
            responses: responses.into(),
            coords,
            roi,
            noise_ceiling,
            flat,
            hemisphere,
            roi_names,
            roi_levels,
            stimulus_ids,
            subject,
        };
        let origin = path.display().to_string();
        b.validate(&origin)?;
        if zscore {
            b.zscore(&origin)?;
        }
        Ok(b)
    }

    /// Standardises each voxel over images: mean 0, population standard deviation 1, computed in
    /// f64. A voxel whose responses are all equal cannot be standardised and is an error (it
    /// carries no signal and would otherwise become NaN or huge rounding noise).
    pub fn zscore(&mut self, origin: &str) -> Result<()> {
        let r = std::sync::Arc::make_mut(&mut self.responses);
        if r.shape.len() != 2 || r.data.len() != r.shape.iter().product::<usize>() {
            return Err(Error::shape_in(
                origin,
                "responses",
                format!("tensor `responses` has shape {:?}; expected [N, V]", r.shape),
            ));
        }
        let (n, v) = (r.shape[0], r.shape[1]);
        if n == 0 || v == 0 {
            return Ok(());
        }
        if let Some(i) = r.first_non_finite() {
            return Err(Error::data(
                origin,
                format!(
                    "tensor `responses` has a non-finite value ({}) at [image {}, voxel {}]",
                    r.data[i],
                    i / v,
                    i % v
                ),
            ));
        }
        let mut mean = vec![0f64; v];
        let (mut lo, mut hi) = (vec![f32::INFINITY; v], vec![f32::NEG_INFINITY; v]);
        for row in r.data.chunks_exact(v) {
            for (j, &x) in row.iter().enumerate() {
                mean[j] += x as f64;
                lo[j] = lo[j].min(x);
                hi[j] = hi[j].max(x);
            }
        }
        // Exact equality, not a variance threshold: in f64 the mean of identical f32 values can
        // differ from them by rounding, so a threshold would be arbitrary.
        let constant: Vec<usize> = (0..v).filter(|&j| lo[j] >= hi[j]).collect();
        if let Some(&first) = constant.first() {
            return Err(Error::data(
                origin,
                format!(
                    "voxel {first} has zero variance in `responses` ({} voxels in all); remove \
                     these voxels or load without z-scoring",
                    constant.len()
                ),
            ));
        }
        for m in &mut mean {
            *m /= n as f64;
        }
        let mut var = vec![0f64; v];
        for row in r.data.chunks_exact(v) {
            for (j, &x) in row.iter().enumerate() {
                let d = x as f64 - mean[j];
                var[j] += d * d;
            }
        }
        let inv: Vec<f64> = var.iter().map(|s| 1.0 / (s / n as f64).sqrt()).collect();
        for row in r.data.chunks_exact_mut(v) {
            for (j, x) in row.iter_mut().enumerate() {
                *x = ((*x as f64 - mean[j]) * inv[j]) as f32;
            }
        }
        if let Some(i) = r.first_non_finite() {
            return Err(Error::data(
                origin,
                format!(
                    "z-scoring `responses` overflowed at [image {}, voxel {}]; rescale the data",
                    i / v,
                    i % v
                ),
            ));
        }
        Ok(())
    }

    /// Writes the brain file (atomic): `responses`, `coords`, `roi` as I32, `noise_ceiling` and
    /// `flat` only when present, metadata as JSON. Refuses data that [`Brain::load_with`] would
    /// reject, so a saved file always loads.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.validate(&format!("{} (not written)", path.display()))?;
        let v = self.n_voxels();
        let mut tensors = vec![
            ("responses".to_string(), OutTensor::from_array(&self.responses)),
            ("coords".to_string(), OutTensor::from_array(&self.coords)),
            ("roi".to_string(), OutTensor::I32 { shape: vec![v], data: &self.roi }),
        ];
        if let Some(nc) = &self.noise_ceiling {
            tensors
                .push(("noise_ceiling".to_string(), OutTensor::F32 { shape: vec![v], data: nc }));
        }
        if let Some(f) = &self.flat {
            tensors.push(("flat".to_string(), OutTensor::from_array(f)));
        }
        if let Some(h) = &self.hemisphere {
            tensors.push(("hemisphere".to_string(), OutTensor::U8 { shape: vec![v], data: h }));
        }
        let mut meta = BTreeMap::new();
        meta.insert("roi_names".to_string(), serde_json::to_string(&self.roi_names).unwrap());
        meta.insert("roi_levels".to_string(), serde_json::to_string(&self.roi_levels).unwrap());
        if let Some(ids) = &self.stimulus_ids {
            meta.insert("stimulus_ids".to_string(), serde_json::to_string(ids).unwrap());
        }
        if let Some(s) = &self.subject {
            meta.insert("subject".to_string(), s.clone());
        }
        write_tensors(path, &tensors, &meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::safetensors_io::tests::{bf16_bytes, f16_bytes, write_raw};
    use safetensors::Dtype;

    fn sample() -> Brain {
        let (n, v) = (5, 4);
        let responses = Array {
            shape: vec![n, v],
            data: (0..n * v).map(|i| ((i * 7 % 11) as f32) * 0.5 + (i % v) as f32).collect(),
        };
        Brain {
            responses: responses.into(),
            coords: Array { shape: vec![v, 3], data: (0..3 * v).map(|i| i as f32).collect() },
            roi: vec![0, 1, -1, 1],
            noise_ceiling: Some(vec![0.1, 0.5, 0.0, 1.0]),
            flat: Some(Array { shape: vec![v, 2], data: (0..2 * v).map(|i| i as f32).collect() }),
            hemisphere: Some(vec![0, 0, 1, 1]),
            roi_names: vec!["V1v".into(), "FFA-1".into()],
            roi_levels: vec![0, 4],
            stimulus_ids: Some((0..n).map(|i| format!("img{i}")).collect()),
            subject: Some("subj01".into()),
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
    fn default_levels() {
        let cases = [
            ("V1", 0),
            ("v1", 0),
            ("V1v", 0),
            ("V1d", 0),
            ("lh_V1v", 0),
            ("rh.V2d", 1),
            ("V2", 1),
            ("V3v", 2),
            ("V3d", 2),
            ("hV4", 3),
            ("V4", 3),
            ("RH_HV4", 3),
            ("V3A", 4),
            ("V3ab", 4),
            ("FFA-1", 4),
            ("EBA", 4),
            ("v", 4),
            ("", 4),
        ];
        for (name, want) in cases {
            assert_eq!(Brain::default_level(name), want, "{name}");
        }
    }

    #[test]
    fn validate_paths() {
        let e = |b: Brain| data_err(b.validate("brain.safetensors").map(|_| ()));
        let b = sample();
        b.validate("x").unwrap();
        assert_eq!((b.n_images(), b.n_voxels()), (5, 4));

        let mut b = sample();
        b.responses = Array { shape: vec![5, 0], data: vec![] }.into();
        let s = e(b);
        assert!(
            s.contains("brain.safetensors") && s.contains("`responses`") && s.contains("[5, 0]"),
            "{s}"
        );

        let mut b = sample();
        std::sync::Arc::make_mut(&mut b.responses).data[2 * 4 + 3] = f32::NAN;
        let s = e(b);
        assert!(
            s.contains("`responses`") && s.contains("NaN") && s.contains("[image 2, voxel 3]"),
            "{s}"
        );

        let mut b = sample();
        b.coords = Array { shape: vec![4, 2], data: vec![0.0; 8] };
        assert!(e(b).contains("`coords` has shape [4, 2]; expected [4, 3]"));

        let mut b = sample();
        b.coords.data[5] = f32::NEG_INFINITY;
        let s = e(b);
        assert!(s.contains("`coords`") && s.contains("[1, 2]"), "{s}");

        let mut b = sample();
        b.roi.pop();
        assert!(e(b).contains("`roi` has 3 entries; expected 4"));

        let mut b = sample();
        b.roi[3] = 2;
        let s = e(b);
        assert!(s.contains("`roi` has value 2 at voxel 3") && s.contains("below 2"), "{s}");

        let mut b = sample();
        b.roi[1] = -5;
        assert!(e(b).contains("value -5 at voxel 1"));

        let mut b = sample();
        b.roi = vec![-1; 4];
        assert!(e(b).contains("no voxel belongs to an ROI"));

        let mut b = sample();
        b.roi_levels.push(3);
        assert!(e(b).contains("`roi_levels` has 3 entries but `roi_names` has 2"));

        let mut b = sample();
        b.roi_levels[1] = -1;
        assert!(e(b).contains("negative level -1 for ROI `FFA-1`"));

        let mut b = sample();
        b.noise_ceiling = Some(vec![0.1; 3]);
        assert!(e(b).contains("`noise_ceiling` has 3 entries"));

        let mut b = sample();
        b.noise_ceiling.as_mut().unwrap()[2] = 1.5;
        assert!(e(b).contains("`noise_ceiling` has value 1.5 at voxel 2"));

        let mut b = sample();
        b.noise_ceiling.as_mut().unwrap()[0] = f32::NAN;
        assert!(e(b).contains("`noise_ceiling` has value NaN at voxel 0"));

        let mut b = sample();
        b.flat = Some(Array { shape: vec![4, 3], data: vec![0.0; 12] });
        assert!(e(b).contains("`flat` has shape [4, 3]"));

        let mut b = sample();
        b.flat.as_mut().unwrap().data[7] = f32::NAN;
        assert!(e(b).contains("`flat`"));

        let mut b = sample();
        b.hemisphere = Some(vec![0, 1, 1]);
        assert!(e(b).contains("`hemisphere` has 3 entries; expected 4"));

        let mut b = sample();
        b.hemisphere.as_mut().unwrap()[2] = 2;
        assert!(e(b).contains("`hemisphere` has value 2 at voxel 2"));

        let mut b = sample();
        b.stimulus_ids.as_mut().unwrap().push("x".into());
        assert!(e(b).contains("`stimulus_ids` has 6 entries but `responses` has 5 images"));
    }

    #[test]
    fn zscore_stats_and_zero_variance() {
        let mut b = sample();
        b.zscore("b").unwrap();
        let (n, v) = (5, 4);
        for j in 0..v {
            let col: Vec<f64> = (0..n).map(|i| b.responses.data[i * v + j] as f64).collect();
            let m = col.iter().sum::<f64>() / n as f64;
            let s = (col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n as f64).sqrt();
            assert!(m.abs() < 1e-6 && (s - 1.0).abs() < 1e-5, "voxel {j}: mean {m}, std {s}");
        }
        let mut b = sample();
        for i in 0..5 {
            std::sync::Arc::make_mut(&mut b.responses).data[i * 4 + 1] = 0.1;
            std::sync::Arc::make_mut(&mut b.responses).data[i * 4 + 3] = -2.0;
        }
        let mut nan = b.clone();
        std::sync::Arc::make_mut(&mut nan.responses).data[6] = f32::NAN;
        assert!(data_err(nan.zscore("z").map(|_| ())).contains("[image 1, voxel 2]"));
        let s = data_err(b.zscore("brain.safetensors").map(|_| ()));
        assert!(
            s.contains("brain.safetensors")
                && s.contains("voxel 1 has zero variance in `responses` (2 voxels in all)"),
            "{s}"
        );
    }

    #[test]
    fn save_load_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b.safetensors");
        let b = sample();
        b.save(&p).unwrap();
        let raw = Brain::load_with(&p, false).unwrap();
        assert_eq!(raw.responses, b.responses);
        assert_eq!(raw.coords, b.coords);
        assert_eq!(raw.hemisphere, b.hemisphere);
        assert_eq!(raw.roi, b.roi);
        assert_eq!(raw.noise_ceiling, b.noise_ceiling);
        assert_eq!(raw.flat, b.flat);
        assert_eq!(raw.roi_names, b.roi_names);
        assert_eq!(raw.roi_levels, b.roi_levels);
        assert_eq!(raw.stimulus_ids, b.stimulus_ids);
        assert_eq!(raw.subject, b.subject);
        let t = TensorFile::open(&p).unwrap();
        assert_eq!(t.dtype_name("roi").unwrap(), "I32");
        let mut z = b.clone();
        z.zscore("x").unwrap();
        assert_eq!(Brain::load(&p).unwrap().responses, z.responses);
        // Optional tensors absent stay absent.
        let mut m = b.clone();
        m.noise_ceiling = None;
        m.flat = None;
        m.stimulus_ids = None;
        m.subject = None;
        m.hemisphere = None;
        m.save(&p).unwrap();
        let t = TensorFile::open(&p).unwrap();
        assert_eq!(t.names(), vec!["coords", "responses", "roi"]);
        let r = Brain::load(&p).unwrap();
        assert!(r.noise_ceiling.is_none() && r.flat.is_none() && r.subject.is_none() && r.hemisphere.is_none());
    }

    #[test]
    fn load_f16_bf16_i64_and_defaults() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b.safetensors");
        let resp: Vec<f32> = vec![1.0, 2.0, 3.0, 0.5, 4.0, -1.0]; // [3, 2]
        let coords: Vec<f32> = vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let roi: Vec<u8> = [1i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        write_raw(
            &p,
            &[
                ("responses", Dtype::F16, vec![3, 2], f16_bytes(&resp)),
                ("coords", Dtype::BF16, vec![2, 3], bf16_bytes(&coords)),
                ("roi", Dtype::I64, vec![2], roi),
            ],
            &[("roi_names", "[\"lh_V1v\", \"hV4\"]")],
        );
        let b = Brain::load_with(&p, false).unwrap();
        assert_eq!(b.responses.data, resp);
        assert_eq!(b.coords.data, coords);
        assert_eq!(b.roi, vec![1, -1]);
        assert_eq!(b.roi_levels, vec![0, 3]);
        assert!(b.subject.is_none() && b.stimulus_ids.is_none());
        // Saved (f32, I32) and reloaded.
        let q = d.path().join("c.safetensors");
        b.save(&q).unwrap();
        let c = Brain::load_with(&q, false).unwrap();
        assert_eq!(c.responses, b.responses);
        assert_eq!(c.roi_levels, vec![0, 3]);
    }

    #[test]
    fn load_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b.safetensors");
        let f32b = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let i32b = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let resp = ("responses", Dtype::F32, vec![2, 2], f32b(&[1.0, 2.0, 3.0, 5.0]));
        let coords = ("coords", Dtype::F32, vec![2, 3], f32b(&[0.0; 6]));
        let roi = ("roi", Dtype::I32, vec![2], i32b(&[0, -1]));
        let load = |t: &[(&str, Dtype, Vec<usize>, Vec<u8>)], m: &[(&str, &str)]| {
            write_raw(&p, t, m);
            data_err(Brain::load(&p).map(|_| ()))
        };
        let names = [("roi_names", "[\"V1\"]")];
        let s = load(&[resp.clone(), coords.clone()], &names);
        assert!(s.contains("tensor `roi` is missing") && s.contains("b.safetensors"), "{s}");
        let s = load(&[resp.clone(), coords.clone(), roi.clone()], &[]);
        assert!(s.contains("metadata `roi_names` is missing"), "{s}");
        let s = load(&[resp.clone(), coords.clone(), roi.clone()], &[("roi_names", "V1")]);
        assert!(s.contains("metadata `roi_names` is not a JSON list"), "{s}");
        let s = load(
            &[resp.clone(), coords.clone(), roi.clone()],
            &[names[0], ("roi_levels", "[\"a\"]")],
        );
        assert!(s.contains("metadata `roi_levels` is not a JSON list of integers"), "{s}");
        let s = load(
            &[resp.clone(), coords.clone(), ("roi", Dtype::I32, vec![2], i32b(&[0, 3]))],
            &names,
        );
        assert!(s.contains("`roi` has value 3 at voxel 1"), "{s}");
        let s = load(
            &[resp.clone(), coords.clone(), ("roi", Dtype::F32, vec![2], f32b(&[0.0, 1.0]))],
            &names,
        );
        assert!(s.contains("`roi` has dtype F32"), "{s}");
        let s = load(
            &[resp.clone(), coords.clone(), ("roi", Dtype::I32, vec![1, 2], i32b(&[0, -1]))],
            &names,
        );
        assert!(s.contains("`roi` has shape [1, 2]"), "{s}");
        let s = load(
            &[
                ("responses", Dtype::F32, vec![2, 2], f32b(&[1.0, 2.0, 1.0, 5.0])),
                coords.clone(),
                roi.clone(),
            ],
            &names,
        );
        assert!(s.contains("voxel 0 has zero variance in `responses` (1 voxels in all)"), "{s}");
        // Without z-scoring the same file loads.
        assert!(Brain::load_with(&p, false).is_ok());
        // Truncated brain file.
        write_raw(&p, &[resp, coords, roi], &names);
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() / 2]).unwrap();
        let s = data_err(Brain::load(&p).map(|_| ()));
        assert!(s.contains("truncated or corrupt safetensors file"), "{s}");
    }
}
