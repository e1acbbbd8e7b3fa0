//! The `factortopy` command line. Each subcommand lives in its own file; errors print as one
//! line and give a non-zero exit status.

use crate::data::{Brain, Features};
use crate::error::Result;
use clap::{Parser, Subcommand};
use std::path::Path;

pub mod fit;
pub mod score;
pub mod synth;

#[derive(Parser, Debug)]
#[command(name = "factortopy", version, about = "How brain-like is a vision network's hierarchy (FactorTopy encoding model)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate planted-hierarchy synthetic data (DESIGN §8).
    Synth(synth::SynthArgs),
    /// Fit the encoder to a brain and write report.json, encoder, selectors and layer_map.png.
    Fit(fit::FitArgs),
    /// Recompute the report of a saved encoder.
    Score(score::ScoreArgs),
}

/// Loads and cross-checks a features file and a brain file (responses z-scored per voxel).
pub fn load_inputs(features: &Path, brain: &Path) -> Result<(Features, Brain)> {
    let f = Features::load(features)?;
    let b = Brain::load(brain)?;
    crate::data::check_pair(&f, &features.display().to_string(), &b, &brain.display().to_string())?;
    Ok((f, b))
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth(a) => synth::run(a),
        Command::Fit(a) => fit::run(a),
        Command::Score(a) => score::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
