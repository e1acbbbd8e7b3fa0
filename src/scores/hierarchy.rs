//! Where each voxel reads from, and whether that follows the visual hierarchy (DESIGN §4).

use serde::{Deserialize, Serialize};

use crate::data::Brain;
use crate::error::{Error, Result};
use crate::model::Selections;
use crate::scores::stats;

/// Depth `Σ_l p_l · l/(L−1)` of one voxel's layer distribution, in [0, 1].
/// A one-layer network has nowhere to go, so its depth is 0.
pub fn depth_of(p: &[f32]) -> f64 {
    let l = p.len();
    if l <= 1 {
        return 0.0;
    }
    let s: f64 = p
        .iter()
        .enumerate()
        .map(|(i, &pi)| pi as f64 * i as f64)
        .sum();
    s / (l - 1) as f64
}

/// Index of the most probable layer (the first one on ties, so the answer is reproducible).
pub fn argmax_of(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &pi) in p.iter().enumerate() {
        if pi > p[best] {
            best = i;
        }
    }
    best
}

/// Entropy of the layer distribution divided by `log L`: 0 for a one-hot choice, 1 for uniform.
/// `0·log 0` is taken as 0; a one-layer network has no uncertainty (0). Clamped to [0, 1]
/// against rounding in probabilities that do not sum exactly to 1.
pub fn entropy_of(p: &[f32]) -> f64 {
    let l = p.len();
    if l <= 1 {
        return 0.0;
    }
    let h: f64 = p
        .iter()
        .map(|&pi| pi as f64)
        .filter(|&pi| pi > 0.0)
        .map(|pi| -pi * pi.ln())
        .sum();
    // A one-hot row sums to −0.0; keep "-0.0" out of reports.
    if h <= 0.0 {
        return 0.0;
    }
    (h / (l as f64).ln()).clamp(0.0, 1.0)
}

fn rows(sel: &Selections) -> impl Iterator<Item = &[f32]> {
    let l = sel.n_layers().max(1);
    sel.layer_probs.data.chunks(l)
}

/// Per-voxel depth `d_v`.
pub fn voxel_depth(sel: &Selections) -> Vec<f64> {
    rows(sel).map(depth_of).collect()
}

/// Per-voxel argmax layer `a_v`.
pub fn argmax_layer(sel: &Selections) -> Vec<usize> {
    rows(sel).map(argmax_of).collect()
}

/// The largest layer probability minus the second largest (the whole largest one with a
/// single layer): how clearly one layer wins.
pub fn top_two_gap_of(p: &[f32]) -> f64 {
    let (mut first, mut second) = (f64::NEG_INFINITY, 0.0f64);
    for &x in p {
        let x = x as f64;
        if x > first {
            second = first.max(0.0);
            first = x;
        } else if x > second {
            second = x;
        }
    }
    if p.is_empty() {
        0.0
    } else {
        first - second
    }
}

/// Per-voxel [`top_two_gap_of`].
pub fn top_two_gap(sel: &Selections) -> Vec<f64> {
    rows(sel).map(top_two_gap_of).collect()
}

/// Per-voxel normalised selection entropy `e_v`.
pub fn selection_entropy(sel: &Selections) -> Vec<f64> {
    rows(sel).map(entropy_of).collect()
}

/// ROI positions `h_r = level_r / max level`. When every level is 0 (or negative) there is no
/// hierarchy to normalise by and all positions are 0.
pub fn roi_positions(levels: &[i32]) -> Vec<f64> {
    let max = levels.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        return vec![0.0; levels.len()];
    }
    levels.iter().map(|&l| l as f64 / max as f64).collect()
}

