//! The full score report of one fitted encoder (DESIGN §4), as serde JSON.
//!
//! The JSON is meant to be diffed and parsed by CI jobs: field order is the struct order, there
//! are no maps and no timestamps, and every value that can be undefined (an empty ROI's means, a
//! missing noise ceiling) is an `Option`, written as `null`, so NaN never reaches the file.
//!
//! Reports are versioned ([`SCHEMA_VERSION`], plus the library version and the settings that
//! produced them), and reading one of another schema version is an error, so numbers from
//! different versions are never silently compared.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::Brain;
use crate::error::{Error, Result};
use crate::model::{FitConfig, Selections};
use crate::scores::bootstrap::{noise_normalized, HeldOut, Interval};
use crate::scores::hierarchy::{self, HierarchyScores};
use crate::scores::seeds::{SeedSpread, Spread};
use crate::scores::stats;
use crate::scores::uncertainty::{IntervalKind, Uncertainty, UncertaintyConfig};

/// Version of the `report.json` layout. Version 1 (unversioned) had `noise_normalized` and no
/// `schema_version`, `settings`, `noise_ceiling`, `uncertainty` or `seeds`; version 2 had no
/// `uncertainty.kind` and `uncertainty.n_fits` (its intervals were all refit-free), `ambiguity`
/// or `rois[].ambiguous`; version 3 had no `uncertainty.simex`, kind `simex` or
/// `settings.uncertainty.bias_correction`; version 4 had no `rois[].layer_margin` or
/// `settings.fit.layer_units`, and its fits were in raw units.
pub const SCHEMA_VERSION: u32 = 5;

/// Mean and median of a per-voxel quantity.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Mean over the voxels.
    pub mean: f64,
    /// Median over the voxels.
    pub median: f64,
}

impl Summary {
    /// `None` for no values, so that an empty set is `null` in JSON rather than NaN.
    pub fn of(xs: &[f64]) -> Option<Self> {
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
    /// The ROI's name, from the brain file's `roi_names`.
    pub name: String,
    /// Level on the visual hierarchy, as given in the brain file.
    pub level: i32,
    /// `level / max level`: the `h` the hierarchy line is fitted against.
    pub position: f64,
    /// Number of voxels labelled with this ROI.
    pub n_voxels: usize,
    /// Mean voxel depth `d_v = Σ_l p_vl · l/(L−1)` (DESIGN §4), in [0, 1].
    pub mean_depth: Option<f64>,
    /// Population standard deviation of the voxel depths.
    pub std_depth: Option<f64>,
    /// Mean held-out R².
    pub mean_r2: Option<f64>,
    /// Mean scale `s_v` (0: local patch token, 1: global token).
    pub mean_scale: Option<f64>,
    /// Mean selection entropy `H(p_v)/log L`, in [0, 1].
    pub mean_entropy: Option<f64>,
    /// Voxel count per argmax layer (length = number of layers).
    pub layer_histogram: Vec<usize>,
    /// Share of the ROI's voxels whose layer choice is ambiguous: top two layer probabilities
    /// within [`AMBIGUITY_MARGIN`]. `None` for an empty ROI (and in reports written before it).
    #[serde(default)]
    pub ambiguous: Option<f64>,
    /// How much better the chosen layers predict held-out responses than the best other layer,
    /// with an interval ([`crate::scores::layer_margin`]): an interval that includes 0 means the
    /// data cannot tell them apart. Computed by `fit` and `score` on the same images; `None`
    /// without bootstrap resamples and in reports written before it.
    #[serde(default)]
    pub layer_margin: Option<crate::scores::layer_margin::LayerMargin>,
}

/// Two layer probabilities closer than this (absolute difference) make a voxel's layer choice
/// ambiguous: the fit cannot tell those layers apart there (a late CNN layer can carry linearly
/// what an early one does), so its argmax layer is not a finding.
pub const AMBIGUITY_MARGIN: f64 = 0.1;

/// How many voxels' layer choices are ambiguous (see [`AMBIGUITY_MARGIN`]).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Ambiguity {
    /// The margin: top two layer probabilities closer than this.
    pub margin: f64,
    /// Share of all voxels whose choice is ambiguous (per ROI: `rois[].ambiguous`).
    pub share: f64,
}

pub use crate::model::FitSummary;

/// The FactorTopy fit settings behind a report: the configuration itself, which serialises as
/// `settings.fit` (see [`FitConfig`]).
pub type FitSettings = FitConfig;

