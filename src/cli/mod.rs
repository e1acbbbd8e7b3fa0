//! The `factortopy` command line. Each subcommand lives in its own file; errors print as one
//! line and give a non-zero exit status.

use crate::data::{Brain, FeatureFile};
use crate::error::Result;
use clap::{Parser, Subcommand};
use std::path::Path;

pub mod fit;
pub mod fit_ridge;
pub mod import_algonauts;
pub mod monitor;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod rank;
pub mod rank_workers;
pub mod score;
pub mod synth;
pub mod train_args;
pub mod uncertainty;

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
    /// Fit the encoder to a brain and write report.json, encoder, selectors and the pictures.
    Fit(fit::FitArgs),
    /// Recompute the report of a saved encoder.
    Score(score::ScoreArgs),
    /// Predict the brain's responses to new images' features with a saved encoder.
    Predict(predict::PredictArgs),
    /// Rank networks against one or several subjects by hierarchy slope (exit status 3 below --min-slope).
    Rank(rank::RankArgs),
    /// Convert an Algonauts 2023 subject folder into a brain file.
    ImportAlgonauts(import_algonauts::ImportAlgonautsArgs),
    /// Replay checkpoints' features through the forgetting monitor.
    Monitor(monitor::MonitorArgs),
    /// Redraw a saved fit's maps, layer profile and overview (no refitting).
    Plot(plot::PlotArgs),
}

/// Opens a features file (its header: values are read when a command uses them) and loads a
/// brain file (responses z-scored per voxel), and cross-checks them.
pub fn load_inputs(features: &Path, brain: &Path) -> Result<(FeatureFile, Brain)> {
    let f = FeatureFile::open(features)?;
    let b = Brain::load(brain)?;
    crate::data::check_pair(&f, &features.display().to_string(), &b, &brain.display().to_string())?;
    Ok((f, b))
}

/// Prints the process's peak resident memory on stderr, beside the bytes of the input files
/// it read, so a user sees what a command took (and how it compares with its inputs).
pub fn report_peak_memory(inputs: &[&Path]) {
    let Some(peak) = crate::engine::memory::peak_resident_bytes() else { return };
    let files: u64 = inputs.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    eprintln!("peak memory: {:.3} GiB (input files {:.3} GiB)", gib(peak), gib(files));
}

/// Prints a report's hierarchy warning (why its scores are `null`) to stderr, prefixed with
/// `what` (a network name, a step): the one place the CLI says a score is undefined.
pub fn warn_undefined(what: &str, h: &crate::scores::HierarchyScores) {
    if let Some(w) = &h.warning {
        eprintln!("warning: {}", crate::error::one_line(&format!("{what}: {w}")));
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if let Some(note) = crate::engine::memory::fit_thread_pool_to_address_space() {
        eprintln!("{note}");
    }
    let result = match cli.command {
        Command::Synth(a) => synth::run(a),
        Command::Fit(a) => fit::run(a),
        Command::Score(a) => score::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Rank(a) => rank::run(a),
        Command::ImportAlgonauts(a) => import_algonauts::run(a),
        Command::Monitor(a) => monitor::run(a),
        Command::Plot(a) => plot::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::error::one_line(&e.to_string()));
            1
        }
    }
}
