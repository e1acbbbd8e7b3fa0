//! The default schedule (`model::schedule`): on planted data (DESIGN §8) of small probe
//! sets the default preset recovers the planted layers, locations and hierarchy. The ignored
//! `schedule_study` compares it with DESIGN's schedule from 400 to 10 000 images (the numbers in
//! docs/schedule.md):
//! `cargo test --release --test schedule -- --ignored --nocapture`.

use factortopy::engine::Estimator;
use factortopy::model::{FitConfig, Preset};
use factortopy::scores::UncertaintyConfig;
use factortopy::synth::{Scenario, SynthConfig};

mod common;

use common::{planted, Recovery};

fn scenario(n_images: usize, n_voxels: usize, width: usize) -> SynthConfig {
    SynthConfig {
        scenario: Scenario::Hierarchical,
        n_images,
        n_voxels,
        n_layers: 6,
        width,
        grid: 8,
        noise_ceiling: 0.6,
        seed: 4,
        ..SynthConfig::default()
    }
}

struct Run {
    r: Recovery,
    epochs: usize,
    steps: usize,
    seconds: f64,
}

fn run(syn_cfg: &SynthConfig, preset: Preset) -> (FitConfig, Run) {
    let (syn, brain) = planted(syn_cfg);
    let fit = preset.config(syn_cfg.n_images);
    // Recovery needs no intervals: the bootstrap and permutations are left out.
    let uncertainty = UncertaintyConfig::default().without_resampling();
    let est = Estimator { fit: fit.clone(), uncertainty, ..Estimator::default() };
    let t = std::time::Instant::now();
    let job = est.fit(&syn.features, &brain, None).unwrap().into_encoder_fit().unwrap();
    let seconds = t.elapsed().as_secs_f64();
    let r = Recovery::measure(&syn, &brain, syn_cfg.grid, &job.selections, &job.outcome.val_r2);
    let s = &job.outcome.summary;
    (fit, Run { r, epochs: s.epochs_run, steps: s.steps, seconds })
}

#[test]
fn default_schedule_recovers_small_probe_sets() {
    for n in [400, 800] {
        let cfg = scenario(n, 150, 16);
        let (fit, run) = run(&cfg, Preset::Auto);
        eprintln!(
            "{n} images: batch {} max {} epochs; ran {} epochs, {} steps, {:.1} s: {:?}",
            fit.batch_size, fit.max_epochs, run.epochs, run.steps, run.seconds, run.r
        );
        run.r.assert_recovered(cfg.noise_ceiling);
    }
}

/// The measured study of docs/schedule.md: DESIGN's schedule and the default one on the
/// same planted data at each size (several minutes: DESIGN's schedule at 10 000 images runs tens
/// of thousands of optimiser steps).
#[test]
#[ignore]
fn schedule_study() {
    let sizes: Vec<usize> = std::env::var("FACTORTOPY_STUDY_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![400, 800, 1500, 3000, 10_000]);
    let voxels: usize = std::env::var("FACTORTOPY_STUDY_VOXELS").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    println!("| images | preset | batch | epochs run (max) | steps | layer acc. | location acc. | mean R² (signal) | slope | Spearman | seconds |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for &n in &sizes {
        let cfg = scenario(n, voxels, 32);
        for preset in [Preset::Design, Preset::Auto] {
            let (fit, run) = run(&cfg, preset);
            let r = run.r;
            println!(
                "| {n} | {preset} | {} | {} ({}) | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} |",
                fit.batch_size, run.epochs, fit.max_epochs, run.steps, r.layer_acc, r.space_acc, r.mean_r2, r.slope,
                r.spearman, run.seconds
            );
        }
    }
}