/// The layer-wise ridge baseline's settings behind a report: its configuration itself.
pub type RidgeSettings = crate::baseline::config::RidgeBaselineConfig;

/// Everything that produced the numbers of a report, besides the input files.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// The hierarchy line was weighted by max(R², 0).
    pub weighted: bool,
    /// The FactorTopy fit (method `factortopy`).
    pub fit: Option<FitConfig>,
    /// The ridge baseline (method `ridge`).
    pub ridge: Option<RidgeSettings>,
    /// Bootstrap and permutation settings (`null` when no uncertainty was estimated).
    pub uncertainty: Option<UncertaintyConfig>,
}

/// Accuracy against the noise ceiling, over the voxels with a positive finite ceiling, raw,
/// ceiling and normalised side by side. Bounds: `raw`, `ceiling` and `normalized` in [0, 1],
/// `algonauts` in [0, 100].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct CeilingAccuracy {
    /// Voxels with a positive finite noise ceiling (the ones summarised here).
    pub n_voxels: usize,
    /// Squared held-out correlation `max(r, 0)²`.
    pub raw: Summary,
    /// The noise ceiling NC (R² units).
    pub ceiling: Summary,
    /// `max(r, 0)² / NC`, clipped to [0, 1] (DESIGN §4, the Algonauts convention).
    pub normalized: Summary,
    /// `normalized` × 100, the Algonauts challenge's form.
    pub algonauts: Summary,
}

impl CeilingAccuracy {
    /// `None` when no voxel has a positive finite ceiling.
    pub fn compute(pearson: &[f32], nc: &[f32]) -> Option<Self> {
        let keep: Vec<usize> = (0..nc.len()).filter(|&i| nc[i].is_finite() && nc[i] > 0.0).collect();
        let raw: Vec<f64> = keep.iter().map(|&i| (pearson[i] as f64).max(0.0).powi(2)).collect();
        let ceiling: Vec<f64> = keep.iter().map(|&i| nc[i] as f64).collect();
        let normalized = noise_normalized(pearson, nc);
        let algonauts: Vec<f64> = normalized.iter().map(|x| 100.0 * x).collect();
        Some(Self {
            n_voxels: keep.len(),
            raw: Summary::of(&raw)?,
            ceiling: Summary::of(&ceiling)?,
            normalized: Summary::of(&normalized)?,
            algonauts: Summary::of(&algonauts)?,
        })
    }
}

/// The scores of one fit: what `report.json` holds (every field is described in
/// `docs/formats.md`). Serialise it with serde; [`Report::headline`] gives the terminal summary.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Report {
    /// [`SCHEMA_VERSION`] of this layout.
    pub schema_version: u32,
    /// The factortopy version that wrote the report.
    pub library_version: String,
    /// The network, from the features' `model` metadata.
    pub model: String,
    /// `factortopy` or `ridge`.
    pub method: String,
    /// The subject, from the brain's metadata.
    pub subject: Option<String>,
    /// Number of probe images N.
    pub n_images: usize,
    /// Number of voxels V.
    pub n_voxels: usize,
    /// Number of layers L.
    pub n_layers: usize,
    /// The layers' names (`layer 0`, ... when the features name none).
    pub layer_names: Vec<String>,
    /// The settings that produced the numbers.
    pub settings: Settings,
    /// Brain–network alignment: slope, b0, b1 and Spearman ρ (DESIGN §4).
    pub hierarchy: HierarchyScores,
    /// Held-out R² over all voxels.
    pub r2: Summary,
    /// Held-out Pearson r over all voxels.
    pub pearson: Summary,
    /// Raw, ceiling and normalised accuracy; `None` without a noise ceiling (or when no voxel
    /// has a positive one).
    pub noise_ceiling: Option<CeilingAccuracy>,
    /// Intervals of the headline numbers and the hierarchy's permutation p-values.
    pub uncertainty: Option<Uncertainty>,
    /// Spread of the headline numbers over refits with several seeds (`fit --seeds K`).
    pub seeds: Option<SeedSpread>,
    /// One summary per ROI, in the brain's ROI order.
    pub rois: Vec<RoiSummary>,
    /// How the FactorTopy fit went (split sizes, epochs, best epoch, steps); `None` for the ridge
    /// baseline.
    pub fit: Option<FitSummary>,
    /// Ambiguous layer choices over all voxels (`None` in reports written before it).
    #[serde(default)]
    pub ambiguity: Option<Ambiguity>,
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

