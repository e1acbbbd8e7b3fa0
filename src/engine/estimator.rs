//! The estimator: "method × device × settings" in one value (in the manner of a scikit-learn
//! estimator: it holds settings, `fit`, `train` and `score` do the work). Every entry point
//! (CLI, C ABI, Python, monitor, rank) builds one and calls it, so choosing a method and a device
//! happens here and nowhere else.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::baseline::{fit_ridge_baseline, LayerSummary, RidgeBaseline, RidgeBaselineConfig};
use crate::data::{Array, Brain, FeatureSource};
use crate::engine::candle_cpu::CandleTrainer;
use crate::engine::fast_cpu::FastCpuTrainer;
use crate::engine::device::Device;
use crate::engine::outcome::FitOutcome;
use crate::engine::predict::Predictor;
use crate::engine::prepare::{prepare, Recipe};
use crate::engine::trainer::{train_loop, Trainer};
use crate::error::{Error, Result};
use crate::model::encoder_file::FitRecord;
use crate::model::{BrainTensors, Encoder, FitConfig, FitStart, FitSummary, PreparedFeatures, Progress, Selections, Split};
use crate::scores::seed_interval::split_resamples;
use crate::scores::simex::{self, BiasCorrection};
use crate::scores::{BootstrapConfig, HeldOut, PermutationConfig, Report, SeedSpread, Uncertainty, UncertaintyConfig};

/// How brain and features are related: the FactorTopy encoder or the layer-wise ridge baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The FactorTopy encoder (DESIGN §3).
    #[default]
    Factortopy,
    /// One cross-validated ridge per layer from its global token; best layer per voxel.
    Ridge,
}

impl Method {
    /// Every method, in the order the CLI lists them.
    pub const ALL: [Method; 2] = [Method::Factortopy, Method::Ridge];

    /// The name used in reports, flags, the C ABI and Python.
    pub fn name(self) -> &'static str {
        match self {
            Method::Factortopy => "factortopy",
            Method::Ridge => "ridge",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Method::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::invalid(format!("unknown method `{s}`; expected `factortopy` or `ridge`")))
    }
}

