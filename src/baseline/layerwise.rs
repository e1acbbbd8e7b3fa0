//! The layer-wise ridge baseline: for every layer, a ridge regression from that layer's global
//! token (the CLS token, or the spatial mean of the patch map when the file has none) to all
//! voxels, with per-voxel penalties chosen by K-fold cross-validation inside the training images
//! (himalaya's `RidgeCV` scheme, [`crate::baseline::ridge`]).
//!
//! Protocol:
//! - the train/validation split is FactorTopy's seeded [`Split`] (same seed, same fraction), so
//!   the held-out R² of both methods is measured on the same images;
//! - inside the training images, `n_folds` seeded shuffled folds choose each voxel's penalty;
//! - each feature is z-scored with training statistics (the α grid then means the same thing
//!   for every layer), and an intercept is fitted;
//! - a voxel's **best layer** is the layer with the best cross-validated score (negative MSE on
//!   the z-scored responses), so the held-out R² reported for it is not selected on the
//!   validation images;
//! - the choice becomes FactorTopy-shaped [`Selections`] (one-hot layer probabilities, space at
//!   the image centre, scale 1 = global token), so the hierarchy scores of DESIGN §4 and the
//!   report are computed exactly as for a FactorTopy fit (method `"ridge"`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::baseline::config::RidgeBaselineConfig;
use crate::baseline::ridge::{ridge_cv, shuffled_kfold, Folds, RidgeCv};
use crate::data::safetensors_io::{write_tensors, OutTensor};
use crate::data::{Array, Brain, FeatureSource};
use crate::error::{Error, Result};
use crate::model::{Selections, Split};
use crate::scores::hierarchy;
use crate::scores::stats::{self, pearson_per_voxel, r2_per_voxel};
use crate::scores::{HeldOut, Report};

/// The `method` field of a ridge baseline report.
pub const METHOD: &str = "ridge";

/// What one layer's ridge achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// Layer index.
    pub layer: usize,
    /// Layer name.
    pub name: String,
    /// Feature width C of the layer.
    pub width: usize,
    /// Mean over voxels of the cross-validated score (negative MSE, z-scored units).
    pub mean_cv_score: f64,
    /// Mean over voxels of the held-out R².
    pub mean_val_r2: f64,
    /// Voxels whose best layer this is.
    pub n_best: usize,
    /// Voxel count per penalty of the grid (this layer's choices).
    pub alpha_histogram: Vec<usize>,
    /// Wall-clock seconds of this layer's ridge.
    pub seconds: f64,
}

/// A fitted layer-wise ridge baseline.
#[derive(Debug, Clone)]
pub struct RidgeBaseline {
    /// The settings it was fitted with.
    pub config: RidgeBaselineConfig,
    /// The train/validation split of the images.
    pub split: Split,
    /// `[V]` best layer per voxel.
    pub best_layer: Vec<usize>,
    /// `[V]` penalty chosen for the best layer.
    pub best_alpha: Vec<f64>,
    /// `[L, V]` cross-validated score of every layer.
    pub cv_score: Array,
    /// `[L, V]` held-out R² of every layer.
    pub val_r2: Array,
    /// `[L, V]` chosen penalty of every layer.
    pub alpha: Array,
    /// `[V]` held-out R² of the best layer.
    pub r2: Vec<f32>,
    /// `[V]` held-out Pearson r of the best layer.
    pub pearson: Vec<f32>,
    /// One-hot FactorTopy-shaped choices.
    pub selections: Selections,
    /// DESIGN §4 scores of the choice (method `"ridge"`).
    pub report: Report,
    /// What each layer's ridge achieved.
    pub layers: Vec<LayerSummary>,
    /// Wall-clock seconds of the whole baseline.
    pub seconds: f64,
}

fn select_rows(a: &[f32], cols: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * cols);
    for &r in rows {
        out.extend_from_slice(&a[r * cols..(r + 1) * cols]);
    }
    out
}