/// Brain–network alignment: the line `d = b0 + slope·h` through the voxels that have an ROI,
/// and the rank agreement of `h` and `d`.
///
/// The line and the rank correlation are only defined when both axes vary over the voxels that
/// enter the fit: with one ROI level (or a single voxel) there is no `h` spread to regress on,
/// and with every voxel at the same depth (a one-layer network, or a selector collapsed on one
/// layer) there is nothing to correlate. Then `slope`, `b0`, `b1` and `spearman` are all `None`
/// (`null` in JSON, NaN in the C ABI's summary structs) and `warning` says why; a number is never
/// made up for an undefined score.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HierarchyScores {
    /// Slope of the least-squares line `d = b0 + slope·h` of voxel depth on ROI position.
    pub slope: Option<f64>,
    /// Fitted depth at the bottom of the hierarchy (h = 0): where early cortex reads from.
    pub b0: Option<f64>,
    /// `b0 + slope`: fitted depth at the top of the hierarchy (h = 1).
    pub b1: Option<f64>,
    /// Spearman ρ between `h` and `d` (unweighted, over the same voxels as the fit).
    pub spearman: Option<f64>,
    /// Voxels that entered the fit (have an ROI, and positive weight when weighted).
    pub n_voxels: usize,
    /// Whether the fit was weighted by `max(R²_v, 0)`.
    pub weighted: bool,
    /// Why the scores above are `None`; `None` when they are defined. Reports written before
    /// this field existed read back as `None`.
    #[serde(default)]
    pub warning: Option<String>,
}

impl HierarchyScores {
    /// Scores from a fitted encoder's selections. With `r2` given, each voxel is weighted by
    /// `max(R²_v, 0)`, so voxels the encoder cannot predict do not steer the line.
    ///
    /// When the voxels that enter the fit span one hierarchy level (e.g. a single ROI, or one
    /// voxel) or one depth, the scores are undefined: `None`, with `warning` set.
    pub fn compute(sel: &Selections, brain: &Brain, r2: Option<&[f32]>) -> Result<Self> {
        let v = brain.roi.len();
        if sel.layer_probs.shape.len() != 2 || sel.layer_probs.shape[0] != v {
            return Err(Error::mismatch(format!(
                "layer selections have shape {:?}, the brain has {v} voxels",
                sel.layer_probs.shape
            )));
        }
        Self::from_depth(&voxel_depth(sel), &brain.roi, &brain.roi_levels, r2)
    }

    /// Scores from per-voxel depths: the entry point for callers that already hold `d_v`
    /// (the monitor compares depths across steps).
    pub fn from_depth(
        depth: &[f64],
        roi: &[i32],
        roi_levels: &[i32],
        r2: Option<&[f32]>,
    ) -> Result<Self> {
        if depth.len() != roi.len() {
            return Err(Error::mismatch(format!(
                "{} voxel depths but {} ROI labels",
                depth.len(),
                roi.len()
            )));
        }
        if let Some(r2) = r2 {
            if r2.len() != roi.len() {
                return Err(Error::mismatch(format!(
                    "{} R² values but {} voxels",
                    r2.len(),
                    roi.len()
                )));
            }
        }
        let pos = roi_positions(roi_levels);
        let (mut h, mut d, mut w) = (Vec::new(), Vec::new(), Vec::new());
        for (i, &r) in roi.iter().enumerate() {
            if r < 0 {
                continue;
            }
            let hr = *pos.get(r as usize).ok_or_else(|| {
                Error::invalid(format!(
                    "voxel {i} has ROI index {r}, but only {} ROI levels are known",
                    pos.len()
                ))
            })?;
            let wi = match r2 {
                Some(r2) if r2[i].is_finite() => (r2[i] as f64).max(0.0),
                // A non-finite R² carries no evidence of fit quality.
                Some(_) => 0.0,
                None => 1.0,
            };
            // Zero-weight voxels do not influence the line; keeping them out also keeps the
            // rank correlation over exactly the voxels that the fit used.
            if wi > 0.0 {
                h.push(hr);
                d.push(depth[i]);
                w.push(wi);
            }
        }
        let any_roi = roi.iter().any(|&r| r >= 0);
        if !any_roi {
            return Err(Error::invalid(
                "no voxel belongs to an ROI: hierarchy scores need ROI labels",
            ));
        }
        if h.is_empty() {
            return Err(Error::invalid(
                "every ROI voxel has R² ≤ 0: nothing to weight the hierarchy fit by",
            ));
        }
        let weighted = r2.is_some();
        let n_voxels = h.len();
        let warning = if spread(&h) == 0 {
            Some(format!(
                "the {n_voxels} voxel(s) in the hierarchy fit all sit at one ROI level: slope, b0, b1 and \
                 Spearman are undefined (null)"
            ))
        } else if spread(&d) == 0 {
            Some(format!(
                "the {n_voxels} voxels in the hierarchy fit all read from the same depth {}: slope, b0, \
                 b1 and Spearman are undefined (null)",
                d[0]
            ))
        } else {
            None
        };
        if warning.is_some() {
            return Ok(Self { slope: None, b0: None, b1: None, spearman: None, n_voxels, weighted, warning });
        }
        let (b0, slope) = stats::linear_fit(&h, &d, if weighted { Some(&w) } else { None });
        Ok(Self {
            slope: Some(slope),
            b0: Some(b0),
            b1: Some(b0 + slope),
            spearman: Some(stats::spearman(&h, &d)),
            n_voxels,
            weighted,
            warning: None,
        })
    }

