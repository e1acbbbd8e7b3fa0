//! Forgetting during fine-tuning (DESIGN §5).
//!
//! A [`Monitor`] is created once, before fine-tuning, from the brain and the probe-set features
//! `Φ_0` of the network as it was. It fits the reference encoder `E_0` (or takes a saved one),
//! keeps the reference global tokens and caches everything that does not change: the reference
//! encoder's selections and readout, the held-out responses, the retention denominators (overall
//! and per ROI) and the per-layer Gram statistics of `Φ_0` for CKA. Each
//! [`Monitor::observe`]`(step, Φ_t)` then reports:
//!
//! - `retention` = mean held-out R² of `E_0` on `Φ_t` / the same on `Φ_0` (overall, all voxels,
//!   and per ROI); `forgetting = 1 − retention`;
//! - `cka[l]`, linear CKA with the unbiased HSIC estimator between the global tokens of `Φ_0` and
//!   `Φ_t` over all probe images ([`cka`]), and `drift[l] = 1 − cka[l]`;
//! - every `refit_every` observations, a refit of the encoder on `Φ_t`, warm-started from `E_0`
//!   and bounded by a step and time budget: hierarchy scores (DESIGN §4) at step t, the layer-map
//!   shift `mean_v |d_v(t) − d_v(0)|` and the fraction of voxels whose argmax layer moved;
//! - `should_stop` = `forgetting > forgetting_threshold`.
//!
//! Decisions (documented here because DESIGN leaves them open):
//! - Held-out images are the reference fit's validation split (`held_out_fraction`, seeded): the
//!   reference encoder never trained on them. With a saved encoder, its own recorded split is
//!   used, for the same reason.
//! - Every refit starts from `E_0` (not from the previous refit), so a refit's result depends only
//!   on the features of its step and the budget: resumed runs and different refit cadences give
//!   the same numbers. The regulariser's clock continues from the reference fit's step count, so
//!   the warm-up regulariser of DESIGN §3.5 does not restart.
//! - The reference encoder's mean held-out R² must be positive, or retention is undefined and
//!   creation fails. A per-ROI retention whose denominator is not positive is `null`.
//! - A layer of `Φ_t` that is constant over the probe images has CKA 0 (drift 1).
//! - The saved state holds the reference global tokens (CKA), not the local maps: retention
//!   needs only the cached per-voxel reference R², and refits use `Φ_t`.

#![warn(missing_docs)]

pub mod cka;
pub mod curves;
pub mod report;
mod state;

pub use cka::{layer_cka, linear_cka, GramStats};
pub use curves::write_curves;
pub use report::{RefitReport, RoiForgetting, StepReport};

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::{Array, Brain, FeatureSource};
use crate::engine::prepare::{on_device, prepare, Recipe};
use crate::engine::{Device, Estimator, FitEvent, Method, Predictor};
use crate::error::{Error, Result};
use crate::model::encoder_file::{load_encoder, FitRecord};
use crate::model::{BrainTensors, Encoder, FieldNames, FitConfig, PreparedFeatures, Progress, Split};
use crate::scores::hierarchy::{argmax_layer, voxel_depth};
use crate::scores::{HierarchyScores, UncertaintyConfig};
use crate::stats::r2_per_voxel;

/// Settings of a monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// Settings of the reference fit and of the refits (seed, learning rate, batch size, D, G,
    /// ...). Its `val_fraction` is ignored in favour of `held_out_fraction`.
    pub fit: FitConfig,
    /// Fraction of probe images held out of the reference fit; retention is measured on them.
    pub held_out_fraction: f64,
    /// Refit every this many observations (0 = never).
    pub refit_every: usize,
    /// Optimiser steps of one refit.
    pub refit_max_steps: usize,
    /// Wall-clock limit of one refit in seconds (`None` = only the step budget). A time limit
    /// makes refits depend on the machine's speed.
    pub refit_max_seconds: Option<f64>,
    /// `should_stop` is raised when forgetting exceeds this (`f64::INFINITY` = never).
    pub forgetting_threshold: f64,
    /// Weight the hierarchy line of refits by `max(R²_v, 0)`.
    pub weighted: bool,
    /// Where the reference fit, retention and refits run. A run-time choice: not saved with the
    /// state (a state saved on a GPU machine loads on a CPU one and vice versa).
    pub device: Device,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            fit: FitConfig::default(),
            held_out_fraction: 0.1,
            refit_every: 0,
            refit_max_steps: 200,
            refit_max_seconds: None,
            forgetting_threshold: 0.2,
            weighted: false,
            device: Device::Cpu,
        }
    }
}