/// Z-scores the columns of `train` in place with its own statistics and applies the same
/// transform to `other`; constant columns are only centred.
fn standardize(train: &mut [f32], other: &mut [f32], cols: usize) {
    let rows = train.len() / cols.max(1);
    let mut mean = vec![0.0f64; cols];
    for r in train.chunks_exact(cols) {
        mean.iter_mut().zip(r).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
    let mut var = vec![0.0f64; cols];
    for r in train.chunks_exact(cols) {
        var.iter_mut().zip(r).zip(&mean).for_each(|((s, &v), m)| *s += (v as f64 - m).powi(2));
    }
    let inv: Vec<f64> = var
        .iter()
        .map(|&s| {
            let sd = (s / rows.max(1) as f64).sqrt();
            if sd > 0.0 && sd.is_finite() {
                1.0 / sd
            } else {
                1.0
            }
        })
        .collect();
    for buf in [train, other] {
        for r in buf.chunks_exact_mut(cols) {
            for ((v, m), s) in r.iter_mut().zip(&mean).zip(&inv) {
                *v = ((*v as f64 - m) * s) as f32;
            }
        }
    }
}

/// Fits the layer-wise ridge baseline of `features` to `brain` and scores its one-hot choice.
/// `weighted` weights the hierarchy line by max(R², 0), as for FactorTopy. `progress` is
/// called after each layer.
pub fn fit_ridge_baseline(
    features: &dyn FeatureSource,
    brain: &Brain,
    cfg: &RidgeBaselineConfig,
    weighted: bool,
    mut progress: Option<&mut dyn FnMut(&LayerSummary)>,
) -> Result<RidgeBaseline> {
    let start = Instant::now();
    cfg.uncertainty.validate()?;
    crate::data::check_pair(features, "features", brain, "brain")?;
    let (n, v, l) = (brain.n_images(), brain.n_voxels(), features.n_layers());
    if l == 0 {
        return Err(Error::invalid("the features have no layers"));
    }
    if !(cfg.val_fraction > 0.0 && cfg.val_fraction < 1.0) {
        return Err(Error::invalid(format!("val_fraction must be in (0, 1), got {}", cfg.val_fraction)));
    }
    let split = Split::new(n, cfg.val_fraction, cfg.seed)?;
    let (ntr, nval) = (split.train.len(), split.val.len());
    if cfg.n_folds < 2 || cfg.n_folds > ntr {
        return Err(Error::invalid(format!(
            "{} cross-validation folds for {ntr} training images; need 2 ≤ folds ≤ images",
            cfg.n_folds
        )));
    }
    let folds = shuffled_kfold(ntr, cfg.n_folds, cfg.seed);
    let ytr = Array::new(vec![ntr, v], select_rows(&brain.responses.data, v, &split.train))?;
    let yval = select_rows(&brain.responses.data, v, &split.val);
    let ridge = RidgeCv {
        alphas: cfg.alphas.clone(),
        folds: Folds::Given(folds),
        fit_intercept: true,
        n_targets_batch: cfg.n_targets_batch,
    };

    let mut cv_score = vec![0.0f32; l * v];
    let mut val_r2 = vec![0.0f32; l * v];
    let mut val_pearson = vec![0.0f32; l * v];
    let mut alpha = vec![0.0f32; l * v];
    // Held-out predictions of each voxel's best layer so far (by cross-validated score, first
    // layer on ties, as the choice below): the bootstrap resamples them.
    let mut best_pred = vec![0.0f32; nval * v];
    let mut best_cv = vec![f32::NEG_INFINITY; v];
    let mut layers = Vec::with_capacity(l);
    for layer in 0..l {
        let t0 = Instant::now();
        // Only the global tokens are read (the stored ones, or the local maps' spatial means
        // computed a block of images at a time), one layer at a time.
        let g = features.global_tokens(layer)?;
        let c = g.shape[1];
        let mut xtr = select_rows(&g.data, c, &split.train);
        let mut xval = select_rows(&g.data, c, &split.val);
        drop(g);
        if cfg.standardize {
            standardize(&mut xtr, &mut xval, c);
        }
        let fit = ridge_cv(&Array::new(vec![ntr, c], xtr)?, &ytr, &ridge)?;
        let pred = fit.predict(&xval, nval)?;
        let r2 = r2_per_voxel(&pred, &yval, nval, v);
        let pr = pearson_per_voxel(&pred, &yval, nval, v);
        let mut hist = vec![0usize; cfg.alphas.len()];
        for (i, &a) in fit.best_alpha_index.iter().enumerate() {
            hist[a] += 1;
            alpha[layer * v + i] = cfg.alphas[a] as f32;
        }
        for i in 0..v {
            cv_score[layer * v + i] = fit.cv_scores[i] as f32;
        }
        for i in 0..v {
            let cv = cv_score[layer * v + i];
            if layer == 0 || cv > best_cv[i] {
                best_cv[i] = cv;
                for row in 0..nval {
                    best_pred[row * v + i] = pred[row * v + i];
                }
            }
        }
        val_r2[layer * v..(layer + 1) * v].copy_from_slice(&r2);
        val_pearson[layer * v..(layer + 1) * v].copy_from_slice(&pr);
        let summary = LayerSummary {
            layer,
            name: features.layer_names().get(layer).cloned().unwrap_or_else(|| format!("layer{layer}")),
            width: c,
            mean_cv_score: stats::mean(&fit.cv_scores),
            mean_val_r2: stats::mean(&r2),
            n_best: 0,
            alpha_histogram: hist,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if let Some(cb) = progress.as_mut() {
            cb(&summary);
        }
        layers.push(summary);
    }

    // Best layer by cross-validated score (first layer on exact ties).
    let mut best_layer = vec![0usize; v];
    for (i, best) in best_layer.iter_mut().enumerate() {
        for layer in 1..l {
            if cv_score[layer * v + i] > cv_score[*best * v + i] {
                *best = layer;
            }
        }
        layers[*best].n_best += 1;
    }
    debug_assert!((0..v).all(|i| best_cv[i].to_bits() == cv_score[best_layer[i] * v + i].to_bits()));
    let r2: Vec<f32> = (0..v).map(|i| val_r2[best_layer[i] * v + i]).collect();
    let pearson: Vec<f32> = (0..v).map(|i| val_pearson[best_layer[i] * v + i]).collect();
    let best_alpha: Vec<f64> = (0..v).map(|i| alpha[best_layer[i] * v + i] as f64).collect();
    let selections = one_hot_selections(&best_layer, l);
    let heldout = HeldOut::new(&best_pred, &yval, nval, v)?;
    let mut report = Report::compute(
        features.model(),
        METHOD,
        features.layer_names(),
        &selections,
        &r2,
        &pearson,
        brain,
        weighted,
        None,
    )?
    .with_uncertainty(&selections, brain, Some(heldout), &r2, &cfg.uncertainty)?;
    report.settings.ridge = Some(cfg.clone());
    Ok(RidgeBaseline {
        config: cfg.clone(),
        split,
        best_layer,
        best_alpha,
        cv_score: Array::new(vec![l, v], cv_score)?,
        val_r2: Array::new(vec![l, v], val_r2)?,
        alpha: Array::new(vec![l, v], alpha)?,
        r2,
        pearson,
        selections,
        report,
        layers,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// FactorTopy-shaped selections of a hard layer choice: one-hot layer probabilities, space at
/// the image centre, scale 1 (global token).
pub fn one_hot_selections(best_layer: &[usize], n_layers: usize) -> Selections {
    let v = best_layer.len();
    let mut p = vec![0.0f32; v * n_layers];
    for (i, &b) in best_layer.iter().enumerate() {
        p[i * n_layers + b] = 1.0;
    }
    Selections {
        layer_probs: Array { shape: vec![v, n_layers], data: p },
        space: Array::zeros(vec![v, 2]),
        scale: vec![1.0; v],
    }
}

/// One ROI of an [`Agreement`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoiAgreement {
    /// The ROI's name.
    pub name: String,
    /// Its hierarchy level.
    pub level: i32,
    /// Its voxel count.
    pub n_voxels: usize,
    /// Mean voxel depth (DESIGN §4) under each method; `None` for an empty ROI.
    pub depth: Option<f64>,
    /// Mean voxel depth under the reference method.
    pub reference_depth: Option<f64>,
    /// `reference_depth − depth`.
    pub difference: Option<f64>,
}

/// How two layer maps of the same brain agree (the ridge baseline against a FactorTopy fit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// This map's method (`ridge`).
    pub method: String,
    /// The reference map's method (`factortopy`).
    pub reference_method: String,
    /// Hierarchy slopes of the two fits; `None` where undefined.
    pub slope: Option<f64>,
    /// The reference fit's hierarchy slope.
    pub reference_slope: Option<f64>,
    /// ROI by ROI.
    pub rois: Vec<RoiAgreement>,
    /// Pearson r of the per-ROI mean depths (ROIs with voxels; `None` below 2 ROIs or when
    /// either side is constant).
    pub roi_depth_pearson: Option<f64>,
    /// Mean |difference| of per-ROI mean depths.
    pub mean_abs_roi_difference: Option<f64>,
    /// Spearman ρ of voxel depths over ROI voxels, when both maps are given.
    pub voxel_depth_spearman: Option<f64>,
    /// Fraction of ROI voxels whose argmax layer is the same, when both maps are given.
    pub same_layer_fraction: Option<f64>,
}

/// Refuses two reports that were not made on the same brain: the ROIs (names, levels and voxel
/// counts), the voxel and image counts and the subject must all agree. Comparing layer maps of
/// two different brains would give numbers that mean nothing.
fn same_brain(a: &Report, b: &Report) -> Result<()> {
    let rois = |r: &Report| r.rois.iter().map(|x| (x.name.clone(), x.level, x.n_voxels)).collect::<Vec<_>>();
    let differ = |what: &str, x: String, y: String| {
        Err(Error::mismatch(format!(
            "the two fits were made on different brains ({what}: {x} vs {y}); compare fits of the same brain"
        )))
    };
    if a.n_voxels != b.n_voxels {
        return differ("voxels", a.n_voxels.to_string(), b.n_voxels.to_string());
    }
    if a.n_images != b.n_images {
        return differ("images", a.n_images.to_string(), b.n_images.to_string());
    }
    if a.subject != b.subject {
        return differ("subject", format!("{:?}", a.subject), format!("{:?}", b.subject));
    }
    if rois(a) != rois(b) {
        return differ("ROIs (name, level, voxels)", format!("{:?}", rois(a)), format!("{:?}", rois(b)));
    }
    Ok(())
}

/// Compares two reports of the same brain ROI by ROI (`report` is typically the ridge baseline,
/// `reference` a FactorTopy fit); with both selections, voxel by voxel too.
pub fn agreement(
    report: &Report,
    reference: &Report,
    voxels: Option<(&Selections, &Selections, &Brain)>,
) -> Result<Agreement> {
    same_brain(report, reference)?;
    let rois: Vec<RoiAgreement> = report
        .rois
        .iter()
        .zip(&reference.rois)
        .map(|(a, b)| RoiAgreement {
            name: a.name.clone(),
            level: a.level,
            n_voxels: a.n_voxels,
            depth: a.mean_depth,
            reference_depth: b.mean_depth,
            difference: a.mean_depth.zip(b.mean_depth).map(|(x, y)| y - x),
        })
        .collect();
    let pairs: Vec<(f64, f64)> = rois.iter().filter_map(|r| r.depth.zip(r.reference_depth)).collect();
    let (xs, ys): (Vec<f64>, Vec<f64>) = pairs.iter().cloned().unzip();
    let varies = |z: &[f64]| z.iter().any(|&q| (q - z[0]).abs() > 1e-12);
    let roi_depth_pearson =
        (xs.len() >= 2 && varies(&xs) && varies(&ys)).then(|| stats::pearson(&xs, &ys));
    let mean_abs_roi_difference =
        (!xs.is_empty()).then(|| xs.iter().zip(&ys).map(|(a, b)| (a - b).abs()).sum::<f64>() / xs.len() as f64);
    let (mut voxel_depth_spearman, mut same_layer_fraction) = (None, None);
    if let Some((a, b, brain)) = voxels {
        let v = brain.n_voxels();
        if a.n_voxels() != v || b.n_voxels() != v {
            return Err(Error::mismatch(format!(
                "selections cover {} and {} voxels, the brain has {v}",
                a.n_voxels(),
                b.n_voxels()
            )));
        }
        let idx: Vec<usize> = (0..v).filter(|&i| brain.roi[i] >= 0).collect();
        let (da, db) = (hierarchy::voxel_depth(a), hierarchy::voxel_depth(b));
        let (aa, ab) = (hierarchy::argmax_layer(a), hierarchy::argmax_layer(b));
        let xa: Vec<f64> = idx.iter().map(|&i| da[i]).collect();
        let xb: Vec<f64> = idx.iter().map(|&i| db[i]).collect();
        if xa.len() >= 2 {
            voxel_depth_spearman = Some(stats::spearman(&xa, &xb));
        }
        if !idx.is_empty() && a.n_layers() == b.n_layers() {
            same_layer_fraction =
                Some(idx.iter().filter(|&&i| aa[i] == ab[i]).count() as f64 / idx.len() as f64);
        }
    }
    Ok(Agreement {
        method: report.method.clone(),
        reference_method: reference.method.clone(),
        slope: report.hierarchy.slope,
        reference_slope: reference.hierarchy.slope,
        rois,
        roi_depth_pearson,
        mean_abs_roi_difference,
        voxel_depth_spearman,
        same_layer_fraction,
    })
}

impl Agreement {
    /// A few lines for a terminal: per-ROI depths side by side.
    pub fn table(&self) -> String {
        let mut s = format!(
            "per-ROI mean depth: {} vs {} (slope {} vs {})\n",
            self.method,
            self.reference_method,
            crate::scores::report::fmt_score(self.slope),
            crate::scores::report::fmt_score(self.reference_slope)
        );
        s += &format!("{:<12} {:>6} {:>8} {:>8} {:>8}\n", "ROI", "level", self.method, self.reference_method, "diff");
        let f = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        for r in &self.rois {
            s += &format!(
                "{:<12} {:>6} {:>8} {:>8} {:>8}\n",
                r.name,
                r.level,
                f(r.depth),
                f(r.reference_depth),
                f(r.difference)
            );
        }
        s += &format!("ROI depth Pearson r {}  mean |diff| {}", f(self.roi_depth_pearson), f(self.mean_abs_roi_difference));
        if let Some(x) = self.voxel_depth_spearman {
            s += &format!("  voxel depth Spearman {x:.3}");
        }
        if let Some(x) = self.same_layer_fraction {
            s += &format!("  same argmax layer {:.1}%", 100.0 * x);
        }
        s
    }
}

/// `ridge.json`: what only the ridge baseline has.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RidgeSummary {
    /// `ridge`.
    pub method: String,
    /// The network, from the features' metadata.
    pub model: String,
    /// The settings.
    pub config: RidgeBaselineConfig,
    /// Training images.
    pub n_train: usize,
    /// Held-out images.
    pub n_val: usize,
    /// Wall-clock seconds of the whole baseline.
    pub seconds: f64,
    /// What each layer's ridge achieved.
    pub layers: Vec<LayerSummary>,
    /// Voxel count per penalty of the grid, at each voxel's best layer.
    pub alpha_histogram: Vec<usize>,
    /// The comparison with a FactorTopy fit (`--compare`), when made.
    pub agreement: Option<Agreement>,
}

impl RidgeBaseline {
    /// `ridge.json`'s contents, with the comparison when one was made.
    pub fn summary(&self, agreement: Option<&Agreement>) -> RidgeSummary {
        let mut hist = vec![0usize; self.config.alphas.len()];
        for &a in &self.best_alpha {
            if let Some(i) = self.config.alphas.iter().position(|&x| (x as f32) == (a as f32)) {
                hist[i] += 1;
            }
        }
        RidgeSummary {
            method: METHOD.to_string(),
            model: self.report.model.clone(),
            config: self.config.clone(),
            n_train: self.split.train.len(),
            n_val: self.split.val.len(),
            seconds: self.seconds,
            layers: self.layers.clone(),
            alpha_histogram: hist,
            agreement: agreement.cloned(),
        }
    }
}

/// Paths of the files [`write_ridge_outputs`] writes.
pub struct RidgeOutputs {
    /// `report.json`.
    pub report: PathBuf,
    /// `ridge.json`.
    pub summary: PathBuf,
    /// `selectors.safetensors`.
    pub selectors: PathBuf,
    /// `layer_map.png` (written only with pictures: see `pictures`).
    pub layer_map: PathBuf,
    /// `roi_depth.png` (written only with pictures: see `pictures`).
    pub roi_depth: PathBuf,
    /// The pictures written: `layer_map` and `roi_depth`, or none.
    pub pictures: Vec<PathBuf>,
}

/// Per-ROI mean depth chart: one line per named report, x = ROI index in the brain's order.
pub fn roi_depth_chart(path: &Path, title: &str, reports: &[(String, &Report)]) -> Result<()> {
    let series: Vec<(String, Vec<(f64, f64)>)> = reports
        .iter()
        .map(|(name, r)| {
            let pts = r
                .rois
                .iter()
                .enumerate()
                .map(|(i, roi)| (i as f64, roi.mean_depth.unwrap_or(f64::NAN)))
                .collect();
            (name.clone(), pts)
        })
        .collect();
    let x_label = match reports.first() {
        Some((_, r)) => {
            let names: Vec<String> = r.rois.iter().enumerate().map(|(i, x)| format!("{i} {}", x.name)).collect();
            let mut s = format!("ROI: {}", names.join(", "));
            if s.chars().count() > 95 {
                s = s.chars().take(93).collect::<String>() + "..";
            }
            s
        }
        None => "ROI".to_string(),
    };
    crate::plot::line_chart(path, title, &x_label, "mean depth (0 = first layer, 1 = last)", &series)
}

/// Writes `report.json` (the DESIGN §4 report, method "ridge"), `ridge.json`
/// ([`RidgeSummary`]), `selectors.safetensors` (`layer_probs`, `space`, `scale`, `r2` as for
/// FactorTopy, plus `best_layer`, `best_alpha`, `cv_score` [L, V], `val_r2` [L, V], `alpha`
/// [L, V]), `layer_map.png` and `roi_depth.png` into `dir`. With a reference report (a FactorTopy
/// fit of the same brain), the ROI chart draws both. The report goes last.
pub fn write_ridge_outputs(
    dir: &Path,
    fit: &RidgeBaseline,
    brain: &Brain,
    reference: Option<(&Report, &Agreement)>,
) -> Result<RidgeOutputs> {
    write_ridge_outputs_with(dir, fit, brain, reference, true)
}

/// [`write_ridge_outputs`] with a choice of pictures (`false`: neither `layer_map.png` nor
/// `roi_depth.png`; `factortopy plot` draws them later from the files written).
pub fn write_ridge_outputs_with(
    dir: &Path,
    fit: &RidgeBaseline,
    brain: &Brain,
    reference: Option<(&Report, &Agreement)>,
    pictures: bool,
) -> Result<RidgeOutputs> {
    crate::data::write_into(dir, |stage| {
        let in_dir = |d: &Path| {
            let (layer_map, roi_depth) = (d.join("layer_map.png"), d.join("roi_depth.png"));
            RidgeOutputs {
                report: d.join("report.json"),
                summary: d.join("ridge.json"),
                selectors: d.join("selectors.safetensors"),
                pictures: if pictures { vec![layer_map.clone(), roi_depth.clone()] } else { Vec::new() },
                layer_map,
                roi_depth,
            }
        };
        let (final_paths, out) = (in_dir(dir), in_dir(stage));
        let v = fit.best_layer.len();
        let best_layer: Vec<i32> = fit.best_layer.iter().map(|&b| b as i32).collect();
        let best_alpha: Vec<f32> = fit.best_alpha.iter().map(|&a| a as f32).collect();
        let tensors = vec![
            ("layer_probs".to_string(), OutTensor::from_array(&fit.selections.layer_probs)),
            ("space".to_string(), OutTensor::from_array(&fit.selections.space)),
            ("scale".to_string(), OutTensor::F32 { shape: vec![v], data: &fit.selections.scale }),
            ("r2".to_string(), OutTensor::F32 { shape: vec![v], data: &fit.r2 }),
            ("best_layer".to_string(), OutTensor::I32 { shape: vec![v], data: &best_layer }),
            ("best_alpha".to_string(), OutTensor::F32 { shape: vec![v], data: &best_alpha }),
            ("cv_score".to_string(), OutTensor::from_array(&fit.cv_score)),
            ("val_r2".to_string(), OutTensor::from_array(&fit.val_r2)),
            ("alpha".to_string(), OutTensor::from_array(&fit.alpha)),
        ];
        let mut meta = BTreeMap::new();
        meta.insert("method".to_string(), METHOD.to_string());
        meta.insert("model".to_string(), fit.report.model.clone());
        write_tensors(&out.selectors, &tensors, &meta)?;
        if pictures {
            let title = format!("{}: best ridge layer per voxel", fit.report.model);
            crate::plot::layer_map(&out.layer_map, brain, &fit.selections, &title)?;
            let mut charts = vec![(format!("ridge ({})", fit.report.model), &fit.report)];
            if let Some((r, _)) = reference {
                charts.push((format!("{} ({})", r.method, r.model), r));
            }
            roi_depth_chart(&out.roi_depth, "mean depth per ROI", &charts)?;
        }
        let summary = fit.summary(reference.map(|(_, a)| a));
        let mut s = serde_json::to_string_pretty(&summary)
            .map_err(|e| Error::invalid(format!("cannot serialise the ridge summary: {e}")))?;
        s.push('\n');
        crate::data::atomic_write(&out.summary, s.as_bytes())?;
        fit.report.write_json(&out.report)?;
        Ok(final_paths)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{generate, Scenario, SynthConfig};

    #[test]
    fn recovers_planted_layers_on_a_small_hierarchy() {
        let cfg = SynthConfig {
            scenario: Scenario::Hierarchical,
            n_images: 400,
            n_voxels: 280,
            n_layers: 4,
            width: 16,
            grid: 4,
            noise_ceiling: 0.8,
            seed: 3,
            signal_fraction: 1.0,
            prf_size: None,
        };
        let data = generate(&cfg).unwrap();
        let rcfg = RidgeBaselineConfig { n_folds: 3, ..RidgeBaselineConfig::default() };
        let fit = fit_ridge_baseline(&data.features, &data.brain, &rcfg, false, None).unwrap();
        assert_eq!(fit.report.method, "ridge");
        assert_eq!(fit.selections.layer_probs.shape, vec![280, 4]);
        assert!(fit.report.hierarchy.slope.unwrap() > 0.3, "slope {:?}", fit.report.hierarchy.slope);
        // The bootstrap resampled the chosen layers' held-out predictions: 40 images, and the
        // intervals bracket the point estimates.
        let u = fit.report.uncertainty.as_ref().unwrap();
        assert_eq!(u.n_images_resampled, fit.split.val.len());
        assert!(u.r2_mean.unwrap().contains(fit.report.r2.mean), "{u:?}");
        assert!(u.slope.unwrap().contains(fit.report.hierarchy.slope.unwrap()), "{u:?}");
        assert!(u.permutation.unwrap().p_slope < 0.01, "{u:?}");
        assert_eq!(fit.report.settings.ridge.as_ref().unwrap().n_folds, 3);
        // Same report fields as FactorTopy: one-hot → zero entropy.
        assert!(fit.report.rois.iter().all(|r| r.mean_entropy.is_none_or(|e| e.abs() < 1e-9)));
        let ag = agreement(&fit.report, &fit.report, Some((&fit.selections, &fit.selections, &data.brain))).unwrap();
        assert_eq!(ag.same_layer_fraction, Some(1.0));
        assert!(ag.table().contains("V1"));
    }
}