/// What a fit reports while it runs.
#[derive(Debug, Clone, Copy)]
pub enum FitEvent<'a> {
    /// A FactorTopy epoch ended.
    Epoch(&'a Progress),
    /// The ridge baseline finished one layer.
    RidgeLayer(&'a LayerSummary),
}

/// A progress callback.
pub type OnEvent<'a> = Option<&'a mut dyn FnMut(FitEvent<'_>)>;

/// Called with each seed's report as `fit_seeds` finishes it.
pub type OnSeedDone<'a> = Option<&'a mut dyn FnMut(u64, &Report)>;

/// A fitted FactorTopy encoder with its per-voxel choices and its report.
pub struct EncoderFit {
    /// The trained encoder, its split, per-voxel held-out R² and Pearson r, and how the fit went.
    pub outcome: FitOutcome,
    /// Every voxel's layer probabilities, location and scale.
    pub selections: Selections,
    /// The scores on the held-out images.
    pub report: Report,
    /// Fraction of images held out (recorded with the encoder so `score` recreates the split).
    pub val_fraction: f64,
    /// The fitted voxels' coordinates `[V, 3]` (saved with the encoder for `predict`).
    pub coords: Array,
}

impl EncoderFit {
    /// What the encoder file records about the fit (so `score` recreates the held-out split).
    pub fn record(&self) -> FitRecord {
        FitRecord {
            val_fraction: self.val_fraction,
            summary: Some(self.outcome.summary.clone()),
            coords: Some(self.coords.clone()),
        }
    }
}

/// The result of [`Estimator::fit`].
pub enum Fitted {
    /// A FactorTopy encoder.
    Encoder(Box<EncoderFit>),
    /// The layer-wise ridge baseline.
    Ridge(Box<RidgeBaseline>),
}

impl Fitted {
    /// The method that made this fit.
    pub fn method(&self) -> Method {
        match self {
            Fitted::Encoder(_) => Method::Factortopy,
            Fitted::Ridge(_) => Method::Ridge,
        }
    }
    /// The scores on the held-out images.
    pub fn report(&self) -> &Report {
        match self {
            Fitted::Encoder(f) => &f.report,
            Fitted::Ridge(f) => &f.report,
        }
    }
    /// Every voxel's layer probabilities, location and scale (the ridge baseline's are its
    /// chosen layer, one-hot, at the image centre on the global token).
    pub fn selections(&self) -> &Selections {
        match self {
            Fitted::Encoder(f) => &f.selections,
            Fitted::Ridge(f) => &f.selections,
        }
    }
    /// Held-out R² per voxel.
    pub fn val_r2(&self) -> &[f32] {
        match self {
            Fitted::Encoder(f) => &f.outcome.val_r2,
            Fitted::Ridge(f) => &f.r2,
        }
    }
    /// Held-out Pearson r per voxel.
    pub fn val_pearson(&self) -> &[f32] {
        match self {
            Fitted::Encoder(f) => &f.outcome.val_pearson,
            Fitted::Ridge(f) => &f.pearson,
        }
    }
    /// The train/validation split of the images.
    pub fn split(&self) -> &Split {
        match self {
            Fitted::Encoder(f) => &f.outcome.split,
            Fitted::Ridge(f) => &f.split,
        }
    }
    /// How the FactorTopy fit went (none for the ridge baseline).
    pub fn summary(&self) -> Option<&FitSummary> {
        match self {
            Fitted::Encoder(f) => Some(&f.outcome.summary),
            Fitted::Ridge(_) => None,
        }
    }
    /// The FactorTopy encoder (none for the ridge baseline).
    pub fn encoder(&self) -> Option<&Encoder> {
        match self {
            Fitted::Encoder(f) => Some(&f.outcome.encoder),
            Fitted::Ridge(_) => None,
        }
    }
    /// The FactorTopy fit; an error for the ridge baseline.
    pub fn into_encoder_fit(self) -> Result<EncoderFit> {
        match self {
            Fitted::Encoder(f) => Ok(*f),
            Fitted::Ridge(_) => Err(Error::invalid("the ridge baseline has no encoder")),
        }
    }
}

/// A saved encoder scored again on its own held-out images.
pub struct Scored {
    /// Every voxel's layer probabilities, location and scale.
    pub selections: Selections,
    /// Held-out R² per voxel.
    pub r2: Vec<f32>,
    /// Held-out Pearson r per voxel.
    pub pearson: Vec<f32>,
    /// The scores, as `fit` reported them.
    pub report: Report,
}

/// Method × device × settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimator {
    /// FactorTopy or the ridge baseline.
    pub method: Method,
    /// Where fits, predictions and scores run.
    pub device: Device,
    /// FactorTopy settings; their `seed` and `val_fraction` also set the ridge baseline's split.
    pub fit: FitConfig,
    /// Ridge settings (its `seed` and `val_fraction` are taken from `fit`).
    pub ridge: RidgeBaselineConfig,
    /// Weight the hierarchy line by max(R², 0).
    pub weighted: bool,
    /// Bootstrap intervals and the hierarchy's permutation null, so every headline number comes with how far it can be trusted.
    pub uncertainty: UncertaintyConfig,
    /// Which CPU trainer runs on `Device::Cpu`.
    pub cpu_trainer: CpuTrainer,
}

/// The two CPU implementations of the trainer interface: the same algorithm, results equal to
/// float rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuTrainer {
    /// `engine::fast_cpu`: explicit forward and backward on flat buffers (the default).
    #[default]
    Fast,
    /// `engine::candle_cpu`: candle autograd on the plain formula (the oracle).
    Candle,
}

impl Default for Estimator {
    fn default() -> Self {
        Self::new(Method::Factortopy, Device::Cpu, FitConfig::default())
    }
}

impl Estimator {
    /// An estimator with the default ridge, uncertainty and CPU-trainer settings.
    pub fn new(method: Method, device: Device, fit: FitConfig) -> Self {
        Self {
            method,
            device,
            fit,
            ridge: RidgeBaselineConfig::default(),
            weighted: false,
            uncertainty: UncertaintyConfig::default(),
            cpu_trainer: CpuTrainer::default(),
        }
    }

