//! The end-to-end jobs shared by the CLI, the C ABI and the monitor: fit and report, score a
//! saved encoder, and write a fit's outputs.

use crate::data::safetensors_io::{write_tensors, OutTensor};
use crate::data::{Brain, Features};
use crate::error::{Error, Result};
use crate::model::encoder_file::{save_encoder, FitRecord};
use crate::model::fit::{BrainTensors, FitOutcome, Split};
use crate::model::fit::predict_images;
use crate::model::{fit, Encoder, FitConfig, PreparedFeatures, Progress, Selections};
use crate::scores::{FitSettings, HeldOut, Report, SeedSpread, UncertaintyConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const METHOD: &str = "factortopy";

/// A finished fit: the encoder, its per-voxel choices and the scores.
pub struct FitJob {
    pub outcome: FitOutcome,
    pub selections: Selections,
    pub report: Report,
    pub val_fraction: f64,
}

/// Fits an encoder and scores it on the held-out images, with the default uncertainty
/// settings (1000 bootstrap resamples, 95 % intervals, 10,000 permutations).
pub fn fit_report(
    features: &Features,
    brain: &Brain,
    cfg: &FitConfig,
    weighted: bool,
    progress: Option<&mut dyn FnMut(&Progress)>,
) -> Result<FitJob> {
    fit_report_with(features, brain, cfg, weighted, &UncertaintyConfig::default(), progress)
}

/// Held-out predictions `[idx.len(), V]` of `enc` and the brain's responses on the same images:
/// what the refit-free bootstrap resamples.
pub fn heldout_predictions(
    enc: &Encoder,
    prepared: &PreparedFeatures,
    bt: &BrainTensors,
    brain: &Brain,
    idx: &[usize],
) -> Result<(Vec<f32>, Vec<f32>)> {
    let pred = predict_images(enc, prepared, &bt.pe, idx)?;
    let v = brain.n_voxels();
    let mut target = Vec::with_capacity(idx.len() * v);
    for &i in idx {
        target.extend_from_slice(&brain.responses.data[i * v..(i + 1) * v]);
    }
    Ok((pred, target))
}

/// [`fit_report`] with explicit uncertainty settings.
pub fn fit_report_with(
    features: &Features,
    brain: &Brain,
    cfg: &FitConfig,
    weighted: bool,
    uncertainty: &UncertaintyConfig,
    progress: Option<&mut dyn FnMut(&Progress)>,
) -> Result<FitJob> {
    uncertainty.validate()?;
    let outcome = fit(features, brain, cfg, progress)?;
    let bt = BrainTensors::new(brain, Some(outcome.encoder.spec.coord_norm))?;
    let selections = outcome.encoder.selectors(&bt.pe)?.to_host()?;
    let prepared = PreparedFeatures::new(features, outcome.encoder.spec.grid)?;
    let val = &outcome.split.val;
    let (pred, target) = heldout_predictions(&outcome.encoder, &prepared, &bt, brain, val)?;
    drop(prepared);
    let heldout = HeldOut::new(&pred, &target, val.len(), brain.n_voxels())?;
    let mut report = Report::compute(
        &features.model,
        METHOD,
        &features.layer_names,
        &selections,
        &outcome.val_r2,
        &outcome.val_pearson,
        brain,
        weighted,
        Some(outcome.summary.clone()),
    )?
    .with_uncertainty(&selections, brain, Some(heldout), &outcome.val_r2, uncertainty)?;
    report.settings.fit = Some(FitSettings::from(cfg));
    Ok(FitJob { outcome, selections, report, val_fraction: cfg.val_fraction })
}

/// A shorter-lived copy of an optional progress callback, to pass to one fit of several.
fn reborrow<'a>(p: &'a mut Option<&mut dyn FnMut(&Progress)>) -> Option<&'a mut dyn FnMut(&Progress)> {
    match p {
        Some(f) => Some(&mut **f),
        None => None,
    }
}

