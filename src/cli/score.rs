//! `factortopy score`: recompute the report of a saved encoder.

use crate::cli::load_inputs;
use crate::error::Result;
use crate::model::encoder_file::load_encoder;
use crate::cli::uncertainty::UncertaintyArgs;
use crate::pipeline::score_encoder_with;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// A saved encoder (`encoder.safetensors` from `factortopy fit`).
    #[arg(long)]
    pub encoder: PathBuf,
    #[arg(long)]
    pub features: PathBuf,
    #[arg(long)]
    pub brain: PathBuf,
    /// Write the report here instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Weight the hierarchy line by max(R², 0).
    #[arg(long)]
    pub weighted: bool,
    #[command(flatten)]
    pub uncertainty: UncertaintyArgs,
}

pub fn run(a: ScoreArgs) -> Result<i32> {
    let (enc, record) = load_encoder(&a.encoder)?;
    let (features, brain) = load_inputs(&a.features, &a.brain)?;
    let (_, _, report) = score_encoder_with(&enc, &record, &features, &brain, a.weighted, &a.uncertainty.config())?;
    match &a.out {
        Some(path) => {
            report.write_json(path)?;
            eprintln!("{}", report.headline());
            eprintln!("report: {}", path.display());
        }
        None => println!("{}", report.to_json()),
    }
    Ok(0)
}