    /// Checks the settings and that the device can run the method now. Every entry point calls
    /// this (through `fit`, `train` or `predictor`) before touching data.
    pub fn validate(&self) -> Result<()> {
        self.fit.validate()?;
        self.uncertainty.validate()?;
        if self.method == Method::Ridge && self.device != Device::Cpu {
            return Err(Error::invalid_arg("device", format!(
                "the ridge baseline runs on the CPU only; use --device cpu (got {})",
                self.device
            )));
        }
        self.device.check_available()
    }

    /// The ridge settings with the shared split.
    pub fn ridge_config(&self) -> RidgeBaselineConfig {
        RidgeBaselineConfig {
            seed: self.fit.seed,
            val_fraction: self.fit.val_fraction,
            uncertainty: self.uncertainty,
            ..self.ridge.clone()
        }
    }

    /// Fits `features` to `brain` and scores the result on the held-out images.
    pub fn fit(&self, features: &dyn FeatureSource, brain: &Brain, mut on_event: OnEvent<'_>) -> Result<Fitted> {
        self.validate()?;
        if self.uncertainty.bias_correction != BiasCorrection::None {
            return Err(Error::invalid(format!(
                "bias correction {} needs refits over seeds (fit --seeds K); one fit cannot extrapolate",
                self.uncertainty.bias_correction.name()
            )));
        }
        crate::data::check_pair(features, "features", brain, "brain")?;
        // Before anything is allocated from the inputs' sizes.
        match self.method {
            Method::Ridge => crate::engine::memory::ridge_need(features, brain.n_voxels(), self.fit.val_fraction),
            Method::Factortopy => crate::engine::memory::fit_need(
                features,
                brain.n_voxels(),
                &self.fit,
                crate::engine::prepare::prepares_on_device(self.device, features),
            ),
        }
        .check()?;
        match self.method {
            Method::Ridge => {
                let mut layer_cb = |s: &LayerSummary| {
                    if let Some(cb) = on_event.as_mut() {
                        cb(FitEvent::RidgeLayer(s))
                    }
                };
                let fit = fit_ridge_baseline(features, brain, &self.ridge_config(), self.weighted, Some(&mut layer_cb))?;
                Ok(Fitted::Ridge(Box::new(fit)))
            }
            Method::Factortopy => {
                let how = Recipe { grid: self.fit.grid, resample: self.fit.resample, precision: self.fit.store, units: None };
                let start = FitStart::with_prepared(features, brain, &self.fit, prepare(self.device, features, None, how)?)?;
                let mut epoch_cb = |p: &Progress| {
                    if let Some(cb) = on_event.as_mut() {
                        cb(FitEvent::Epoch(p))
                    }
                };
                let outcome =
                    self.train(start.encoder, &start.prepared, &start.bt, start.split, 0, Some(&mut epoch_cb))?;
                let predictor = self.predictor(&outcome.encoder, &start.bt.pe)?;
                let val = &outcome.split.val;
                let pred = predictor.predict(&start.prepared, val)?;
                let target = crate::engine::trainer::rows(&brain.responses.data, brain.n_voxels(), val);
                let heldout = HeldOut::new(&pred, &target, val.len(), brain.n_voxels())?;
                // The report's scores come from the one predict path, so `score` on the saved
                // encoder reproduces them exactly.
                let (r2, pearson) = heldout.scores();
                let selections = predictor.selections().clone();
                let mut report = Report::compute(
                    features.model(),
                    Method::Factortopy.name(),
                    features.layer_names(),
                    &selections,
                    &r2,
                    &pearson,
                    brain,
                    self.weighted,
                    Some(outcome.summary.clone()),
                )?
                .with_uncertainty(&selections, brain, Some(heldout), &r2, &self.uncertainty)?;
                self.add_layer_margins(&mut report, &outcome.encoder, &outcome.split, brain, &selections, |images| {
                    Ok((Cow::Borrowed(&start.prepared), images.to_vec()))
                })?;
                report.settings.fit = Some(self.fit.clone());
                Ok(Fitted::Encoder(Box::new(EncoderFit {
                    outcome,
                    selections,
                    report,
                    val_fraction: self.fit.val_fraction,
                    coords: brain.coords.clone(),
                })))
            }
        }
    }

