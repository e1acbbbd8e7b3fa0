//! The full score report of one fitted encoder (DESIGN §4), as serde JSON.
//!
//! The JSON is meant to be diffed and parsed by CI jobs: field order is the struct order, there
//! are no maps and no timestamps, and every value that can be undefined (an empty ROI's means, a
//! missing noise ceiling) is an `Option`, written as `null`, so NaN never reaches the file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::Brain;
use crate::error::{Error, Result};
use crate::model::Selections;
use crate::scores::hierarchy::{self, HierarchyScores};
use crate::scores::stats;

/// Mean and median of a per-voxel quantity.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub mean: f64,
    pub median: f64,
}

impl Summary {
    /// `None` for no values, so that an empty set is `null` in JSON rather than NaN.
    fn of(xs: &[f64]) -> Option<Self> {
        if xs.is_empty() {
            None
        } else {
            Some(Self {
                mean: stats::mean(xs),
                median: stats::median(xs),
            })
        }
    }
}

/// One ROI's share of the map. Means are `None` when the ROI has no voxels.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RoiSummary {
    pub name: String,
    /// Level on the visual hierarchy, as given in the brain file.
    pub level: i32,
    /// `level / max level`: the `h` the hierarchy line is fitted against.
    pub position: f64,
    pub n_voxels: usize,
    pub mean_depth: Option<f64>,
    /// Population standard deviation of the voxel depths.
    pub std_depth: Option<f64>,
    pub mean_r2: Option<f64>,
    pub mean_scale: Option<f64>,
    pub mean_entropy: Option<f64>,
    /// Voxel count per argmax layer (length = number of layers).
    pub layer_histogram: Vec<usize>,
}

/// How the encoder behind the report was fitted (DESIGN §3.6).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FitSummary {
    pub seed: u64,
    pub n_train: usize,
    pub n_val: usize,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_val_r2: f64,
    pub steps: usize,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Report {
    pub model: String,
    pub method: String,
    pub subject: Option<String>,
    pub n_images: usize,
    pub n_voxels: usize,
    pub n_layers: usize,
    pub layer_names: Vec<String>,
    pub hierarchy: HierarchyScores,
    /// Held-out R² over all voxels.
    pub r2: Summary,
    /// Held-out Pearson r over all voxels.
    pub pearson: Summary,
    /// `max(r, 0)² / NC` clipped to [0, 1] over voxels with NC > 0; `None` without a noise
    /// ceiling (or when no voxel has a positive one).
    pub noise_normalized: Option<Summary>,
    pub rois: Vec<RoiSummary>,
    pub fit: Option<FitSummary>,
}

fn check_finite(name: &str, xs: &[f32]) -> Result<()> {
    match xs.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(Error::invalid(format!(
            "{name} of voxel {i} is not finite ({})",
            xs[i]
        ))),
        None => Ok(()),
    }
}

/// Mean of a per-voxel quantity over the voxels in `idx`, `None` when `idx` is empty.
fn mean_over<T: Copy + Into<f64>>(xs: &[T], idx: &[usize]) -> Option<f64> {
    if idx.is_empty() {
        return None;
    }
    Some(idx.iter().map(|&i| xs[i].into()).sum::<f64>() / idx.len() as f64)
}

