//! `factortopy fit`: fit the encoder (or the ridge baseline), write the report, the encoder, the
//! selectors and the map.

use crate::cli::fit_ridge::RidgeArgs;
use crate::cli::load_inputs;
use crate::data::FeatureSource;
use crate::cli::progress::FitProgress;
use crate::cli::train_args::{check_flags, describe_schedule, DeviceArgs, TrainArgs};
use crate::engine::{FitEvent, Fitted, Method};
use crate::cli::uncertainty::UncertaintyArgs;
use crate::error::{Error, Result};
use crate::scores::BiasCorrection;
use crate::pipeline::write_fit_outputs_with;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct FitArgs {
    /// Features file (safetensors, DESIGN §2).
    #[arg(long)]
    pub features: PathBuf,
    /// Brain file (safetensors, DESIGN §2).
    #[arg(long)]
    pub brain: PathBuf,
    /// Output directory (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub train: TrainArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Fitting method: factortopy (the encoder) or ridge (layer-wise ridge baseline).
    #[arg(long, value_name = "METHOD", default_value = "factortopy", value_parser = parse_method)]
    pub method: Method,
    #[command(flatten)]
    pub ridge: RidgeArgs,
    /// Weight the hierarchy line by max(R², 0).
    #[arg(long)]
    pub weighted: bool,
    #[command(flatten)]
    pub uncertainty: UncertaintyArgs,
    /// Refit with K seeds (--seed, --seed + 1, ...) and report the spread of every headline
    /// number across them and intervals that include that fit-to-fit variability (a Student-t
    /// prediction interval over the K fits, widened by their refit-free bootstrap; the
    /// --bootstrap resamples are split over the fits); the outputs are the first seed's fit.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub seeds: usize,
    /// Correct the bias that measurement noise puts in slope, b0, b1 and Spearman: `simex`
    /// refits each of the --seeds K seeds with added noise of 0.5, 1 and 2 times each voxel's
    /// noise variance (1 − noise ceiling)·Var(y) and extrapolates to no noise (4·K fits; needs
    /// K ≥ 2 and the brain's noise ceiling); `none` (default) reports fits to the data as given.
    #[arg(long, value_name = "METHOD", default_value = "none", value_parser = parse_bias_correction)]
    pub bias_correct: BiasCorrection,
    /// No progress (the bar on a terminal, one line per epoch or ridge layer otherwise).
    #[arg(long)]
    pub quiet: bool,
    /// Write no pictures (the maps and overview.png; `factortopy plot` draws them later).
    #[arg(long)]
    pub no_plots: bool,
}

fn parse_bias_correction(s: &str) -> std::result::Result<BiasCorrection, String> {
    s.parse::<BiasCorrection>().map_err(|e| e.to_string())
}

/// The method flag of `fit` and `rank`.
pub fn parse_method(s: &str) -> std::result::Result<Method, String> {
    s.parse::<Method>().map_err(|e| e.to_string())
}

pub fn run(a: FitArgs) -> Result<i32> {
    crate::data::limits::positive_at_most("--seeds", a.seeds, crate::data::limits::MAX_SEEDS)?;
    if a.seeds > 1 && a.method == Method::Ridge {
        return Err(Error::invalid_arg(
            "--seeds",
            "--seeds applies to the factortopy method (the ridge baseline has no random initialisation)",
        ));
    }
    // The fit settings are named as the flags that set them.
    if a.bias_correct != BiasCorrection::None && a.seeds < 2 {
        return Err(Error::invalid_arg("--bias-correct", format!(
            "--bias-correct {} extrapolates over refits: it needs --seeds K with K ≥ 2 (3 or more recommended)",
            a.bias_correct.name()
        )));
    }
    let mut est = check_flags(a.method, &a.device, &a.train, a.weighted, &a.uncertainty)?;
    est.uncertainty.bias_correction = a.bias_correct;
    match (a.method, a.ridge.given_flag()) {
        (Method::Ridge, _) => est.ridge = a.ridge.config()?,
        (Method::Factortopy, Some(flag)) => {
            return Err(Error::invalid_arg(flag, format!("{flag} applies to --method ridge only; the factortopy fit does not use it")))
        }
        (Method::Factortopy, None) => {}
    }
    // Read a comparison first so a bad path fails before the fit.
    let compare = match (a.method, &a.ridge.compare) {
        (Method::Ridge, Some(dir)) => Some(crate::cli::fit_ridge::read_compare(dir)?),
        _ => None,
    };
    let (features, brain) = load_inputs(&a.features, &a.brain)?;
    // The schedule follows the probe-set size.
    est.fit = crate::model::FitConfig { store: a.device.store, ..a.train.config(brain.n_images()) };
    crate::data::limits::held_out("--val-fraction", brain.n_images(), est.fit.val_fraction)?;
    // Check the destination before fitting so a long fit never ends in an unwritable directory,
    // but after validating the inputs so bad inputs leave nothing behind; a fit that fails
    // after this removes the folder again if it created it and it is still empty.
    let out_dir = crate::data::OutputDir::prepare(&a.out)?;
    eprintln!(
        "fitting {} ({} layers) to {} voxels on {} images: method {}, device {}",
        features.model(),
        features.n_layers(),
        brain.n_voxels(),
        brain.n_images(),
        est.method,
        est.device
    );
    if a.method == Method::Factortopy && !a.quiet {
        eprintln!("{}", describe_schedule(a.train.preset(), &est.fit));
    }
    // The bar (a terminal), plain lines (a file or pipe) or nothing (--quiet), on stderr.
    let progress = std::cell::RefCell::new(FitProgress::stderr(a.quiet));
    progress.borrow_mut().set_ridge_layers(features.n_layers());
    let mut cb = |e: FitEvent<'_>| progress.borrow_mut().event(e);
    let mut seed_cb = |seed: u64, r: &crate::scores::Report| {
        let f = |x: Option<f64>| x.map_or("null".to_string(), |x| format!("{x:.3}"));
        progress.borrow_mut().message(&format!(
            "seed {seed}: slope {}  spearman {}  mean R² {:.4}",
            f(r.hierarchy.slope),
            f(r.hierarchy.spearman),
            r.r2.mean
        ));
    };
    let fitted = est.fit_seeds(&features, &brain, a.seeds, if a.quiet { None } else { Some(&mut cb) }, Some(&mut seed_cb))?;
    progress.borrow_mut().end_line();
    match fitted {
        Fitted::Ridge(fit) => {
            let code = crate::cli::fit_ridge::finish(&a.out, &fit, &brain, compare, !a.no_plots)?;
            out_dir.keep();
            if !a.quiet {
                crate::cli::report_peak_memory(&[&a.features, &a.brain]);
            }
            Ok(code)
        }
        Fitted::Encoder(job) => {
            let plots = crate::plot::PlotOptions::default();
            let out = write_fit_outputs_with(&a.out, &job, &brain, (!a.no_plots).then_some(&plots))?;
            out_dir.keep();
            crate::cli::warn_undefined(&job.report.model, &job.report.hierarchy);
            println!("{}", job.report.headline());
            println!("report:    {}", out.report.display());
            for p in &out.pictures {
                println!("picture:   {}", p.display());
            }
            println!("encoder:   {}", out.encoder.display());
            println!("selectors: {}", out.selectors.display());
            if !a.quiet {
                crate::cli::report_peak_memory(&[&a.features, &a.brain]);
            }
            Ok(0)
        }
    }
}