/// A score for a terminal: three decimals, or `null` when undefined (as in the JSON).
pub fn fmt_score(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "null".to_string())
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
        let ambiguous: Vec<f64> =
            hierarchy::top_two_gap(sel).iter().map(|&g| if g < AMBIGUITY_MARGIN { 1.0 } else { 0.0 }).collect();
        let hierarchy_scores = HierarchyScores::from_depth(
            &depth,
            &brain.roi,
            &brain.roi_levels,
            weighted.then_some(r2),
        )?;

        let r2_64: Vec<f64> = r2.iter().map(|&x| x as f64).collect();
        let r_64: Vec<f64> = pearson.iter().map(|&x| x as f64).collect();
        let noise_ceiling = match &brain.noise_ceiling {
            None => None,
            Some(nc) => {
                if nc.len() != v {
                    return Err(Error::mismatch(format!(
                        "noise ceiling has {} values for {v} voxels",
                        nc.len()
                    )));
                }
                CeilingAccuracy::compute(pearson, nc)
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
                    ambiguous: mean_over(&ambiguous, idx),
                    layer_margin: None,
                }
            })
            .collect();

        Ok(Report {
            schema_version: SCHEMA_VERSION,
            library_version: env!("CARGO_PKG_VERSION").to_string(),
            model: model.to_string(),
            method: method.to_string(),
            subject: brain.subject.clone(),
            n_images: brain.responses.shape.first().copied().unwrap_or(0),
            n_voxels: v,
            n_layers: l,
            layer_names,
            settings: Settings { weighted, ..Settings::default() },
            hierarchy: hierarchy_scores,
            // Non-empty: v > 0 was checked above.
            r2: Summary::of(&r2_64).expect("v > 0"),
            pearson: Summary::of(&r_64).expect("v > 0"),
            noise_ceiling,
            uncertainty: None,
            seeds: None,
            rois,
            fit,
            ambiguity: Some(Ambiguity {
                margin: AMBIGUITY_MARGIN,
                share: ambiguous.iter().sum::<f64>() / v as f64,
            }),
        })
    }

    /// Adds the intervals and the permutation test (DESIGN §4 "Uncertainty") to a report made by
    /// [`Report::compute`] from the same `sel`, `r2` and `brain`; `heldout` are the held-out
    /// predictions and targets behind `r2` (without them the accuracy numbers get no interval).
    pub fn with_uncertainty(
        mut self,
        sel: &Selections,
        brain: &Brain,
        heldout: Option<HeldOut>,
        r2: &[f32],
        cfg: &UncertaintyConfig,
    ) -> Result<Self> {
        let depth = hierarchy::voxel_depth(sel);
        let u = Uncertainty::estimate(&depth, brain, heldout, r2, self.settings.weighted, cfg)?;
        self.uncertainty = Some(u);
        self.settings.uncertainty = Some(*cfg);
        Ok(self)
    }

    /// Pretty JSON, stable across runs for the same inputs.
    pub fn to_json(&self) -> String {
        // Cannot fail: the report holds only strings, integers, finite-or-null floats and lists.
        serde_json::to_string_pretty(self).expect("a Report always serialises")
    }

    /// Parses a report, refusing one of another schema version (its numbers may mean something
    /// else).
    pub fn from_json(s: &str) -> Result<Report> {
        Self::parse(s).map_err(Error::invalid)
    }

    fn parse(s: &str) -> std::result::Result<Report, String> {
        let value: serde_json::Value = serde_json::from_str(s).map_err(|e| format!("not a factortopy report: {e}"))?;
        match value.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v) if v == SCHEMA_VERSION as u64 => {}
            found => {
                let found = found.map_or("no schema version (version 1, before versioning)".to_string(), |v| format!("schema version {v}"));
                return Err(format!(
                    "the report has {found}; this factortopy ({}) reads schema version {SCHEMA_VERSION}: \
                     re-score the encoder with this version rather than compare numbers across versions",
                    env!("CARGO_PKG_VERSION")
                ));
            }
        }
        serde_json::from_value(value).map_err(|e| format!("not a factortopy report: {e}"))
    }

    /// Writes the JSON (with a trailing newline) through a temporary file and a rename, so a
    /// reader never sees half a report.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let mut s = self.to_json();
        s.push('\n');
        crate::data::io::atomic_write(path, s.as_bytes())
    }

    /// Reads a `report.json`, refusing one of another schema version; errors name the file.
    pub fn read_json(path: &Path) -> Result<Report> {
        let bytes = crate::data::io::read_input(path)?;
        let s = String::from_utf8(bytes).map_err(|_| Error::data(path, "not a factortopy report: not UTF-8 text"))?;
        Self::parse(&s).map_err(|e| Error::data(path, e))
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
        let u = self.uncertainty.as_ref();
        let iv = |i: Option<Interval>, p: usize| i.map(|i| format!(" [{:.p$}, {:.p$}]", i.lo, i.hi)).unwrap_or_default();
        s += &format!(
            "hierarchy: slope {}{}  b0 {}{}  b1 {}{}  Spearman {}{}  ({} ROI voxels{})\n",
            fmt_score(h.slope),
            iv(u.and_then(|u| u.slope), 3),
            fmt_score(h.b0),
            iv(u.and_then(|u| u.b0), 3),
            fmt_score(h.b1),
            iv(u.and_then(|u| u.b1), 3),
            fmt_score(h.spearman),
            iv(u.and_then(|u| u.spearman), 3),
            h.n_voxels,
            if h.weighted { ", weighted by R²" } else { "" }
        );
        if let Some(p) = u.and_then(|u| u.permutation) {
            s += &format!(
                "null (ROI levels shuffled across {} ROIs, {} {}permutations): p(slope) {:.4}  p(Spearman) {:.4}\n",
                p.n_rois,
                p.n_permutations,
                if p.exact { "exact " } else { "random " },
                p.p_slope,
                p.p_spearman
            );
        }
        s += &format!(
            "held-out R²: mean {:.4}{}  median {:.4}{}   Pearson r: mean {:.4}{}  median {:.4}{}",
            self.r2.mean,
            iv(u.and_then(|u| u.r2_mean), 4),
            self.r2.median,
            iv(u.and_then(|u| u.r2_median), 4),
            self.pearson.mean,
            iv(u.and_then(|u| u.pearson_mean), 4),
            self.pearson.median,
            iv(u.and_then(|u| u.pearson_median), 4)
        );
        if let Some(c) = &self.noise_ceiling {
            s += &format!(
                "\nnoise ceiling ({} voxels): r² mean {:.4}, ceiling mean {:.4}, normalised mean {:.4}{} median {:.4} (Algonauts ×100: {:.2})",
                c.n_voxels,
                c.raw.mean,
                c.ceiling.mean,
                c.normalized.mean,
                iv(u.and_then(|u| u.noise_normalized_mean), 4),
                c.normalized.median,
                c.algonauts.mean
            );
        }
        match u {
            Some(u) if u.kind == IntervalKind::Seeds => {
                s += &format!(
                    "\nintervals: {:.0} % over {} seeds (where another fit lands: fit-to-fit spread, Student t, plus {} refit-free bootstrap resamples)",
                    100.0 * u.level,
                    u.n_fits,
                    u.n_resamples
                );
            }
            Some(u) if u.kind == IntervalKind::Simex => {
                let x = u.simex.as_ref();
                let corrected = |n: Option<&crate::scores::simex::SimexNumber>| n.map_or("null".to_string(), |n| format!("{:.3}", n.corrected));
                s += &format!(
                    "\nbias-corrected (SIMEX, {} fits: {} seeds × noise added at λ = {:?}, quadratic extrapolation to no noise): \
                     slope {}  b0 {}  b1 {}  Spearman {}\nintervals: {:.0} %; slope, b0, b1, Spearman: where a fit to noise-free data lands; \
                     the others over {} seeds (plus {} refit-free bootstrap resamples)",
                    u.n_fits,
                    x.map_or(0, |x| x.fits_per_lambda),
                    x.map_or(vec![], |x| x.lambdas.clone()),
                    corrected(x.and_then(|x| x.slope.as_ref())),
                    corrected(x.and_then(|x| x.b0.as_ref())),
                    corrected(x.and_then(|x| x.b1.as_ref())),
                    corrected(x.and_then(|x| x.spearman.as_ref())),
                    100.0 * u.level,
                    x.map_or(0, |x| x.fits_per_lambda),
                    u.n_resamples
                );
            }
            Some(u) if u.n_resamples > 0 => {
                // A FactorTopy fit's own optimisation noise is larger than these intervals
                // (docs/uncertainty.md: they covered a noise-free refit in 7 of 20 planted seeds);
                // the ridge baseline's closed-form fit has none.
                let refits = if self.settings.fit.is_some() {
                    "; another fit of the same data can land outside them: `--seeds 3` gives intervals that include fit-to-fit variability"
                } else {
                    ""
                };
                s += &format!(
                    "\nintervals: {:.0} % percentile bootstrap centred on the estimates, {} resamples of {} held-out images and of the voxels within each ROI (refit-free{refits})",
                    100.0 * u.level,
                    u.n_resamples,
                    u.n_images_resampled
                );
            }
            _ => {}
        }
        if let Some(a) = &self.ambiguity {
            let by_roi: Vec<String> = self
                .rois
                .iter()
                .filter_map(|r| r.ambiguous.map(|x| format!("{} {:.0} %", r.name, 100.0 * x)))
                .collect();
            s += &format!(
                "\nambiguous layer choice (top two layer probabilities within {}): {:.1} % of voxels{}",
                a.margin,
                100.0 * a.share,
                if by_roi.is_empty() { String::new() } else { format!(" ({})", by_roi.join(", ")) }
            );
        }
        let margins: Vec<String> = self
            .rois
            .iter()
            .filter_map(|r| {
                r.layer_margin.as_ref().map(|m| {
                    let verdict = if m.lo > 0.0 { "" } else { " (cannot tell)" };
                    format!("{} {:+.3} [{:+.3}, {:+.3}]{verdict}", r.name, m.margin, m.lo, m.hi)
                })
            })
            .collect();
        if !margins.is_empty() {
            s += &format!("
layer margin (held-out R² of the chosen layers over the best other layer): {}", margins.join(", "));
        }
        if let Some(sp) = &self.seeds {
            let f = |x: &Option<Spread>| x.as_ref().map(|x| format!("{:.3} ± {:.3}", x.mean, x.std)).unwrap_or("-".into());
            s += &format!(
                "\nover {} seeds (mean ± sd): slope {}  b0 {}  b1 {}  Spearman {}  R² mean {}",
                sp.seeds.len(),
                f(&sp.slope),
                f(&sp.b0),
                f(&sp.b1),
                f(&sp.spearman),
                f(&sp.r2_mean)
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
            responses: Array::zeros(vec![4, v]).into(),
            coords: Array::zeros(vec![v, 3]),
            roi: vec![0, 0, 1, 2, -1, 2],
            noise_ceiling: Some(vec![0.5, 0.0, 0.25, 0.8, 0.5, 0.1]),
            flat: None,
            hemisphere: None,
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
    fn ambiguous_layer_choices_per_roi() {
        // Gaps between the top two probabilities: .05 (ambiguous), .3, 0 (a tie), .01, 1, .15.
        #[rustfmt::skip]
        let p = vec![
            0.5, 0.45, 0.05,
            0.6, 0.3, 0.1,
            0.4, 0.2, 0.4,
            0.34, 0.33, 0.33,
            0.0, 0.0, 1.0,
            0.55, 0.05, 0.4,
        ];
        let (mut sel, brain) = toy();
        sel.layer_probs = Array::new(vec![6, 3], p).unwrap();
        let gaps = hierarchy::top_two_gap(&sel);
        for (g, want) in gaps.iter().zip([0.05, 0.3, 0.0, 0.01, 1.0, 0.15]) {
            assert!((g - want).abs() < 1e-6, "{gaps:?}");
        }
        let rep = Report::compute("toy", "factortopy", &[], &sel, &[0.1; 6], &[0.1; 6], &brain, false, None).unwrap();
        // ROIs [0, 0, 1, 2, -1, 2]: V1 {.05, .3} → 1/2; hV4 {0} → 1; FFA {.01, .15} → 1/2;
        // the voxel without an ROI counts only in the overall share (3 of 6).
        let amb: Vec<Option<f64>> = rep.rois.iter().map(|r| r.ambiguous).collect();
        assert_eq!(amb, vec![Some(0.5), Some(1.0), Some(0.5), None]);
        let a = rep.ambiguity.unwrap();
        assert_eq!((a.margin, a.share), (AMBIGUITY_MARGIN, 0.5));
        let head = rep.headline();
        assert!(head.contains("ambiguous layer choice (top two layer probabilities within 0.1): 50.0 % of voxels"), "{head}");
        assert!(head.contains("(V1 50 %, hV4 100 %, FFA 50 %)"), "{head}");
        // A single layer is never ambiguous.
        assert_eq!(hierarchy::top_two_gap_of(&[1.0]), 1.0);
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
            (rep.hierarchy.slope.unwrap() - slope).abs() < 1e-12
                && (rep.hierarchy.b0.unwrap() - b0).abs() < 1e-12
        );
        // R² over all six voxels: [.2, −.1, .3, .1, .5, .4] → mean 1.4/6, median (.2 + .3)/2.
        assert!((rep.r2.mean - 1.4 / 6.0).abs() < 1e-6);
        assert!((rep.r2.median - 0.25).abs() < 1e-6);
        // Noise-normalised over NC > 0 (voxel 1 excluded):
        //   v0 .25/.5 = .5; v2 .36/.25 → 1 (clipped); v3 .16/.8 = .2; v4 .49/.5 = .98;
        //   v5 .64/.1 → 1. Mean 3.68/5 = .736, median .98.
        let c = rep.noise_ceiling.unwrap();
        let nn = c.normalized;
        assert!((nn.mean - 0.736).abs() < 1e-6, "{nn:?}");
        assert!((nn.median - 0.98).abs() < 1e-6, "{nn:?}");
        assert!((c.algonauts.mean - 73.6).abs() < 1e-4 && (c.algonauts.median - 98.0).abs() < 1e-4, "{c:?}");
        // Same five voxels: raw r² [.25, .36, .16, .49, .64] → mean .38, median .36;
        // ceilings [.5, .25, .8, .5, .1] → mean .43, median .5.
        assert_eq!(c.n_voxels, 5);
        assert!((c.raw.mean - 0.38).abs() < 1e-6 && (c.raw.median - 0.36).abs() < 1e-6, "{c:?}");
        assert!((c.ceiling.mean - 0.43).abs() < 1e-6 && (c.ceiling.median - 0.5).abs() < 1e-6, "{c:?}");

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
        assert!(rep.noise_ceiling.is_none());
        assert!(rep.hierarchy.weighted && rep.settings.weighted);
        assert!(rep.to_json().contains("\"noise_ceiling\": null"));
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

    /// Held-out predictions for the toy brain's 4 images and 6 voxels.
    fn heldout_data() -> (Vec<f32>, Vec<f32>) {
        let t: Vec<f32> = (0..24).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let p: Vec<f32> = t.iter().enumerate().map(|(i, x)| 0.5 * x + ((i % 3) as f32 - 1.0) * 0.4).collect();
        (p, t)
    }

    fn report_with_uncertainty() -> Report {
        let (sel, brain) = toy();
        let (p, t) = heldout_data();
        let h = HeldOut::new(&p, &t, 4, 6).unwrap();
        let (r2, r) = h.scores();
        let cfg = UncertaintyConfig::default();
        Report::compute("toy-net", "factortopy", &[], &sel, &r2, &r, &brain, false, None)
            .unwrap()
            .with_uncertainty(&sel, &brain, Some(h), &r2, &cfg)
            .unwrap()
    }

    #[test]
    fn uncertainty_block() {
        let rep = report_with_uncertainty();
        let u = rep.uncertainty.as_ref().unwrap();
        assert_eq!((u.n_resamples, u.n_images_resampled, u.n_voxels_resampled), (1000, 4, 5));
        for (name, iv, point) in [
            ("slope", u.slope, rep.hierarchy.slope.unwrap()),
            ("r2 mean", u.r2_mean, rep.r2.mean),
            ("pearson mean", u.pearson_mean, rep.pearson.mean),
        ] {
            let iv = iv.unwrap_or_else(|| panic!("{name} has an interval"));
            assert!(iv.lo <= iv.hi, "{name} {iv:?}");
            // Percentile intervals of these need not contain the point, but here they do.
            assert!(iv.contains(point), "{name}: {point} outside {iv:?}");
        }
        let nn = u.noise_normalized_mean.unwrap();
        let alg = u.algonauts_mean.unwrap();
        assert!((alg.lo - 100.0 * nn.lo).abs() < 1e-9 && (0.0..=1.0).contains(&nn.lo) && nn.hi <= 1.0);
        // 3 ROIs with voxels at 3 distinct levels: 3! orderings, enumerated.
        let p = u.permutation.unwrap();
        assert!(p.exact && p.n_permutations == 6 && p.n_rois == 3, "{p:?}");
        assert_eq!(rep.settings.uncertainty, Some(UncertaintyConfig::default()));
        // Deterministic.
        assert_eq!(rep.to_json(), report_with_uncertainty().to_json());
        assert_eq!((u.kind, u.n_fits), (crate::scores::IntervalKind::RefitFree, 1));
        let head = rep.headline();
        assert!(head.contains("p(slope)") && head.contains("1000 resamples"), "{head}");
        // Refit-free intervals of a FactorTopy fit say that another fit can land outside them
        // and how to get intervals that include that; a report without fit settings (the
        // ridge baseline's closed form) does not.
        assert!(head.contains("(refit-free)") && !head.contains("--seeds"), "{head}");
        let mut fitted = rep.clone();
        fitted.settings.fit = Some(FitConfig::default());
        let head = fitted.headline();
        assert!(head.contains("another fit of the same data can land outside them: `--seeds 3`"), "{head}");
    }

    /// Intervals over seeds from three fits whose slopes and slope replicates are set by hand:
    /// slopes 0.80, 0.86, 0.92 and replicates with variances 0.0001, 0.0002, 0.0003 give
    /// 0.86 ± t₂·√(0.0036·4/3 + 0.0002) (the case worked in `seed_interval`).
    #[test]
    fn intervals_over_seeds_by_hand() {
        let base = report_with_uncertainty();
        let fit = |slope: f64, var: f64| {
            let mut r = base.clone();
            r.hierarchy.slope = Some(slope);
            // Two replicates at slope ± d have sample variance 2d²/(2 − 1) = 2d².
            let d = (var / 2.0).sqrt();
            r.uncertainty.as_mut().unwrap().replicates.slope = vec![slope - d, slope + d, f64::NAN];
            r
        };
        let reports = [fit(0.80, 0.0001), fit(0.86, 0.0002), fit(0.92, 0.0003)];
        let u = Uncertainty::over_seeds(&reports, &[]).unwrap();
        let half = 4.302652729749464 * 0.005f64.sqrt();
        let iv = u.slope.unwrap();
        assert!((iv.lo - (0.86 - half)).abs() < 1e-9 && (iv.hi - (0.86 + half)).abs() < 1e-9, "{iv:?}");
        assert_eq!((u.kind, u.n_fits, u.n_resamples), (IntervalKind::Seeds, 3, 3000));
        assert_eq!(u.permutation, base.uncertainty.as_ref().unwrap().permutation);
        // Every fit has the same R² (copies): no spread, so only the bootstrap term remains,
        // around the common value, and R² ≤ 1 clips the top.
        let r2 = u.r2_mean.unwrap();
        let w = crate::scores::seed_interval::replicate_variance(&base.uncertainty.as_ref().unwrap().replicates.r2_mean);
        let half = 4.302652729749464 * w.sqrt();
        assert!(w > 0.0 && (r2.lo - (base.r2.mean - half)).abs() < 1e-9, "{r2:?}");
        assert!((r2.hi - (base.r2.mean + half).min(1.0)).abs() < 1e-9, "{r2:?}");
        // Spearman stays within [-1, 1]; the Algonauts form is the normalised one × 100.
        let sp = u.spearman.unwrap();
        assert!(sp.lo >= -1.0 && sp.hi <= 1.0);
        let (nn, alg) = (u.noise_normalized_mean.unwrap(), u.algonauts_mean.unwrap());
        assert!((alg.hi - 100.0 * nn.hi).abs() < 1e-9);
        let json = Report { uncertainty: Some(u), ..base.clone() }.to_json();
        assert!(json.contains("\"kind\": \"seeds\"") && json.contains("\"n_fits\": 3"), "{json}");
        // One fit, or a fit without uncertainty, is refused.
        assert!(Uncertainty::over_seeds(&reports[..1], &[]).is_err());
        let bare = Report { uncertainty: None, ..base.clone() };
        assert!(Uncertainty::over_seeds(&[reports[0].clone(), bare], &[]).is_err());
    }

    #[test]
    fn other_schema_versions_are_refused() {
        let json = report().to_json();
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["schema_version"] = serde_json::json!(1);
        let e = Report::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("schema version 1") && e.contains(&format!("reads schema version {SCHEMA_VERSION}")), "{e}");
        v.as_object_mut().unwrap().remove("schema_version");
        let e = Report::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("before versioning"), "{e}");
    }

    /// `settings.fit` is the configuration itself, written with the keys and values the
    /// report has always had: the string below is what the former field-by-field copy wrote for
    /// the default settings without a time limit (an infinite `max_seconds` is no number).
    #[test]
    fn fit_settings_keep_their_keys_and_values() {
        let cfg = FitConfig { max_seconds: Some(f64::INFINITY), ..FitConfig::default() };
        let want = concat!(
            r#"{"seed":0,"val_fraction":0.1,"max_epochs":40,"batch_size":8,"lr":0.001,"weight_decay":0.01,"#,
            r#""clip_norm":0.5,"beta":0.1,"reg_lambda":0.1,"reg_steps":2000,"patience":5,"min_delta":0.0001,"#,
            r#""d":128,"grid":8,"max_steps":null,"max_seconds":null,"readout":"fused","resample":"auto","#,
            r#""layer_units":"common"}"#
        );
        assert_eq!(serde_json::to_string(&cfg).unwrap(), want);
        let design = FitConfig { readout: crate::model::Readout::Unfused, ..FitConfig::design() };
        let json = serde_json::to_string(&design).unwrap();
        assert!(json.contains(r#""readout":"unfused","resample":"bilinear","layer_units":"raw"}"#), "{json}");
    }

    /// Every setting survives a report's round trip, but `store`, which is not written.
    #[test]
    fn fit_settings_round_trip_through_a_report() {
        let cfg = FitConfig {
            seed: 7,
            max_steps: Some(300),
            max_seconds: Some(12.5),
            readout: crate::model::Readout::Unfused,
            resample: crate::model::Resample::Area,
            store: Some(crate::data::Precision::Bf16),
            normalise_layers: false,
            ..FitConfig::fast()
        };
        let mut rep = report();
        rep.settings.fit = Some(cfg.clone());
        let back = Report::from_json(&rep.to_json()).unwrap();
        assert_eq!(back.settings.fit, Some(FitConfig { store: None, ..cfg }));
        let json = serde_json::to_value(FitConfig { store: Some(crate::data::Precision::F16), ..FitConfig::default() }).unwrap();
        assert!(json.get("store").is_none(), "{json}");
    }

    /// Settings written before `resample` and `layer_units` existed (the golden report of the
    /// `design` preset) read as what those fits used: bilinear resampling in raw units.
    #[test]
    fn old_fit_settings_still_load() {
        let golden: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/golden/design_preset_report.json")).unwrap();
        let old = golden.pointer("/settings/fit").unwrap();
        assert!(old.get("resample").is_none() && old.get("layer_units").is_none(), "{old}");
        let cfg: FitConfig = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(cfg, FitConfig { max_epochs: 2, d: 16, grid: 3, ..FitConfig::design() });
        let mut bad = old.clone();
        bad["layer_units"] = serde_json::json!("metres");
        let e = serde_json::from_value::<FitConfig>(bad).unwrap_err().to_string();
        assert!(e.contains("unknown layer_units `metres`"), "{e}");
    }

    /// `settings.ridge` is the ridge configuration itself; settings written before it recorded
    /// the batch size and uncertainty read with their defaults.
    #[test]
    fn ridge_settings_round_trip_and_old_ones_load() {
        let cfg = RidgeSettings { alphas: vec![1.0, 10.0], n_folds: 3, seed: 4, n_targets_batch: 64, ..RidgeSettings::default() };
        let mut rep = report();
        rep.settings.ridge = Some(cfg.clone());
        assert_eq!(Report::from_json(&rep.to_json()).unwrap().settings.ridge, Some(cfg));
        let old = r#"{"seed":0,"val_fraction":0.1,"alphas":[0.1,1.0],"n_folds":5,"standardize":true}"#;
        let back: RidgeSettings = serde_json::from_str(old).unwrap();
        let want = RidgeSettings { alphas: vec![0.1, 1.0], ..RidgeSettings::default() };
        assert_eq!(back, want);
    }

    #[test]
    fn json_round_trip_and_field_names() {
        let rep = Report { fit: report().fit, ..report_with_uncertainty() };
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
            "/schema_version",
            "/library_version",
            "/settings/weighted",
            "/noise_ceiling/raw/mean",
            "/noise_ceiling/ceiling/mean",
            "/noise_ceiling/normalized/mean",
            "/noise_ceiling/algonauts/median",
            "/uncertainty/kind",
            "/uncertainty/n_fits",
            "/uncertainty/slope/lo",
            "/uncertainty/r2_mean/hi",
            "/uncertainty/permutation/p_slope",
            "/uncertainty/permutation/n_permutations",
            "/settings/uncertainty/bootstrap/n_resamples",
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
        assert_eq!(back.schema_version, SCHEMA_VERSION);
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