    /// [`Estimator::fit`] at `fit.seed`, then `n_seeds − 1` refits at seeds `fit.seed + 1, ...`
    /// (the fit's own randomness: initialisation, batch order and train/validation split). The
    /// result is the first seed's fit; its report gets the spread of the headline numbers over
    /// the seeds (`seeds`) and intervals of kind `seeds` that include that fit-to-fit
    /// variability ([`crate::scores::seed_interval`]). The bootstrap resamples are split over the
    /// K fits (so the intervals cost about one fit's bootstrap); the permutation test runs on the
    /// first fit only. `seed_done` hears of each seed's report. `n_seeds` ≤ 1 is a plain fit
    /// with refit-free intervals. FactorTopy only (the ridge baseline has no random
    /// initialisation).
    ///
    /// With `uncertainty.bias_correction = Simex` (K ≥ 2 and a noise ceiling needed), each seed
    /// is also refitted on the responses with added noise at every λ of
    /// [`crate::scores::simex::LAMBDAS`] (no bootstrap or permutations there), and the hierarchy
    /// numbers' intervals are extrapolated to no noise (kind `simex`): K·(1 + 3) fits in all.
    pub fn fit_seeds(
        &self,
        features: &dyn FeatureSource,
        brain: &Brain,
        n_seeds: usize,
        mut on_event: OnEvent<'_>,
        mut seed_done: OnSeedDone<'_>,
    ) -> Result<Fitted> {
        crate::data::limits::positive_at_most("--seeds", n_seeds, crate::data::limits::MAX_SEEDS)?;
        if n_seeds > 1 && self.method != Method::Factortopy {
            return Err(Error::invalid(
                "--seeds applies to the factortopy method (the ridge baseline has no random initialisation)",
            ));
        }
        let simex = self.uncertainty.bias_correction == BiasCorrection::Simex;
        if simex && n_seeds < 2 {
            return Err(Error::invalid(
                "--bias-correct simex extrapolates over refits: it needs --seeds K with K ≥ 2 (3 or more recommended)",
            ));
        }
        if n_seeds <= 1 {
            return self.fit(features, brain, on_event);
        }
        self.validate()?;
        // Before any fit, so a brain without a noise ceiling fails at once.
        let noise_var = if simex { Some(simex::noise_variances(brain)?) } else { None };
        let resamples = split_resamples(self.uncertainty.bootstrap.n_resamples, n_seeds)?;
        let with = |k: usize| {
            let u = &self.uncertainty;
            UncertaintyConfig {
                bootstrap: BootstrapConfig { n_resamples: resamples[k], ..u.bootstrap },
                permutation: PermutationConfig { n_permutations: if k == 0 { u.permutation.n_permutations } else { 0 }, ..u.permutation },
                bias_correction: BiasCorrection::None,
            }
        };
        let mut seeds = Vec::with_capacity(n_seeds);
        let mut reports = Vec::with_capacity(n_seeds);
        let mut first = None;
        for k in 0..n_seeds as u64 {
            let seed =
                self.fit.seed.checked_add(k).ok_or_else(|| Error::invalid("--seed + --seeds overflows a 64-bit seed"))?;
            let est =
                Estimator { fit: FitConfig { seed, ..self.fit.clone() }, uncertainty: with(k as usize), ..self.clone() };
            let fitted = est.fit(features, brain, reborrow(&mut on_event))?;
            if let Some(cb) = seed_done.as_mut() {
                cb(seed, fitted.report());
            }
            seeds.push(seed);
            reports.push(fitted.report().clone());
            if k == 0 {
                first = Some(fitted);
            }
        }
        // SIMEX refits: the same seeds on responses with added noise at each λ, headline numbers
        // only (the noise stream depends on the uncertainty seed, λ's index and the fit seed).
        let mut perturbed = Vec::new();
        if let Some(noise_var) = &noise_var {
            let bare = UncertaintyConfig { bias_correction: BiasCorrection::None, ..self.uncertainty.without_resampling() };
            for (j, &lambda) in simex::LAMBDAS.iter().enumerate() {
                let mut at = Vec::with_capacity(n_seeds);
                for &seed in &seeds {
                    let noisier = simex::perturbed(brain, noise_var, lambda, self.uncertainty.bootstrap.seed, &format!("{j}.{seed}"))?;
                    let est = Estimator { fit: FitConfig { seed, ..self.fit.clone() }, uncertainty: bare, ..self.clone() };
                    at.push(est.fit(features, &noisier, reborrow(&mut on_event))?.report().clone());
                }
                perturbed.push((lambda, at));
            }
        }
        let mut first = first.expect("n_seeds ≥ 2 fits ran");
        let Fitted::Encoder(job) = &mut first else { unreachable!("checked: factortopy") };
        job.report.seeds = Some(SeedSpread::from_reports(&seeds, &reports)?);
        job.report.uncertainty = Some(Uncertainty::over_seeds(&reports, &perturbed)?);
        job.report.settings.uncertainty = Some(self.uncertainty);
        Ok(first)
    }