/// [`fit_report_with`] at `cfg.seed`, then `n_seeds − 1` refits at seeds `cfg.seed + 1, ...`
/// whose headline numbers, with the first fit's, give the report's spread over seeds (the fit's
/// own randomness: initialisation, batch order and train/validation split). The returned job is
/// the first seed's; the refits skip the bootstrap and permutations. `n_seeds` ≤ 1 is a plain fit.
pub fn fit_report_seeds(
    features: &Features,
    brain: &Brain,
    cfg: &FitConfig,
    weighted: bool,
    uncertainty: &UncertaintyConfig,
    n_seeds: usize,
    mut progress: Option<&mut dyn FnMut(&Progress)>,
    mut seed_done: Option<&mut dyn FnMut(u64, &Report)>,
) -> Result<FitJob> {
    let mut job = fit_report_with(features, brain, cfg, weighted, uncertainty, reborrow(&mut progress))?;
    if n_seeds <= 1 {
        return Ok(job);
    }
    if let Some(cb) = seed_done.as_mut() {
        cb(cfg.seed, &job.report);
    }
    let none = UncertaintyConfig {
        bootstrap: crate::scores::BootstrapConfig { n_resamples: 0, ..uncertainty.bootstrap },
        permutation: crate::scores::PermutationConfig { n_permutations: 0, ..uncertainty.permutation },
    };
    let mut seeds = vec![cfg.seed];
    let mut reports = vec![job.report.clone()];
    for k in 1..n_seeds as u64 {
        let seed = cfg.seed.checked_add(k).ok_or_else(|| Error::invalid("--seed + --seeds overflows a 64-bit seed"))?;
        let c = FitConfig { seed, ..cfg.clone() };
        let r = fit_report_with(features, brain, &c, weighted, &none, reborrow(&mut progress))?.report;
        if let Some(cb) = seed_done.as_mut() {
            cb(seed, &r);
        }
        seeds.push(seed);
        reports.push(r);
    }
    job.report.seeds = Some(SeedSpread::from_reports(&seeds, &reports)?);
    Ok(job)
}

/// Checks that a saved encoder can read these features and predict this brain.
pub fn check_encoder_inputs(enc: &Encoder, features: &Features, brain: &Brain) -> Result<()> {
    let widths: Vec<usize> = features.layers.iter().map(|l| l.local.shape[1]).collect();
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

/// Recomputes the report of a saved encoder on the same held-out images it was validated on,
/// with the default uncertainty settings.
pub fn score_encoder(
    enc: &Encoder,
    record: &FitRecord,
    features: &Features,
    brain: &Brain,
    weighted: bool,
) -> Result<(Selections, Vec<f32>, Report)> {
    score_encoder_with(enc, record, features, brain, weighted, &UncertaintyConfig::default())
}

/// [`score_encoder`] with explicit uncertainty settings.
pub fn score_encoder_with(
    enc: &Encoder,
    record: &FitRecord,
    features: &Features,
    brain: &Brain,
    weighted: bool,
    uncertainty: &UncertaintyConfig,
) -> Result<(Selections, Vec<f32>, Report)> {
    uncertainty.validate()?;
    crate::data::check_pair(features, "features", brain, "brain")?;
    check_encoder_inputs(enc, features, brain)?;
    let seed = record.summary.as_ref().map(|s| s.seed).unwrap_or(0);
    let prepared = PreparedFeatures::new(features, enc.spec.grid)?;
    let bt = BrainTensors::new(brain, Some(enc.spec.coord_norm))?;
    let split = Split::new(prepared.n_images, record.val_fraction, seed)?;
    let (pred, target) = heldout_predictions(enc, &prepared, &bt, brain, &split.val)?;
    let heldout = HeldOut::new(&pred, &target, split.val.len(), brain.n_voxels())?;
    let (r2, pearson) = heldout.scores();
    let selections = enc.selectors(&bt.pe)?.to_host()?;
    let report = Report::compute(
        &features.model,
        METHOD,
        &features.layer_names,
        &selections,
        &r2,
        &pearson,
        brain,
        weighted,
        record.summary.clone(),
    )?
    .with_uncertainty(&selections, brain, Some(heldout), &r2, uncertainty)?;
    Ok((selections, r2, report))
}

/// `selectors.safetensors`: `layer_probs` [V, L], `space` [V, 2], `scale` [V], `r2` [V].
pub fn save_selections(path: &Path, sel: &Selections, r2: &[f32]) -> Result<()> {
    let v = sel.n_voxels();
    let tensors = vec![
        ("layer_probs".to_string(), OutTensor::from_array(&sel.layer_probs)),
        ("space".to_string(), OutTensor::from_array(&sel.space)),
        ("scale".to_string(), OutTensor::F32 { shape: vec![v], data: &sel.scale }),
        ("r2".to_string(), OutTensor::F32 { shape: vec![v], data: r2 }),
    ];
    write_tensors(path, &tensors, &BTreeMap::new())
}

/// Paths of the files a fit writes into its output directory.
pub struct FitOutputs {
    pub report: PathBuf,
    pub encoder: PathBuf,
    pub selectors: PathBuf,
    pub layer_map: PathBuf,
    /// Every picture written (`crate::plot::figures`), the overview last.
    pub pictures: Vec<PathBuf>,
}

impl FitOutputs {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            report: dir.join("report.json"),
            encoder: dir.join("encoder.safetensors"),
            selectors: dir.join("selectors.safetensors"),
            layer_map: dir.join("layer_map.png"),
            pictures: Vec::new(),
        }
    }
}