impl Report {
    /// Scores of one fitted encoder. `r2` and `pearson` are per-voxel and held-out; `weighted`
    /// weights the hierarchy line by `max(R²_v, 0)`. `layer_names` may be empty, in which case
    /// layers are named `layer 0`, `layer 1`, ...
    #[allow(clippy::too_many_arguments)]
    pub fn compute(
        model: &str,
        method: &str,
        layer_names: &[String],
        sel: &Selections,
        r2: &[f32],
        pearson: &[f32],
        brain: &Brain,
        weighted: bool,
        fit: Option<FitSummary>,
    ) -> Result<Report> {
        let v = brain.roi.len();
        let l = sel.n_layers();
        if sel.n_voxels() != v || sel.layer_probs.shape != [v, l] {
            return Err(Error::mismatch(format!(
                "selections cover {} voxels (layer probabilities {:?}), the brain has {v}",
                sel.n_voxels(),
                sel.layer_probs.shape
            )));
        }
        if r2.len() != v || pearson.len() != v {
            return Err(Error::mismatch(format!(
                "{} R² and {} Pearson values for {v} voxels",
                r2.len(),
                pearson.len()
            )));
        }
        if v == 0 {
            return Err(Error::invalid("cannot score a brain with no voxels"));
        }
        check_finite("R²", r2)?;
        check_finite("Pearson r", pearson)?;
        check_finite("scale", &sel.scale)?;
        if let Some(i) = sel.layer_probs.first_non_finite() {
            return Err(Error::invalid(format!(
                "layer probability {:?} is not finite",
                sel.layer_probs.unravel(i)
            )));
        }
        if brain.roi_levels.len() != brain.roi_names.len() {
            return Err(Error::mismatch(format!(
                "{} ROI names but {} ROI levels",
                brain.roi_names.len(),
                brain.roi_levels.len()
            )));
        }
        let layer_names: Vec<String> = if layer_names.is_empty() {
            (0..l).map(|i| format!("layer {i}")).collect()
        } else if layer_names.len() == l {
            layer_names.to_vec()
        } else {
            return Err(Error::mismatch(format!(
                "{} layer names for {l} layers",
                layer_names.len()
            )));
        };

        let depth = hierarchy::voxel_depth(sel);
        let argmax = hierarchy::argmax_layer(sel);
        let entropy = hierarchy::selection_entropy(sel);
        let hierarchy_scores = HierarchyScores::from_depth(
            &depth,
            &brain.roi,
            &brain.roi_levels,
            weighted.then_some(r2),
        )?;

        let r2_64: Vec<f64> = r2.iter().map(|&x| x as f64).collect();
        let r_64: Vec<f64> = pearson.iter().map(|&x| x as f64).collect();
        let noise_normalized = match &brain.noise_ceiling {
            None => None,
            Some(nc) => {
                if nc.len() != v {
                    return Err(Error::mismatch(format!(
                        "noise ceiling has {} values for {v} voxels",
                        nc.len()
                    )));
                }
                let nn: Vec<f64> = (0..v)
                    .filter(|&i| nc[i].is_finite() && nc[i] > 0.0)
                    .map(|i| {
                        let r = (pearson[i] as f64).max(0.0);
                        (r * r / nc[i] as f64).clamp(0.0, 1.0)
                    })
                    .collect();
                Summary::of(&nn)
            }
        };

        let positions = hierarchy::roi_positions(&brain.roi_levels);
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); brain.roi_names.len()];
        for (i, &r) in brain.roi.iter().enumerate() {
            if r >= 0 {
                // In range: `from_depth` above has already rejected unknown ROI indices.
                members[r as usize].push(i);
            }
        }
        let rois = brain
            .roi_names
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let idx = &members[k];
                let d: Vec<f64> = idx.iter().map(|&i| depth[i]).collect();
                let mut layer_histogram = vec![0usize; l];
                for &i in idx {
                    layer_histogram[argmax[i]] += 1;
                }
                RoiSummary {
                    name: name.clone(),
                    level: brain.roi_levels[k],
                    position: positions[k],
                    n_voxels: idx.len(),
                    mean_depth: mean_over(&depth, idx),
                    std_depth: (!d.is_empty()).then(|| stats::std(&d)),
                    mean_r2: mean_over(r2, idx),
                    mean_scale: mean_over(&sel.scale, idx),
                    mean_entropy: mean_over(&entropy, idx),
                    layer_histogram,
                }
            })
            .collect();

        Ok(Report {
            model: model.to_string(),
            method: method.to_string(),
            subject: brain.subject.clone(),
            n_images: brain.responses.shape.first().copied().unwrap_or(0),
            n_voxels: v,
            n_layers: l,
            layer_names,
            hierarchy: hierarchy_scores,
            // Non-empty: v > 0 was checked above.
            r2: Summary::of(&r2_64).expect("v > 0"),
            pearson: Summary::of(&r_64).expect("v > 0"),
            noise_normalized,
            rois,
            fit,
        })
    }

    /// Pretty JSON, stable across runs for the same inputs.
    pub fn to_json(&self) -> String {
        // Cannot fail: the report holds only strings, integers, finite-or-null floats and lists.
        serde_json::to_string_pretty(self).expect("a Report always serialises")
    }

    pub fn from_json(s: &str) -> Result<Report> {
        serde_json::from_str(s).map_err(|e| Error::invalid(format!("not a factortopy report: {e}")))
    }

    /// Writes the JSON (with a trailing newline) through a temporary file and a rename, so a
    /// reader never sees half a report.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let mut s = self.to_json();
        s.push('\n');
        crate::data::io::atomic_write(path, s.as_bytes())
    }

    pub fn read_json(path: &Path) -> Result<Report> {
        let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&s)
            .map_err(|e| Error::data(path, format!("not a factortopy report: {e}")))
    }

    /// A few lines for a terminal or a log: what was scored and the headline numbers.
    pub fn headline(&self) -> String {
        let h = &self.hierarchy;
        let mut s = format!(
            "{} ({}): {} images, {} voxels, {} layers{}\n",
            self.model,
            self.method,
            self.n_images,
            self.n_voxels,
            self.n_layers,
            self.subject
                .as_ref()
                .map(|s| format!(", subject {s}"))
                .unwrap_or_default()
        );
        s += &format!(
            "hierarchy: slope {:.3}  b0 {:.3}  b1 {:.3}  Spearman {:.3}  ({} ROI voxels{})\n",
            h.slope,
            h.b0,
            h.b1,
            h.spearman,
            h.n_voxels,
            if h.weighted { ", weighted by R²" } else { "" }
        );
        s += &format!(
            "held-out R²: mean {:.4}  median {:.4}   Pearson r: mean {:.4}  median {:.4}",
            self.r2.mean, self.r2.median, self.pearson.mean, self.pearson.median
        );
        if let Some(nn) = &self.noise_normalized {
            s += &format!(
                "\nnoise-normalised: mean {:.4}  median {:.4}",
                nn.mean, nn.median
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Array;

    fn toy() -> (Selections, Brain) {
        #[rustfmt::skip]
        let p = vec![
            1.0, 0.0, 0.0,
            0.0, 1.0, 0.0,
            0.0, 1.0, 0.0,
            0.25, 0.5, 0.25,
            0.0, 0.0, 1.0,
            0.0, 0.0, 1.0,
        ];
        let v = 6;
        let sel = Selections {
            layer_probs: Array::new(vec![v, 3], p).unwrap(),
            space: Array::zeros(vec![v, 2]),
            scale: vec![0.1, 0.3, 0.5, 0.5, 0.9, 0.7],
        };
        let brain = Brain {
            responses: Array::zeros(vec![4, v]),
            coords: Array::zeros(vec![v, 3]),
            roi: vec![0, 0, 1, 2, -1, 2],
            noise_ceiling: Some(vec![0.5, 0.0, 0.25, 0.8, 0.5, 0.1]),
            flat: None,
            roi_names: vec!["V1".into(), "hV4".into(), "FFA".into(), "empty".into()],
            roi_levels: vec![0, 1, 2, 4],
            stimulus_ids: None,
            subject: Some("subj01".into()),
        };
        (sel, brain)
    }

    fn report() -> Report {
        let (sel, brain) = toy();
        let r2 = [0.2f32, -0.1, 0.3, 0.1, 0.5, 0.4];
        let r = [0.5f32, -0.2, 0.6, 0.4, 0.7, 0.8];
        let fit = FitSummary {
            seed: 7,
            n_train: 90,
            n_val: 10,
            epochs_run: 12,
            best_epoch: 9,
            best_val_r2: 0.25,
            steps: 480,
        };
        Report::compute(
            "toy-net",
            "factortopy",
            &[],
            &sel,
            &r2,
            &r,
            &brain,
            false,
            Some(fit),
        )
        .unwrap()
    }

    #[test]
    fn summaries_and_rois() {
        let rep = report();
        assert_eq!(rep.layer_names, ["layer 0", "layer 1", "layer 2"]);
        assert_eq!(rep.n_images, 4);
        // Levels [0, 1, 2, 4] → h = [0, .25, .5, 1]; the fit must be the line through the
        // ROI voxels' (h, d), voxel 4 (no ROI) left out.
        let h = [0.0, 0.0, 0.25, 0.5, 0.5];
        let d = [0.0, 0.5, 0.5, 0.5, 1.0];
        let (b0, slope) = stats::linear_fit(&h, &d, None);
        assert!(
            (rep.hierarchy.slope - slope).abs() < 1e-12 && (rep.hierarchy.b0 - b0).abs() < 1e-12
        );
        // R² over all six voxels: [.2, −.1, .3, .1, .5, .4] → mean 1.4/6, median (.2 + .3)/2.
        assert!((rep.r2.mean - 1.4 / 6.0).abs() < 1e-6);
        assert!((rep.r2.median - 0.25).abs() < 1e-6);
        // Noise-normalised over NC > 0 (voxel 1 excluded):
        //   v0 .25/.5 = .5; v2 .36/.25 → 1 (clipped); v3 .16/.8 = .2; v4 .49/.5 = .98;
        //   v5 .64/.1 → 1. Mean 3.68/5 = .736, median .98.
        let nn = rep.noise_normalized.unwrap();
        assert!((nn.mean - 0.736).abs() < 1e-6, "{nn:?}");
        assert!((nn.median - 0.98).abs() < 1e-6, "{nn:?}");

        assert_eq!(rep.rois.len(), 4);
        let v1 = &rep.rois[0];
        assert_eq!(
            (v1.n_voxels, v1.layer_histogram.clone()),
            (2, vec![1, 1, 0])
        );
        assert!((v1.mean_depth.unwrap() - 0.25).abs() < 1e-12);
        assert!((v1.std_depth.unwrap() - 0.25).abs() < 1e-12);
        assert!((v1.mean_scale.unwrap() - 0.2).abs() < 1e-6);
        assert!((v1.mean_r2.unwrap() - 0.05).abs() < 1e-6);
        assert_eq!(v1.mean_entropy, Some(0.0));
        let ffa = &rep.rois[2];
        assert_eq!(ffa.layer_histogram, vec![0, 1, 1]);
        assert!((ffa.mean_depth.unwrap() - 0.75).abs() < 1e-12);
        let empty = &rep.rois[3];
        assert_eq!(empty.n_voxels, 0);
        assert_eq!(empty.mean_depth, None);
        assert_eq!(empty.layer_histogram, vec![0, 0, 0]);
        assert_eq!(empty.position, 1.0);
    }

    #[test]
    fn no_noise_ceiling_is_none() {
        let (sel, mut brain) = toy();
        brain.noise_ceiling = None;
        let rep = Report::compute(
            "m",
            "factortopy",
            &[],
            &sel,
            &[0.1; 6],
            &[0.3; 6],
            &brain,
            true,
            None,
        )
        .unwrap();
        assert!(rep.noise_normalized.is_none());
        assert!(rep.hierarchy.weighted);
        assert!(rep.to_json().contains("\"noise_normalized\": null"));
    }

    #[test]
    fn rejects_bad_inputs() {
        let (sel, brain) = toy();
        let ok = [0.1f32; 6];
        assert!(Report::compute("m", "f", &[], &sel, &ok[..5], &ok, &brain, false, None).is_err());
        let mut nan = ok;
        nan[2] = f32::NAN;
        assert!(Report::compute("m", "f", &[], &sel, &nan, &ok, &brain, false, None).is_err());
        let mut bad_sel = sel.clone();
        bad_sel.layer_probs.data[4] = f32::NAN;
        assert!(Report::compute("m", "f", &[], &bad_sel, &ok, &ok, &brain, false, None).is_err());
        let names = vec!["a".to_string()];
        assert!(Report::compute("m", "f", &names, &sel, &ok, &ok, &brain, false, None).is_err());
    }

    #[test]
    fn json_round_trip_and_field_names() {
        let rep = report();
        let json = rep.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for ptr in [
            "/model",
            "/method",
            "/n_images",
            "/n_voxels",
            "/n_layers",
            "/layer_names",
            "/hierarchy/slope",
            "/hierarchy/b0",
            "/hierarchy/b1",
            "/hierarchy/spearman",
            "/hierarchy/n_voxels",
            "/hierarchy/weighted",
            "/r2/mean",
            "/r2/median",
            "/pearson/mean",
            "/pearson/median",
            "/noise_normalized/mean",
            "/rois/0/name",
            "/rois/0/layer_histogram",
            "/rois/3/mean_depth",
            "/fit/seed",
            "/fit/best_val_r2",
        ] {
            assert!(value.pointer(ptr).is_some(), "missing {ptr}");
        }
        assert!(value.pointer("/rois/3/mean_depth").unwrap().is_null());
        assert!(!json.contains("NaN"));

        let back = Report::from_json(&json).unwrap();
        // serde_json's default float parser may differ from the printed value in the last bit,
        // so compare the re-serialised trees with a tolerance rather than with `==`.
        let again: serde_json::Value = serde_json::from_str(&back.to_json()).unwrap();
        assert_json_close(&value, &again);
        assert_eq!(back.rois.len(), rep.rois.len());
        assert_eq!(back.rois[2].layer_histogram, rep.rois[2].layer_histogram);
        assert_eq!(back.fit, rep.fit);
        // Deterministic output.
        assert_eq!(json, report().to_json());
    }

    fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value) {
        use serde_json::Value::*;
        match (a, b) {
            (Number(x), Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() <= 1e-12 * x.abs().max(1.0), "{x} vs {y}");
            }
            (Array(x), Array(y)) => {
                assert_eq!(x.len(), y.len());
                x.iter().zip(y).for_each(|(x, y)| assert_json_close(x, y));
            }
            (Object(x), Object(y)) => {
                assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
                x.iter().for_each(|(k, v)| assert_json_close(v, &y[k]));
            }
            _ => assert_eq!(a, b),
        }
    }

    #[test]
    fn write_and_headline() {
        let rep = report();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        rep.write_json(&path).unwrap();
        let back = Report::read_json(&path).unwrap();
        assert_eq!(back.model, "toy-net");
        let head = rep.headline();
        assert!(head.contains("slope") && head.contains("b0") && head.contains("Spearman"));
        assert!(head.contains("R²") && head.lines().count() >= 3, "{head}");
    }
}