    /// `slope`, `b0`, `b1` and `spearman` as plain numbers with NaN for undefined: for the C
    /// ABI's summary structs, whose callers test with `isnan`.
    pub fn as_nan_tuple(&self) -> (f64, f64, f64, f64) {
        let n = |x: Option<f64>| x.unwrap_or(f64::NAN);
        (n(self.slope), n(self.b0), n(self.b1), n(self.spearman))
    }
}

/// Whether the values differ at all: 0 when they are all equal (or there are none), 1 otherwise.
/// Exact comparison on purpose: any real difference in `h` or `d` identifies the line.
fn spread(xs: &[f64]) -> usize {
    usize::from(xs.iter().any(|&x| x != xs[0]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Array;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn depth_entropy_uniform_and_one_hot() {
        let u = [0.25f32; 4];
        assert!(close(depth_of(&u), 0.5));
        assert!(close(entropy_of(&u), 1.0));
        let one = [0.0f32, 0.0, 1.0, 0.0];
        assert!(close(depth_of(&one), 2.0 / 3.0));
        assert_eq!(entropy_of(&one), 0.0);
        assert_eq!(argmax_of(&one), 2);
        // Two-point mass on layers 0 and 3 of 4: depth 0.5, entropy log 2 / log 4 = 1/2.
        let two = [0.5f32, 0.0, 0.0, 0.5];
        assert!(close(depth_of(&two), 0.5));
        assert!(close(entropy_of(&two), 0.5));
        assert_eq!(argmax_of(&two), 0);
        assert_eq!(depth_of(&[1.0]), 0.0);
        assert_eq!(entropy_of(&[1.0]), 0.0);
    }

    #[test]
    fn positions() {
        assert_eq!(roi_positions(&[0, 1, 2, 4]), vec![0.0, 0.25, 0.5, 1.0]);
        assert_eq!(roi_positions(&[0, 0]), vec![0.0, 0.0]);
    }

    /// Three ROIs at levels 0, 1, 2 (h = 0, 0.5, 1), L = 3 layers, one voxel outside every ROI.
    fn toy() -> (Selections, Brain) {
        #[rustfmt::skip]
        let p = vec![
            1.0, 0.0, 0.0,      // ROI 0, d = 0
            0.0, 1.0, 0.0,      // ROI 0, d = 0.5
            0.0, 1.0, 0.0,      // ROI 1, d = 0.5
            0.25, 0.5, 0.25,    // ROI 2, spread: d = 0.5 exactly
            0.0, 0.0, 1.0,      // no ROI: d = 1, must be ignored
            0.0, 0.0, 1.0,      // ROI 2, d = 1
        ];
        let v = 6;
        let sel = Selections {
            layer_probs: Array::new(vec![v, 3], p).unwrap(),
            space: Array::zeros(vec![v, 2]),
            scale: vec![0.5; v],
        };
        let brain = Brain {
            responses: Array::zeros(vec![4, v]).into(),
            coords: Array::zeros(vec![v, 3]),
            roi: vec![0, 0, 1, 2, -1, 2],
            noise_ceiling: None,
            flat: None,
            hemisphere: None,
            roi_names: vec!["V1".into(), "hV4".into(), "FFA".into()],
            roi_levels: vec![0, 1, 2],
            stimulus_ids: None,
            subject: None,
        };
        (sel, brain)
    }

    #[test]
    fn toy_brain_unweighted_by_hand() {
        let (sel, brain) = toy();
        let s = HierarchyScores::compute(&sel, &brain, None).unwrap();
        // Points (h, d): (0,0) (0,.5) (.5,.5) (1,.5) (1,1).
        // h̄ = 2.5/5 = 0.5, d̄ = 2.5/5 = 0.5.
        // Shd = (−.5)(−.5) + 0 + 0 + 0 + (.5)(.5) = 0.5; Shh = .25 + .25 + 0 + .25 + .25 = 1.
        // slope = 0.5, b0 = 0.5 − 0.5·0.5 = 0.25, b1 = 0.75.
        assert!(close(s.slope.unwrap(), 0.5), "{s:?}");
        assert!(close(s.b0.unwrap(), 0.25), "{s:?}");
        assert!(close(s.b1.unwrap(), 0.75), "{s:?}");
        // Ranks h: [1.5, 1.5, 3, 4.5, 4.5]; d: [1, 3, 3, 3, 5]; both mean 3.
        // dev h [−1.5, −1.5, 0, 1.5, 1.5], dev d [−2, 0, 0, 0, 2];
        // S = 3 + 3 = 6, Shh = 9, Sdd = 8 → ρ = 6/√72 = 1/√2.
        assert!(close(s.spearman.unwrap(), 0.5f64.sqrt()), "{s:?}");
        assert_eq!(s.warning, None);
        assert_eq!(s.n_voxels, 5);
        assert!(!s.weighted);
    }

    #[test]
    fn toy_brain_weighted_by_hand() {
        let (sel, brain) = toy();
        // Voxel 1 (0, .5) has negative R² → weight 0, dropped; the others:
        // (0,0) w=1, (.5,.5) w=1, (1,.5) w=1, (1,1) w=2 (voxel 4 has no ROI).
        let r2 = [0.2f32, -0.3, 0.2, 0.2, 0.9, 0.4];
        let s = HierarchyScores::compute(&sel, &brain, Some(&r2)).unwrap();
        // Weights are relative, so scale by 5: w = [1, 1, 1, 2].
        // Σw = 5, h̄ = (0 + .5 + 1 + 2)/5 = 0.7, d̄ = (0 + .5 + .5 + 2)/5 = 0.6.
        // Shd = 1(−.7)(−.6) + 1(−.2)(−.1) + 1(.3)(−.1) + 2(.3)(.4) = .42 + .02 − .03 + .24 = 0.65
        // Shh = .49 + .04 + .09 + 2·.09 = 0.8 → slope = 0.8125, b0 = 0.6 − 0.8125·0.7 = 0.03125.
        assert!(close(s.slope.unwrap(), 0.8125), "{s:?}");
        assert!(close(s.b0.unwrap(), 0.03125), "{s:?}");
        assert!(close(s.b1.unwrap(), 0.84375), "{s:?}");
        assert_eq!(s.n_voxels, 4);
        assert!(s.weighted);
    }

    #[test]
    fn errors() {
        let (sel, mut brain) = toy();
        assert!(HierarchyScores::compute(&sel, &brain, Some(&[-1.0; 6])).is_err());
        brain.roi = vec![-1; 6];
        assert!(HierarchyScores::compute(&sel, &brain, None).is_err());
        brain.roi = vec![0, 0, 0, 0, 0, 7];
        assert!(HierarchyScores::compute(&sel, &brain, None).is_err());
    }

    /// Degenerate input: one ROI level, one voxel, or no spread in depth leave the line and the rank
    /// correlation undefined; they are `null` with a warning, never `slope 0`.
    #[test]
    fn undefined_line_is_null_with_a_warning() {
        let undefined = |s: &HierarchyScores| {
            s.slope.is_none() && s.b0.is_none() && s.b1.is_none() && s.spearman.is_none() && s.warning.is_some()
        };
        // One ROI level.
        let (sel, mut brain) = toy();
        brain.roi = vec![0, 0, 0, 0, -1, 0];
        let s = HierarchyScores::compute(&sel, &brain, None).unwrap();
        assert!(undefined(&s), "{s:?}");
        assert_eq!(s.n_voxels, 5);
        // One voxel (weights drop all others).
        let (sel, brain) = toy();
        let s = HierarchyScores::compute(&sel, &brain, Some(&[0.5, 0.0, 0.0, 0.0, 0.0, 0.0])).unwrap();
        assert!(undefined(&s) && s.n_voxels == 1, "{s:?}");
        // Several levels but every voxel at the same depth.
        let s = HierarchyScores::from_depth(&[0.5; 6], &brain.roi, &brain.roi_levels, None).unwrap();
        assert!(undefined(&s) && s.warning.as_deref().unwrap().contains("same depth"), "{s:?}");
        // Serialised as null, and read back.
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"slope\":null") && json.contains("\"spearman\":null"), "{json}");
        assert_eq!(serde_json::from_str::<HierarchyScores>(&json).unwrap(), s);
        assert!(s.as_nan_tuple().0.is_nan());
    }
}