impl MonitorConfig {
    /// Checks every setting, named as the C ABI and Python name them.
    pub fn validate(&self) -> Result<()> {
        self.validate_as(&FieldNames::LIBRARY.held_out_as("held_out_fraction"))
    }

    /// Checks every setting, naming the fit settings (and the held-out fraction, `names`'s
    /// `val_fraction`) as the caller's user wrote them.
    pub fn validate_as(&self, names: &FieldNames) -> Result<()> {
        crate::data::limits::fraction(names.val_fraction, self.held_out_fraction)?;
        if self.refit_every > 0 && self.refit_max_steps == 0 {
            return Err(Error::invalid_arg("refit_max_steps", "refits need a step budget of at least 1 (refit_max_steps)"));
        }
        crate::data::limits::at_most("refit_max_steps", self.refit_max_steps, crate::data::limits::MAX_STEPS)?;
        if let Some(s) = self.refit_max_seconds {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::invalid_arg("refit_max_seconds", format!("refit time budget must be positive and finite, got {s} s")));
            }
        }
        if self.forgetting_threshold.is_nan() {
            return Err(Error::invalid_arg("forgetting_threshold", "forgetting threshold is NaN"));
        }
        let fit = FitConfig { val_fraction: self.held_out_fraction, ..self.fit.clone() };
        fit.validate_as(names)?;
        self.estimator(fit).validate()
    }

    /// The engine's estimator for fits with these settings on this monitor's device.
    pub fn estimator(&self, fit: FitConfig) -> Estimator {
        // The monitor reports no intervals: its fits skip the bootstrap and permutations.
        Estimator {
            weighted: self.weighted,
            uncertainty: UncertaintyConfig::default().without_resampling(),
            ..Estimator::new(Method::Factortopy, self.device, fit)
        }
    }
}

/// The forgetting monitor of DESIGN §5. Not `Sync`-shared by design: `observe` takes `&mut self`.
pub struct Monitor {
    config: MonitorConfig,
    brain: Brain,
    encoder: Encoder,
    record: FitRecord,
    split: Split,
    model: String,
    layer_names: Vec<String>,
    widths: Vec<usize>,
    n_images: usize,
    stimulus_ids: Option<Vec<String>>,
    /// Reference global tokens `[N, C_l]` (saved with the state).
    reference_globals: Vec<Array>,
    /// Per-layer Gram statistics of the reference global tokens.
    reference_stats: Vec<GramStats>,
    /// Per-voxel held-out R² of `E_0` on `Φ_0` (saved with the state).
    reference_r2: Vec<f32>,
    reference_mean_r2: f64,
    reference_roi_r2: Vec<Option<f64>>,
    roi_members: Vec<Vec<usize>>,
    reference_depth: Vec<f64>,
    reference_argmax: Vec<usize>,
    reference_hierarchy: HierarchyScores,
    bt: BrainTensors,
    /// `E_0` ready to predict on the monitor's device (selectors evaluated once).
    predictor: Predictor,
    /// Responses of the held-out images `[n_val, V]`.
    val_target: Vec<f32>,
    /// The last observation's held-out images, resampled: kept so that the next one resamples
    /// into the same memory (`n_val·G²·ΣC` floats) instead of faulting in fresh pages.
    held_out: Option<PreparedFeatures>,
    history: Vec<StepReport>,
    history_file: Option<PathBuf>,
}

fn mean_f32(xs: &[f32], idx: Option<&[usize]>) -> Option<f64> {
    match idx {
        None if xs.is_empty() => None,
        None => Some(xs.iter().map(|&x| x as f64).sum::<f64>() / xs.len() as f64),
        Some([]) => None,
        Some(idx) => Some(idx.iter().map(|&i| xs[i] as f64).sum::<f64>() / idx.len() as f64),
    }
}

/// Everything a monitor is built from, whether freshly fitted or loaded.
struct Parts {
    config: MonitorConfig,
    brain: Brain,
    encoder: Encoder,
    record: FitRecord,
    split: Split,
    model: String,
    layer_names: Vec<String>,
    n_images: usize,
    stimulus_ids: Option<Vec<String>>,
    reference_globals: Vec<Array>,
    history: Vec<StepReport>,
}

