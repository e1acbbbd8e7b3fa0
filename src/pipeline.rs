//! The end-to-end jobs shared by the CLI, the C ABI and the monitor: fit and report, score a
//! saved encoder, and write a fit's outputs.

use crate::data::safetensors_io::{write_tensors, OutTensor};
use crate::data::{Brain, Features};
use crate::error::{Error, Result};
use crate::model::encoder_file::{save_encoder, FitRecord};
use crate::model::fit::{evaluate, BrainTensors, FitOutcome, Split};
use crate::model::{fit, Encoder, FitConfig, PreparedFeatures, Progress, Selections};
use crate::scores::Report;
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

/// Fits an encoder and scores it on the held-out images.
pub fn fit_report(
    features: &Features,
    brain: &Brain,
    cfg: &FitConfig,
    weighted: bool,
    progress: Option<&mut dyn FnMut(&Progress)>,
) -> Result<FitJob> {
    let outcome = fit(features, brain, cfg, progress)?;
    let bt = BrainTensors::new(brain, Some(outcome.encoder.spec.coord_norm))?;
    let selections = outcome.encoder.selectors(&bt.pe)?.to_host()?;
    let report = Report::compute(
        &features.model,
        METHOD,
        &features.layer_names,
        &selections,
        &outcome.val_r2,
        &outcome.val_pearson,
        brain,
        weighted,
        Some(outcome.summary.clone()),
    )?;
    Ok(FitJob { outcome, selections, report, val_fraction: cfg.val_fraction })
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

/// Recomputes the report of a saved encoder on the same held-out images it was validated on.
pub fn score_encoder(
    enc: &Encoder,
    record: &FitRecord,
    features: &Features,
    brain: &Brain,
    weighted: bool,
) -> Result<(Selections, Vec<f32>, Report)> {
    crate::data::check_pair(features, "features", brain, "brain")?;
    check_encoder_inputs(enc, features, brain)?;
    let seed = record.summary.as_ref().map(|s| s.seed).unwrap_or(0);
    let prepared = PreparedFeatures::new(features, enc.spec.grid)?;
    let bt = BrainTensors::new(brain, Some(enc.spec.coord_norm))?;
    let split = Split::new(prepared.n_images, record.val_fraction, seed)?;
    let (r2, pearson) = evaluate(enc, &prepared, &bt, &split.val)?;
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
    )?;
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
}

impl FitOutputs {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            report: dir.join("report.json"),
            encoder: dir.join("encoder.safetensors"),
            selectors: dir.join("selectors.safetensors"),
            layer_map: dir.join("layer_map.png"),
        }
    }
}

/// Writes every output of a fit. Each file is written atomically; the report goes last so a
/// directory with a `report.json` has all the other files too.
pub fn write_fit_outputs(dir: &Path, job: &FitJob, brain: &Brain) -> Result<FitOutputs> {
    let out = FitOutputs::in_dir(dir);
    let record = FitRecord { val_fraction: job.val_fraction, summary: Some(job.outcome.summary.clone()) };
    save_encoder(&out.encoder, &job.outcome.encoder, &record)?;
    save_selections(&out.selectors, &job.selections, &job.outcome.val_r2)?;
    let title = format!("{}: layer map", job.report.model);
    crate::plot::layer_map(&out.layer_map, brain, &job.selections, &title)?;
    job.report.write_json(&out.report)?;
    Ok(out)
}