    /// Trains `encoder` (a fresh one, or a warm start) on the device, from optimiser step
    /// `start_step` of the regulariser's schedule: the one training loop driving the device's
    /// trainer.
    pub fn train(
        &self,
        encoder: Encoder,
        prepared: &PreparedFeatures,
        bt: &BrainTensors,
        split: Split,
        start_step: usize,
        progress: Option<&mut dyn FnMut(&Progress)>,
    ) -> Result<FitOutcome> {
        if self.method != Method::Factortopy {
            return Err(Error::invalid(format!("method {} does not train an encoder", self.method)));
        }
        self.validate()?;
        let mut trainer = self.trainer(&encoder, prepared, bt)?;
        train_loop(trainer.as_mut(), encoder, &bt.responses.data, split, &self.fit, start_step, progress)
    }

    /// The device's trainer, starting from `encoder`.
    pub fn trainer<'a>(
        &self,
        encoder: &Encoder,
        prepared: &'a PreparedFeatures,
        bt: &'a BrainTensors,
    ) -> Result<Box<dyn Trainer + 'a>> {
        match self.device {
            Device::Cpu => match self.cpu_trainer {
                CpuTrainer::Fast => Ok(Box::new(FastCpuTrainer::new(encoder, prepared, bt, &self.fit)?)),
                CpuTrainer::Candle => Ok(Box::new(CandleTrainer::new(encoder, prepared, bt, &self.fit)?)),
            },
            #[cfg(feature = "cuda")]
            Device::Cuda(ordinal) => {
                let opts = crate::cuda::trainer::GpuFitOptions { ordinal, ..Default::default() };
                let g = crate::cuda::gpu(ordinal)?;
                Ok(Box::new(crate::cuda::trainer::GpuTrainer::new(g, encoder, prepared, bt, &self.fit, &opts)?))
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(n) => Err(Error::device_unavailable(Device::Cuda(n), crate::engine::device::NO_CUDA_BUILD)),
        }
    }

    /// A fixed encoder ready to predict on this estimator's device.
    pub fn predictor(&self, encoder: &Encoder, pe: &candle_core::Tensor) -> Result<Predictor> {
        Predictor::new(encoder, pe, self.device)
    }

    /// Predicted responses `[N, V]` of a fixed encoder for every image of `features`, at the
    /// voxels `coords` `[V, 3]` (see [`prediction_coords`]).
    pub fn predict(&self, enc: &Encoder, coords: &Array, features: &dyn FeatureSource) -> Result<Array> {
        self.validate()?;
        features.check()?;
        let widths = features.widths();
        if widths != enc.spec.widths {
            return Err(Error::mismatch(format!(
                "the encoder was fitted on layers of widths {:?}, the features have widths {widths:?}",
                enc.spec.widths
            )));
        }
        if coords.shape != [enc.spec.n_voxels, 3] {
            return Err(Error::mismatch(format!(
                "voxel coordinates are {:?}, the encoder predicts {} voxels",
                coords.shape, enc.spec.n_voxels
            )));
        }
        let pe = enc.spec.coord_norm.encode(coords)?;
        let pe = candle_core::Tensor::from_vec(pe.data, pe.shape.as_slice(), &candle_core::Device::Cpu)?;
        let (n, v) = (features.n_images(), enc.spec.n_voxels);
        let cfg = FitConfig { grid: enc.spec.grid, d: enc.spec.d, ..self.fit.clone() };
        // The predictions, and the two copies a caller's file writer makes of them.
        let mut need = crate::engine::memory::predict_need("predict", features, PREDICT_BLOCK.min(n), v, &cfg, 0);
        need.items.push(("predictions".into(), 3 * 4 * n as u128 * v as u128));
        need.check()?;
        let predictor = self.predictor(enc, &pe)?;
        let count = crate::data::limits::elements("predictions [N, V]", &[n, v])?;
        let mut out: Vec<f32> = crate::data::limits::try_with_capacity("predictions [N, V]", count)?;
        // A block of images at a time: only that block's features are read and resampled, so
        // the predictions are the only thing that grows with the probe set.
        for block in (0..n).step_by(PREDICT_BLOCK) {
            let idx: Vec<usize> = (block..(block + PREDICT_BLOCK).min(n)).collect();
            // Layers held on the predictor's device are prepared there; others on the host.
            let prepared = prepare(self.device, features, Some(&idx), Recipe::for_encoder(&enc.spec, self.fit.store))?;
            out.extend(predictor.predict_all(&prepared)?);
        }
        Array::new(vec![n, v], out)
    }

    /// Recomputes the report of a saved encoder on the held-out images it was validated on
    /// (the split recreated from its record).
    pub fn score(&self, enc: &Encoder, record: &FitRecord, features: &dyn FeatureSource, brain: &Brain) -> Result<Scored> {
        crate::data::check_pair(features, "features", brain, "brain")?;
        check_encoder_inputs(enc, features, brain)?;
        let seed = record.summary.as_ref().map(|s| s.seed).unwrap_or(0);
        let split = Split::new(features.n_images(), record.val_fraction, seed)?;
        let cfg = FitConfig { grid: enc.spec.grid, d: enc.spec.d, ..self.fit.clone() };
        // The held-out images are prepared first, then (dropped) the layer margins' images.
        let margin_images = if self.uncertainty.bootstrap.n_resamples > 0 {
            use crate::scores::layer_margin::{margin_bytes, MAX_HELD_OUT_IMAGES, MAX_TRAIN_IMAGES};
            let (t, v) = (split.train.len().min(MAX_TRAIN_IMAGES), split.val.len().min(MAX_HELD_OUT_IMAGES));
            Some((t + v, margin_bytes(t, v, enc.spec.n_layers(), enc.spec.grid, enc.spec.d, brain.roi_names.len())))
        } else {
            None
        };
        let mut need = crate::engine::memory::predict_need(
            "score",
            features,
            split.val.len().max(margin_images.map_or(0, |m| m.0)),
            enc.spec.n_voxels,
            &cfg,
            3,
        );
        if let Some((_, bytes)) = margin_images {
            need.items.push(("layer margins".into(), bytes));
        }
        need.check()?;
        // Only the held-out images are read and resampled: they are all the score uses.
        let how = Recipe::for_encoder(&enc.spec, self.fit.store);
        let prepared = prepare(self.device, features, Some(&split.val), how)?;
        let pe = enc.spec.coord_norm.encode(&brain.coords)?;
        let pe = candle_core::Tensor::from_vec(pe.data, pe.shape.as_slice(), &candle_core::Device::Cpu)?;
        let predictor = self.predictor(enc, &pe)?;
        let local: Vec<usize> = (0..split.val.len()).collect();
        let pred = predictor.predict(&prepared, &local)?;
        let v = enc.spec.n_voxels;
        let target = crate::engine::trainer::rows(&brain.responses.data, v, &split.val);
        let heldout = HeldOut::new(&pred, &target, split.val.len(), v)?;
        let (r2, pearson) = heldout.scores();
        let selections = predictor.selections().clone();
        let report = Report::compute(
            features.model(),
            Method::Factortopy.name(),
            features.layer_names(),
            &selections,
            &r2,
            &pearson,
            brain,
            self.weighted,
            record.summary.clone(),
        )?
        .with_uncertainty(&selections, brain, Some(heldout), &r2, &self.uncertainty)?;
        let mut report = report;
        drop(prepared);
        // The margins' images, training ones included, read now and only them (prepared on the
        // device for layers held there; the margins read them from it).
        self.add_layer_margins(&mut report, enc, &split, brain, &selections, |images| {
            Ok((Cow::Owned(prepare(self.device, features, Some(images), how)?), (0..images.len()).collect()))
        })?;
        Ok(Scored { selections, r2, pearson, report })
    }
}