impl Monitor {
    /// Fits the reference encoder `E_0` on the reference features and builds the monitor.
    pub fn new(
        brain: &Brain,
        reference: &dyn FeatureSource,
        config: MonitorConfig,
        progress: Option<&mut dyn FnMut(&Progress)>,
    ) -> Result<Monitor> {
        config.validate()?;
        reference.check_images("reference features", None)?;
        crate::data::check_pair(reference, "reference features", brain, "brain")?;
        let est = config.estimator(FitConfig { val_fraction: config.held_out_fraction, ..config.fit.clone() });
        let mut progress = progress;
        let mut cb = |e: FitEvent<'_>| {
            if let (FitEvent::Epoch(p), Some(f)) = (e, progress.as_mut()) {
                f(p)
            }
        };
        let job = est.fit(reference, brain, Some(&mut cb))?.into_encoder_fit()?;
        let record = job.record();
        Self::from_parts_fresh(brain, reference, job.outcome.encoder, record, job.outcome.split, config)
    }

    /// Builds the monitor around an already fitted reference encoder (e.g. from
    /// [`load_encoder`]). The held-out images are the encoder's own validation split, recreated
    /// from its record (validation fraction and seed).
    pub fn with_encoder(
        brain: &Brain,
        reference: &dyn FeatureSource,
        encoder: Encoder,
        record: FitRecord,
        config: MonitorConfig,
    ) -> Result<Monitor> {
        config.validate()?;
        reference.check_images("reference features", None)?;
        crate::data::check_pair(reference, "reference features", brain, "brain")?;
        crate::engine::check_encoder_inputs(&encoder, reference, brain)?;
        let seed = record.summary.as_ref().map(|s| s.seed).unwrap_or(0);
        let split = Split::named("the encoder's `val_fraction`", reference.n_images(), record.val_fraction, seed)?;
        Self::from_parts_fresh(brain, reference, encoder, record, split, config)
    }

    /// [`Monitor::with_encoder`] with an encoder file written by `factortopy fit`.
    pub fn from_encoder_file(
        brain: &Brain,
        reference: &dyn FeatureSource,
        encoder_path: &Path,
        config: MonitorConfig,
    ) -> Result<Monitor> {
        let (encoder, record) = load_encoder(encoder_path)?;
        Self::with_encoder(brain, reference, encoder, record, config)
    }

    fn from_parts_fresh(
        brain: &Brain,
        reference: &dyn FeatureSource,
        encoder: Encoder,
        record: FitRecord,
        split: Split,
        config: MonitorConfig,
    ) -> Result<Monitor> {
        let parts = Parts {
            config,
            brain: brain.clone(),
            encoder,
            record,
            split,
            model: reference.model().to_string(),
            layer_names: reference.layer_names().to_vec(),
            n_images: reference.n_images(),
            // The brain's ids stand in when the reference features list none, so checkpoints
            // that list ids are still compared with the probe images' order.
            stimulus_ids: reference.stimulus_ids().map(<[String]>::to_vec).or_else(|| brain.stimulus_ids.clone()),
            reference_globals: (0..reference.n_layers()).map(|l| reference.global_tokens(l)).collect::<Result<_>>()?,
            history: Vec::new(),
        };
        Self::assemble(parts, |m| m.held_out_r2(reference))
    }

    /// Builds the caches. `reference_r2` computes (fresh) or supplies (loaded) the per-voxel
    /// retention denominators, given the half-built monitor.
    fn assemble(p: Parts, reference_r2: impl FnOnce(&mut Monitor) -> Result<Vec<f32>>) -> Result<Monitor> {
        let v = p.brain.n_voxels();
        let bt = BrainTensors::new(&p.brain, Some(p.encoder.spec.coord_norm))?;
        let predictor = Predictor::new(&p.encoder, &bt.pe, p.config.device)?;
        let host_sel = predictor.selections().clone();
        let reference_depth = voxel_depth(&host_sel);
        let reference_argmax = argmax_layer(&host_sel);
        let mut val_target = Vec::with_capacity(p.split.val.len() * v);
        for &i in &p.split.val {
            val_target.extend_from_slice(&p.brain.responses.data[i * v..(i + 1) * v]);
        }
        let mut roi_members = vec![Vec::new(); p.brain.roi_names.len()];
        for (i, &r) in p.brain.roi.iter().enumerate() {
            if r >= 0 && (r as usize) < roi_members.len() {
                roi_members[r as usize].push(i);
            }
        }
        let reference_stats = p
            .reference_globals
            .iter()
            .enumerate()
            .map(|(l, g)| {
                let s = GramStats::new(g)?;
                if s.hsic_self.is_nan() || s.hsic_self <= 0.0 {
                    return Err(Error::invalid(format!(
                        "layer {l} ({}) of the reference features has no variance over the probe \
                         images that CKA can measure (constant global token?)",
                        p.layer_names.get(l).map(String::as_str).unwrap_or("?")
                    )));
                }
                Ok(s)
            })
            .collect::<Result<Vec<_>>>()?;
        let widths = p.reference_globals.iter().map(|g| g.shape[1]).collect();
        let placeholder = HierarchyScores::from_depth(&reference_depth, &p.brain.roi, &p.brain.roi_levels, None)?;
        let mut m = Monitor {
            config: p.config,
            brain: p.brain,
            encoder: p.encoder,
            record: p.record,
            split: p.split,
            model: p.model,
            layer_names: p.layer_names,
            widths,
            n_images: p.n_images,
            stimulus_ids: p.stimulus_ids,
            reference_globals: p.reference_globals,
            reference_stats,
            reference_r2: Vec::new(),
            reference_mean_r2: 0.0,
            reference_roi_r2: Vec::new(),
            roi_members,
            reference_depth,
            reference_argmax,
            reference_hierarchy: placeholder,
            bt,
            predictor,
            val_target,
            held_out: None,
            history: p.history,
            history_file: None,
        };
        let r2 = reference_r2(&mut m)?;
        if r2.len() != v {
            return Err(Error::invalid(format!(
                "reference R² must have {v} values (one per voxel), got {}",
                r2.len()
            )));
        }
        if let Some(i) = r2.iter().position(|x| !x.is_finite()) {
            return Err(Error::invalid(format!("reference R² of voxel {i} is not finite ({})", r2[i])));
        }
        let mean = mean_f32(&r2, None).unwrap_or(0.0);
        if mean.is_nan() || mean <= 0.0 {
            return Err(Error::Numeric(format!(
                "the reference encoder does not predict the held-out images (mean R² {mean:.4} over \
                 {v} voxels), so retention is undefined; fit longer or check that the features and \
                 the brain belong together"
            )));
        }
        m.reference_roi_r2 = m.roi_members.iter().map(|idx| mean_f32(&r2, Some(idx))).collect();
        m.reference_hierarchy = HierarchyScores::from_depth(
            &m.reference_depth,
            &m.brain.roi,
            &m.brain.roi_levels,
            m.config.weighted.then_some(&r2[..]),
        )?;
        m.reference_mean_r2 = mean;
        m.reference_r2 = r2;
        Ok(m)
    }

    /// Checks that `f` is a feature set of the same network shape on the same probe images, with
    /// finite values wherever the next observation reads them: the held-out images' local maps
    /// and every global token, or everything before a refit.
    fn check_features(&self, f: &dyn FeatureSource, origin: &str) -> Result<()> {
        let read = (!self.next_is_refit()).then_some(&self.split.val[..]);
        f.check_images(origin, read)?;
        check_against(f, origin, &self.widths, self.n_images, self.stimulus_ids.as_deref())
    }

    /// Per-voxel R² of the reference encoder on the held-out images of `f`.
    fn held_out_r2(&mut self, f: &dyn FeatureSource) -> Result<Vec<f32>> {
        // Layers held on the predictor's device are prepared and read there.
        let how = Recipe::for_encoder(&self.encoder.spec, None);
        if let Some(prepared) = on_device(self.predictor.device(), f, Some(&self.split.val), how)? {
            let pred = self.predictor.predict_all(&prepared)?;
            return Ok(r2_per_voxel(&pred, &self.val_target, self.split.val.len(), self.brain.n_voxels()));
        }
        // Into the previous observation's buffers when there are some; after an error they
        // are dropped (half refilled), and the next observation allocates afresh.
        let prepared = match self.held_out.take() {
            Some(mut p) => {
                p.refill(f, &self.split.val)?;
                p
            }
            None => PreparedFeatures::for_images(f, &self.split.val, &self.encoder.spec)?,
        };
        let pred = self.predictor.predict_all(&prepared)?;
        self.held_out = Some(prepared);
        Ok(r2_per_voxel(&pred, &self.val_target, self.split.val.len(), self.brain.n_voxels()))
    }

    /// Moves the monitor to another device (e.g. after loading a saved state on a GPU machine).
    pub fn set_device(&mut self, device: Device) -> Result<()> {
        let config = MonitorConfig { device, ..self.config.clone() };
        config.validate()?;
        self.predictor = Predictor::new(&self.encoder, &self.bt.pe, device)?;
        self.config = config;
        Ok(())
    }

    /// Per-layer CKA of `f`'s global tokens against the reference's.
    fn layer_cka(&self, f: &dyn FeatureSource) -> Result<Vec<f64>> {
        cka::layer_cka(&self.reference_stats, f)
    }

    fn refit(&self, f: &dyn FeatureSource) -> Result<RefitReport> {
        let prepared = prepare(self.config.device, f, None, Recipe::for_encoder(&self.encoder.spec, None))?;
        let cfg = FitConfig {
            val_fraction: self.record.val_fraction,
            max_steps: Some(self.config.refit_max_steps),
            max_seconds: self.config.refit_max_seconds,
            d: self.encoder.spec.d,
            grid: self.encoder.spec.grid,
            ..self.config.fit.clone()
        };
        let start = self.record.summary.as_ref().map(|s| s.steps).unwrap_or(cfg.reg_steps);
        let est = self.config.estimator(cfg);
        let outcome = est.train(self.encoder.deep_copy()?, &prepared, &self.bt, self.split.clone(), start, None)?;
        let sel = outcome.encoder.selectors(&self.bt.pe)?.to_host()?;
        let depth = voxel_depth(&sel);
        let argmax = argmax_layer(&sel);
        let v = depth.len().max(1) as f64;
        let layer_shift = depth.iter().zip(&self.reference_depth).map(|(a, b)| (a - b).abs()).sum::<f64>() / v;
        let moved = argmax.iter().zip(&self.reference_argmax).filter(|(a, b)| a != b).count() as f64 / v;
        let hierarchy = HierarchyScores::from_depth(
            &depth,
            &self.brain.roi,
            &self.brain.roi_levels,
            self.config.weighted.then_some(&outcome.val_r2[..]),
        )?;
        Ok(RefitReport {
            hierarchy,
            layer_shift,
            argmax_moved: moved,
            r2: mean_f32(&outcome.val_r2, None).unwrap_or(0.0),
            steps: outcome.summary.steps,
        })
    }

    /// Whether the next observation will refit.
    pub fn next_is_refit(&self) -> bool {
        self.config.refit_every > 0 && (self.history.len() + 1) % self.config.refit_every == 0
    }

    /// Compares the network at training step `step` (its probe-set features) with the reference.
    /// The report is appended to the history (and to the history file, when one is set).
    pub fn observe(&mut self, step: u64, features: &dyn FeatureSource) -> Result<StepReport> {
        let origin = format!("features at step {step}");
        self.check_features(features, &origin)?;
        let r2 = self.held_out_r2(features)?;
        let mean = mean_f32(&r2, None).unwrap_or(0.0);
        let retention = mean / self.reference_mean_r2;
        let rois = self
            .brain
            .roi_names
            .iter()
            .zip(&self.roi_members)
            .zip(&self.reference_roi_r2)
            .map(|((name, idx), &reference)| {
                let r = mean_f32(&r2, Some(idx));
                let ret = match (r, reference) {
                    (Some(r), Some(d)) if d > 0.0 => Some(r / d),
                    _ => None,
                };
                RoiForgetting {
                    name: name.clone(),
                    retention: ret,
                    forgetting: ret.map(|x| 1.0 - x),
                    r2: r,
                    reference_r2: reference,
                }
            })
            .collect();
        let cka = self.layer_cka(features)?;
        let drift = cka.iter().map(|c| 1.0 - c).collect();
        let refit = if self.next_is_refit() { Some(self.refit(features)?) } else { None };
        let forgetting = 1.0 - retention;
        let report = StepReport {
            step,
            observation: self.history.len(),
            retention,
            forgetting,
            r2: mean,
            reference_r2: self.reference_mean_r2,
            rois,
            cka,
            drift,
            should_stop: forgetting > self.config.forgetting_threshold,
            refit,
        };
        if !report.retention.is_finite() {
            return Err(Error::Numeric(format!("retention at step {step} is not finite")));
        }
        if let Some(path) = &self.history_file {
            append_line(path, &report.to_json_line())?;
        }
        self.history.push(report.clone());
        Ok(report)
    }

    /// [`Monitor::observe`] that also returns the seconds it took.
    pub fn observe_timed(&mut self, step: u64, features: &dyn FeatureSource) -> Result<(StepReport, f64)> {
        let t0 = Instant::now();
        let r = self.observe(step, features)?;
        Ok((r, t0.elapsed().as_secs_f64()))
    }

    /// Appends every future observation to `path` as one JSON line (created if missing; existing
    /// lines are kept, so a resumed run continues the same file). `None` stops appending.
    pub fn set_history_file(&mut self, path: Option<PathBuf>) {
        self.history_file = path;
    }

    /// The file observations are appended to, if any.
    pub fn history_file(&self) -> Option<&Path> {
        self.history_file.as_deref()
    }

    /// Writes the whole history as JSON lines (atomically, replacing `path`).
    pub fn write_history_jsonl(&self, path: &Path) -> Result<()> {
        let mut s = String::new();
        for r in &self.history {
            s.push_str(&r.to_json_line());
            s.push('\n');
        }
        crate::data::io::atomic_write(path, s.as_bytes())
    }

    /// Every observation so far, oldest first.
    pub fn history(&self) -> &[StepReport] {
        &self.history
    }
    /// The monitor's settings.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }
    /// Settings that may change during a run: refit cadence and budget, threshold, weighting.
    /// (The encoder's D and G and the held-out split are fixed at creation.)
    pub fn config_mut(&mut self) -> &mut MonitorConfig {
        &mut self.config
    }
    /// The reference encoder `E_0` (refits do not replace it).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }
    /// What the encoder file records about the reference fit.
    pub fn fit_record(&self) -> &FitRecord {
        &self.record
    }
    /// The reference features' layer names.
    pub fn layer_names(&self) -> &[String] {
        &self.layer_names
    }
    /// Number of layers the observed features must have.
    pub fn n_layers(&self) -> usize {
        self.widths.len()
    }
    /// Number of probe images the observed features must have.
    pub fn n_images(&self) -> usize {
        self.n_images
    }
    /// The network's name, from the reference features.
    pub fn model(&self) -> &str {
        &self.model
    }
    /// Indices of the held-out probe images retention is measured on.
    pub fn held_out(&self) -> &[usize] {
        &self.split.val
    }
    /// Mean held-out R² of the reference encoder on the reference features.
    pub fn reference_r2(&self) -> f64 {
        self.reference_mean_r2
    }
    /// Per-voxel held-out R² of the reference encoder on the reference features.
    pub fn reference_r2_per_voxel(&self) -> &[f32] {
        &self.reference_r2
    }
    /// Hierarchy scores of the reference encoder (step 0).
    pub fn reference_hierarchy(&self) -> &HierarchyScores {
        &self.reference_hierarchy
    }
    /// The brain the monitor was created with.
    pub fn brain(&self) -> &Brain {
        &self.brain
    }
}

