//! One epoch of fitting at the core benchmark size (issue 2): N = 1000 images, V = 5000 voxels,
//! L = 12 layers of width 256, grid 8, D = 128, batch 8, on CPU.
//!
//! Usage: `cargo bench --bench fit_epoch -- [fused|unfused] [--images N --voxels V --layers L
//! --width C --steps S]`. Peak resident memory is per process, so run each readout in its own
//! process to compare them (the README's benchmark command does).

use factortopy::model::fit::{train_step, FitStart};
use factortopy::model::{FitConfig, Readout};
use factortopy::synth::{generate, Scenario, SynthConfig};
use std::time::Instant;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let readout = if args.iter().any(|a| a == "unfused") { Readout::Unfused } else { Readout::Fused };
    let n = arg(&args, "--images", 1000);
    let v = arg(&args, "--voxels", 5000);
    let l = arg(&args, "--layers", 12);
    let c = arg(&args, "--width", 256);
    let max_steps = arg(&args, "--steps", usize::MAX);
    let batch_size = arg(&args, "--batch", 8);
    let cfg = FitConfig { readout, batch_size, ..FitConfig::default() };
    let t = Instant::now();
    let syn = generate(&SynthConfig {
        scenario: Scenario::Hierarchical,
        n_images: n,
        n_voxels: v,
        n_layers: l,
        width: c,
        grid: cfg.grid,
        ..SynthConfig::default()
    })
    .expect("synthetic data");
    let gen_s = t.elapsed().as_secs_f64();
    let mut brain = syn.brain;
    brain.zscore("synthetic").expect("z-score");
    let t = Instant::now();
    // Resampling dominates this: the encoder and split are instant.
    let FitStart { prepared, bt, encoder: enc, split } = FitStart::new(&syn.features, &brain, &cfg).expect("fit start");
    let prep_s = t.elapsed().as_secs_f64();
    let mut state = factortopy::model::fit::TrainState::new(&enc, &cfg).expect("optimiser");
    let batches: Vec<&[usize]> = split.train.chunks(cfg.batch_size).take(max_steps).collect();
    let t = Instant::now();
    for (step, batch) in batches.iter().enumerate() {
        train_step(&enc, &prepared, &bt, batch, &cfg, step, &mut state).expect("step");
    }
    let epoch_s = t.elapsed().as_secs_f64();
    let images = batches.iter().map(|b| b.len()).sum::<usize>();
    println!(
        "fit_epoch readout={readout:?} N={n} V={v} L={l} C={c} G={} D={} B={}: {} steps, {images} images in {epoch_s:.2} s = {:.1} images/s, {:.1} ms/step; peak RSS {:.0} MiB (synth {gen_s:.1} s, resample {prep_s:.1} s)",
        cfg.grid,
        cfg.d,
        cfg.batch_size,
        batches.len(),
        images as f64 / epoch_s,
        1000.0 * epoch_s / batches.len() as f64,
        peak_rss_mib()
    );
}