impl Estimator {
    /// Sets each ROI's layer margin ([`crate::scores::layer_margin`]) in `report`, unless the
    /// settings ask for no bootstrap. `prepare` gives the prepared features holding the
    /// margins' images (training, then held-out) and the rows that hold them.
    fn add_layer_margins<'p>(
        &self,
        report: &mut Report,
        enc: &Encoder,
        split: &Split,
        brain: &Brain,
        selections: &Selections,
        prepare: impl FnOnce(&[usize]) -> Result<(Cow<'p, PreparedFeatures>, Vec<usize>)>,
    ) -> Result<()> {
        use crate::scores::layer_margin::{layer_margins, margin_images};
        let boot = &self.uncertainty.bootstrap;
        if boot.n_resamples == 0 {
            return Ok(());
        }
        let (train, val) = margin_images(split, boot.seed);
        let images: Vec<usize> = train.iter().chain(&val).copied().collect();
        let (prepared, rows) = prepare(&images)?;
        let margins = layer_margins(
            enc,
            &prepared,
            &rows,
            (&train, &val),
            &brain.responses,
            selections,
            &brain.roi,
            brain.roi_names.len(),
            boot.level,
            boot.n_resamples,
            boot.seed,
        )?;
        for (roi, m) in report.rois.iter_mut().zip(margins) {
            roi.layer_margin = m;
        }
        Ok(())
    }
}

