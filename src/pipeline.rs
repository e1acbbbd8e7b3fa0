//! A fit's output folder: the files `factortopy fit` writes, with its pictures (the fitting
//! itself is `crate::engine`).

#![warn(missing_docs)]

use crate::data::safetensors_io::{write_tensors, OutTensor};
use crate::data::{Brain, FeatureSource};
use crate::engine::{EncoderFit, Estimator};
use crate::error::Result;
use crate::model::encoder_file::{save_encoder, FitRecord};
use crate::model::{Encoder, Selections};
use crate::scores::Report;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `selectors.safetensors`: `layer_probs` `[V, L]`, `space` `[V, 2]`, `scale` `[V]`, `r2` `[V]`.
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
    /// `report.json`.
    pub report: PathBuf,
    /// `encoder.safetensors`.
    pub encoder: PathBuf,
    /// `selectors.safetensors`: layer probabilities, location, scale and R² per voxel.
    pub selectors: PathBuf,
    /// `layer_map.png`.
    pub layer_map: PathBuf,
    /// Every picture written (`crate::plot::figures`), the overview last.
    pub pictures: Vec<PathBuf>,
}

impl FitOutputs {
    /// The paths in `dir` (no pictures listed yet).
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
pub fn write_fit_outputs(dir: &Path, job: &EncoderFit, brain: &Brain) -> Result<FitOutputs> {
    write_fit_outputs_with(dir, job, brain, Some(&crate::plot::PlotOptions::default()))
}

/// [`write_fit_outputs`] with a choice of pictures (`None`: no pictures at all).
pub fn write_fit_outputs_with(
    dir: &Path,
    job: &EncoderFit,
    brain: &Brain,
    plots: Option<&crate::plot::PlotOptions>,
) -> Result<FitOutputs> {
    let fit = ScoredFit { report: &job.report, selections: &job.selections, r2: &job.outcome.val_r2 };
    write_outputs(dir, &job.outcome.encoder, &job.record(), &fit, brain, plots)
}

/// Scores a saved encoder with `est` (`Estimator::score`) and writes the directory `factortopy
/// fit` would have written for it, so an encoder made elsewhere (a converted PyTorch checkpoint)
/// gets its report, selectors and pictures.
pub fn write_score_outputs(
    dir: &Path,
    est: &Estimator,
    enc: &Encoder,
    record: &FitRecord,
    features: &dyn FeatureSource,
    brain: &Brain,
    plots: Option<&crate::plot::PlotOptions>,
) -> Result<FitOutputs> {
    let scored = est.score(enc, record, features, brain)?;
    let fit = ScoredFit { report: &scored.report, selections: &scored.selections, r2: &scored.r2 };
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
    // The whole set is staged and moves in at once (`write_into`): a failure anywhere, the
    // report included, leaves `dir` as it was.
    crate::data::write_into(dir, |stage| {
        let mut out = FitOutputs::in_dir(dir);
        let staged = FitOutputs::in_dir(stage);
        save_encoder(&staged.encoder, enc, record)?;
        save_selections(&staged.selectors, fit.selections, fit.r2)?;
        if let Some(opts) = plots {
            let weight = enc.weight.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let view = crate::plot::FitView {
                report: fit.report,
                selections: fit.selections,
                r2: fit.r2,
                readout: Some((&weight, enc.spec.d)),
            };
            out.pictures = crate::plot::write_pictures(stage, brain, &view, opts)?
                .into_iter()
                .map(|(p, _)| dir.join(p.file_name()))
                .collect();
        }
        fit.report.write_json(&staged.report)?;
        Ok(out)
    })
}