/// Checks that the checkpoint features `f` come from the same network shape, on the same probe
/// images, as the `reference` features: what [`Monitor::observe`] will require, for front ends
/// that check every checkpoint before they start (the CLI does, before touching its outputs).
pub fn check_same_network(f: &dyn FeatureSource, origin: &str, reference: &dyn FeatureSource) -> Result<()> {
    check_against(f, origin, &reference.widths(), reference.n_images(), reference.stimulus_ids())
}

/// The one comparison of a checkpoint's features with the reference's shape and probe images.
/// `ids` are the reference's `stimulus_ids`, or the brain's when the reference has none: a
/// checkpoint that lists ids is compared with whichever is known.
fn check_against(f: &dyn FeatureSource, origin: &str, widths: &[usize], n_images: usize, ids: Option<&[String]>) -> Result<()> {
    if f.n_layers() != widths.len() {
        return Err(Error::mismatch(format!(
            "{origin} has {} layers, the reference features have {}",
            f.n_layers(),
            widths.len()
        )));
    }
    let have = f.widths();
    if have != widths {
        return Err(Error::mismatch(format!(
            "{origin} has layer widths {have:?}, the reference features have {widths:?}"
        )));
    }
    if f.n_images() != n_images {
        return Err(Error::mismatch(format!(
            "{origin} has {} probe images, the reference features have {n_images}",
            f.n_images()
        )));
    }
    if let (Some(a), Some(b)) = (f.stimulus_ids(), ids) {
        if a != b {
            let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
            return Err(Error::mismatch(format!(
                "{origin} lists different `stimulus_ids` from the reference (first difference at \
                 position {i}); the monitor needs the same probe images in the same order"
            )));
        }
    }
    Ok(())
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let mut f = OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
    // One write of the whole line: with O_APPEND, concurrent appenders do not interleave it.
    f.write_all(buf.as_bytes()).map_err(|e| Error::io(path, e))?;
    f.flush().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests;
