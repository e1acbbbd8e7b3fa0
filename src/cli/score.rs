//! `factortopy score`: recompute the report of a saved encoder, and optionally write the whole
//! fit directory for it (report, selectors, pictures), e.g. for a converted PyTorch checkpoint.

use crate::cli::load_inputs;
use crate::cli::train_args::DeviceArgs;
use crate::cli::uncertainty::UncertaintyArgs;
use crate::engine::{Estimator, Method};
use crate::error::{Error, Result};
use crate::model::encoder_file::load_encoder;
use crate::model::FitConfig;
use crate::pipeline::write_score_outputs;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// A saved encoder (`encoder.safetensors` from `factortopy fit`, or a converted checkpoint).
    #[arg(long)]
    pub encoder: PathBuf,
    #[arg(long)]
    pub features: PathBuf,
    #[arg(long)]
    pub brain: PathBuf,
    /// Write the report here instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the directory `fit` writes (report.json, encoder, selectors and the pictures) here.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub fit_dir: Option<PathBuf>,
    /// With --fit-dir: no pictures.
    #[arg(long)]
    pub no_plots: bool,
    /// Weight the hierarchy line by max(R², 0).
    #[arg(long)]
    pub weighted: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub uncertainty: UncertaintyArgs,
}

pub fn run(a: ScoreArgs) -> Result<i32> {
    if a.no_plots && a.fit_dir.is_none() {
        // Without --fit-dir there are no pictures to leave out: the flag would do nothing.
        return Err(Error::invalid_arg("--no-plots", "--no-plots applies with --fit-dir only (score writes no pictures without it)"));
    }
    let est = Estimator {
        weighted: a.weighted,
        uncertainty: a.uncertainty.config(),
        ..Estimator::new(Method::Factortopy, a.device.device, FitConfig { store: a.device.store, ..FitConfig::default() })
    };
    est.validate()?;
    let (enc, record) = load_encoder(&a.encoder)?;
    let (features, brain) = load_inputs(&a.features, &a.brain)?;
    if let Some(dir) = &a.fit_dir {
        let plots = crate::plot::PlotOptions::default();
        let out = write_score_outputs(dir, &est, &enc, &record, &features, &brain, (!a.no_plots).then_some(&plots))?;
        eprintln!("report:    {}", out.report.display());
        for p in &out.pictures {
            eprintln!("picture:   {}", p.display());
        }
        return Ok(0);
    }
    let report = est.score(&enc, &record, &features, &brain)?.report;
    crate::cli::warn_undefined(&report.model, &report.hierarchy);
    match &a.out {
        Some(path) => {
            report.write_json(path)?;
            eprintln!("{}", report.headline());
            eprintln!("report: {}", path.display());
        }
        None => println!("{}", report.to_json()),
    }
    crate::cli::report_peak_memory(&[&a.features, &a.brain]);
    Ok(0)
}