/// Writes every output of a fit, with every picture (`plot::figures`). Each file is written
/// atomically; the report goes last so a directory with a `report.json` has all the other files
/// too.
pub fn write_fit_outputs(dir: &Path, job: &FitJob, brain: &Brain) -> Result<FitOutputs> {
    write_fit_outputs_with(dir, job, brain, Some(&crate::plot::PlotOptions::default()))
}

/// [`write_fit_outputs`] with a choice of pictures (`None`: no pictures at all).
pub fn write_fit_outputs_with(
    dir: &Path,
    job: &FitJob,
    brain: &Brain,
    plots: Option<&crate::plot::PlotOptions>,
) -> Result<FitOutputs> {
    let record = FitRecord { val_fraction: job.val_fraction, summary: Some(job.outcome.summary.clone()) };
    let fit = ScoredFit { report: &job.report, selections: &job.selections, r2: &job.outcome.val_r2 };
    write_outputs(dir, &job.outcome.encoder, &record, &fit, brain, plots)
}

/// Scores a saved encoder ([`score_encoder_with`]) and writes the directory `factortopy fit` would
/// have written for it, so an encoder made elsewhere (a converted PyTorch checkpoint) gets its
/// report, selectors and pictures.
pub fn write_score_outputs(
    dir: &Path,
    enc: &Encoder,
    record: &FitRecord,
    features: &Features,
    brain: &Brain,
    weighted: bool,
    uncertainty: &UncertaintyConfig,
    plots: Option<&crate::plot::PlotOptions>,
) -> Result<FitOutputs> {
    let (selections, r2, report) = score_encoder_with(enc, record, features, brain, weighted, uncertainty)?;
    crate::data::io::ensure_output_dir(dir)?;
    let fit = ScoredFit { report: &report, selections: &selections, r2: &r2 };
    write_outputs(dir, enc, record, &fit, brain, plots)
}

/// What a fit directory holds besides the encoder.
struct ScoredFit<'a> {
    report: &'a Report,
    selections: &'a Selections,
    r2: &'a [f32],
}

fn write_outputs(
    dir: &Path,
    enc: &Encoder,
    record: &FitRecord,
    fit: &ScoredFit,
    brain: &Brain,
    plots: Option<&crate::plot::PlotOptions>,
) -> Result<FitOutputs> {
    let mut out = FitOutputs::in_dir(dir);
    save_encoder(&out.encoder, enc, record)?;
    save_selections(&out.selectors, fit.selections, fit.r2)?;
    if let Some(opts) = plots {
        let weight = enc.weight.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let view = crate::plot::FitView {
            report: fit.report,
            selections: fit.selections,
            r2: fit.r2,
            readout: Some((&weight, enc.spec.d)),
        };
        out.pictures = crate::plot::write_pictures(dir, brain, &view, opts)?.into_iter().map(|(_, p)| p).collect();
    }
    fit.report.write_json(&out.report)?;
    Ok(out)
}