/// Images prepared and predicted at once by [`Estimator::predict`].
const PREDICT_BLOCK: usize = 256;

/// The voxel coordinates to predict at: the brain's when one is given (it must have the
/// encoder's voxel count), otherwise those saved with the encoder.
pub fn prediction_coords<'a>(enc: &Encoder, record: &'a FitRecord, brain: Option<&'a Brain>) -> Result<&'a Array> {
    match (brain, &record.coords) {
        (Some(b), _) => {
            if b.n_voxels() != enc.spec.n_voxels {
                return Err(Error::mismatch(format!(
                    "the encoder predicts {} voxels, the brain has {}",
                    enc.spec.n_voxels,
                    b.n_voxels()
                )));
            }
            Ok(&b.coords)
        }
        (None, Some(c)) => Ok(c),
        (None, None) => Err(Error::invalid(
            "the encoder file has no voxel coordinates (an encoder converted from another \
             implementation, or saved by an older factortopy); give the brain it was fitted to",
        )),
    }
}

/// Checks that a saved encoder can read these features and predict this brain.
pub fn check_encoder_inputs(enc: &Encoder, features: &dyn FeatureSource, brain: &Brain) -> Result<()> {
    let widths = features.widths();
    if widths != enc.spec.widths {
        return Err(Error::mismatch(format!(
            "the encoder was fitted on layers of widths {:?}, the features have widths {widths:?}",
            enc.spec.widths
        )));
    }
    if brain.n_voxels() != enc.spec.n_voxels {
        return Err(Error::mismatch(format!(
            "the encoder predicts {} voxels, the brain has {}",
            enc.spec.n_voxels,
            brain.n_voxels()
        )));
    }
    Ok(())
}

/// A shorter-lived copy of an optional progress callback, to pass to one fit of several.
fn reborrow<'a>(p: &'a mut OnEvent<'_>) -> OnEvent<'a> {
    match p {
        Some(f) => Some(&mut **f),
        None => None,
    }
}
