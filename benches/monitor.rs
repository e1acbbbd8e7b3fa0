//! Latency of `Monitor::observe` at the core benchmark size: N = 1000 probe images,
//! V = 5000 voxels, L = 12 layers of width 256 (synthetic network, early layers 14×14, late
//! 7×7), encoder D = 128, G = 8, on CPU; and the overhead per training step it implies when the
//! monitor observes every K training steps.
//!
//! Usage: `cargo bench --bench monitor -- [--images N --voxels V --layers L --width C
//! --repeats R --refit-steps S --k K --refit-every E --ref-steps S0 --step-ms T --cache DIR]`.
//! `--refit-steps 0` skips the refit timings. With `--cache DIR` the synthetic data and the
//! reference encoder are written there on the first run and read back on later runs of the same
//! size (the set-up costs minutes on a 2-core machine; the timings do not depend on it).
//!
//! The reference encoder comes from short fits of `--ref-steps` optimiser steps, repeated until
//! its held-out R² is positive (its quality does not change the cost of an observation).
//! Reported:
//! - observe without refit: retention on the held-out images + CKA on all images, median of R;
//! - the two parts separately (held-out retention = observe − CKA);
//! - observe with a refit of S optimiser steps;
//! - overhead per training step at K: (observe + refit / E) / K.

use std::time::Instant;

use factortopy::data::{Brain, Features};
use factortopy::model::encoder_file::{load_encoder, save_encoder, FitRecord};
use factortopy::engine::fast_cpu::FastCpuTrainer;
use factortopy::engine::Trainer;
use factortopy::engine::Predictor;
use factortopy::model::{BrainTensors, FitStart, PreparedFeatures};
use factortopy::scores::stats::r2_per_voxel;
use factortopy::model::FitConfig;
use factortopy::monitor::{layer_cka, GramStats, Monitor, MonitorConfig};
use factortopy::rng::Rng;
use factortopy::scores::FitSummary;
use factortopy::synth::{generate, Scenario, SynthConfig};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds this process has used (user + system, all threads): on a shared machine the
/// wall time of a parallel section depends on the other load, its CPU time much less.
fn cpu_seconds() -> f64 {
    // SAFETY: `getrusage` writes one `rusage` into the zeroed struct we own; RUSAGE_SELF is valid.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + 1e-6 * v.tv_usec as f64;
    t(u.ru_utime) + t(u.ru_stime)
}

fn text_arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

/// `f` plus `sigma`-scaled noise (a different pattern per seed).
fn perturbed(f: &Features, sigma: f32, seed: u64) -> Features {
    let mut out = f.clone();
    let mut rng = Rng::new(seed);
    for l in &mut out.layers {
        for x in l.local.data.iter_mut() {
            *x += sigma * (rng.uniform() as f32 - 0.5);
        }
        if let Some(g) = &mut l.global {
            for x in g.data.iter_mut() {
                *x += sigma * (rng.uniform() as f32 - 0.5);
            }
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--images", 1000);
    let v = arg(&args, "--voxels", 5000);
    let l = arg(&args, "--layers", 12);
    let c = arg(&args, "--width", 256);
    let repeats = arg(&args, "--repeats", 5).max(1);
    let refit_steps = arg(&args, "--refit-steps", 50);
    let k = arg(&args, "--k", 100).max(1);
    let step_ms = arg(&args, "--step-ms", 100).max(1) as f64;
    let refit_every = arg(&args, "--refit-every", 10).max(1);
    let ref_steps = arg(&args, "--ref-steps", 150).max(1);
    let cache = text_arg(&args, "--cache").map(|d| std::path::PathBuf::from(d).join(format!("n{n}-v{v}-l{l}-c{c}")));
    let threads = rayon::current_num_threads();
    println!("monitor benchmark: N = {n}, V = {v}, L = {l}, C = {c}, D = 128, G = 8, {threads} threads");

    let t = Instant::now();
    let cached = cache.as_ref().filter(|d| d.join("encoder.safetensors").exists());
    let (reference, brain) = match cached {
        Some(d) => (
            Features::load(&d.join("features.safetensors")).expect("cached features"),
            Brain::load(&d.join("brain.safetensors")).expect("cached brain"),
        ),
        None => {
            let syn = generate(&SynthConfig {
                scenario: Scenario::Hierarchical,
                n_images: n,
                n_voxels: v,
                n_layers: l,
                width: c,
                grid: 7,
                ..SynthConfig::default()
            })
            .expect("synthetic data");
            let mut brain = syn.brain;
            brain.zscore("synthetic").expect("z-score");
            (syn.features, brain)
        }
    };
    println!("synthetic data: {:.1} s{}", t.elapsed().as_secs_f64(), if cached.is_some() { " (read from the cache)" } else { "" });

    let config = MonitorConfig {
        fit: FitConfig { lr: 1e-2, batch_size: 16, ..FitConfig::default() },
        held_out_fraction: 0.1,
        refit_every: 0,
        refit_max_steps: refit_steps,
        refit_max_seconds: None,
        forgetting_threshold: 0.2,
        weighted: false,
        device: factortopy::engine::Device::Cpu,
    };
    // The reference encoder: the fast CPU trainer for `--ref-steps` optimiser steps at a time
    // until the held-out R² is positive (retention needs it); its quality does not change the
    // cost of an observation.
    let t = Instant::now();
    let (encoder, record, steps) = match cached {
        Some(d) => {
            let (encoder, record) = load_encoder(&d.join("encoder.safetensors")).expect("cached encoder");
            let steps = record.summary.as_ref().map(|s| s.steps).unwrap_or(0);
            (encoder, record, steps)
        }
        None => {
            let cfg = FitConfig { max_steps: Some(ref_steps), val_fraction: config.held_out_fraction, ..config.fit.clone() };
            let FitStart { prepared, bt, encoder, split } = FitStart::new(&reference, &brain, &cfg).expect("fit start");
            let mut trainer = FastCpuTrainer::new(&encoder, &prepared, &bt, &cfg).expect("trainer");
            let order: Vec<usize> = split.train.iter().cycle().take(20 * ref_steps * cfg.batch_size).copied().collect();
            trainer.set_order(&order).expect("order");
            let val_target: Vec<f32> = split
                .val
                .iter()
                .flat_map(|&i| brain.responses.data[i * v..(i + 1) * v].iter().copied())
                .collect();
            let mut steps = 0usize;
            let summary = loop {
                for _ in 0..ref_steps {
                    trainer.step(steps * cfg.batch_size, cfg.batch_size, steps).expect("reference step");
                    steps += 1;
                }
                let pred = trainer.predict(&split.val).expect("predict");
                let r2 = r2_per_voxel(&pred, &val_target, split.val.len(), v);
                let mean = r2.iter().map(|&x| x as f64).sum::<f64>() / v as f64;
                println!("  reference fit: {steps} steps, held-out R² {mean:.4}");
                if mean > 0.005 || steps >= 20 * ref_steps {
                    break FitSummary {
                        seed: cfg.seed,
                        n_train: split.train.len(),
                        n_val: split.val.len(),
                        epochs_run: 1,
                        best_epoch: 1,
                        best_val_r2: mean,
                        steps,
                    };
                }
            };
            trainer.write_current_into(&encoder).expect("parameters");
            drop(trainer);
            drop(prepared);
            drop(bt);
            let record = FitRecord { val_fraction: cfg.val_fraction, summary: Some(summary), coords: None };
            (encoder, record, steps)
        }
    };
    if let (Some(d), None) = (&cache, cached) {
        std::fs::create_dir_all(d).expect("cache folder");
        reference.save(&d.join("features.safetensors")).expect("cache features");
        brain.save(&d.join("brain.safetensors")).expect("cache brain");
        save_encoder(&d.join("encoder.safetensors"), &encoder, &record).expect("cache encoder");
    }
    let fit_s = t.elapsed().as_secs_f64();
    let mut monitor = Monitor::with_encoder(&brain, &reference, encoder, record, config).expect("monitor");
    println!(
        "reference encoder: {steps} steps in {fit_s:.1} s, held-out R² {:.4} on {} images",
        monitor.reference_r2(),
        monitor.held_out().len()
    );

    let x = perturbed(&reference, 0.5, 1);
    // Warm-up (allocator, thread pool), not timed.
    monitor.observe(0, &reference).expect("observe");

    let mut plain = Vec::new();
    let mut plain_cpu = Vec::new();
    for r in 0..repeats {
        let (t, c) = (Instant::now(), cpu_seconds());
        let rep = monitor.observe(1 + r as u64, &x).expect("observe");
        plain.push(t.elapsed().as_secs_f64());
        plain_cpu.push(cpu_seconds() - c);
        assert!(rep.refit.is_none());
    }
    let obs = median(plain.clone());
    let obs_cpu = median(plain_cpu);

    // The parts of an observation, each alone (median wall and CPU time over the repeats):
    // what `Monitor::observe` does, through the same public functions.
    let held_out = monitor.held_out().to_vec();
    let spec = monitor.encoder().spec.clone();
    let bt = BrainTensors::new(&brain, Some(spec.coord_norm)).expect("positional encoding");
    let predictor = Predictor::new(monitor.encoder(), &bt.pe, factortopy::engine::Device::Cpu).expect("predictor");
    let prepared = PreparedFeatures::for_images(&x, &held_out, &spec).expect("prepare");
    let mut refilled = prepared.clone();
    let ref_stats: Vec<GramStats> = (0..l).map(|i| GramStats::new(&reference.global(i)).unwrap()).collect();
    let part = |f: &mut dyn FnMut()| {
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            let (t, c) = (Instant::now(), cpu_seconds());
            f();
            wall.push(t.elapsed().as_secs_f64());
            cpu.push(cpu_seconds() - c);
        }
        (median(wall), median(cpu))
    };
    let parts = [
        ("finite check of what it reads", part(&mut || x.validate_images("features", Some(&held_out)).expect("valid"))),
        ("resampling the held-out images", part(&mut || refilled.refill(&x, &held_out).expect("refill"))),
        ("alignment + readout (prediction)", part(&mut || drop(std::hint::black_box(predictor.predict_all(&prepared).expect("predict"))))),
        (
            "CKA (all images' global tokens)",
            part(&mut || drop(std::hint::black_box(layer_cka(&ref_stats, &x).expect("CKA")))),
        ),
    ];
    // What the resampling cost before the monitor kept its buffers (page faults included).
    let fresh = part(&mut || drop(std::hint::black_box(PreparedFeatures::for_images(&x, &held_out, &spec).expect("prepare"))));

    // Input validation of every value (what observe no longer does without a refit).
    let mut check_times = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        x.validate("features").expect("valid");
        check_times.push(t.elapsed().as_secs_f64());
    }
    let check = median(check_times);

    println!();
    println!("observe without refit   {:>9.1} ms  (median of {repeats}; all: {:?})", 1e3 * obs, ms(&plain));
    println!(
        "  CPU time {:.1} ms over {threads} threads: {:.1} ms of wall time on {threads} idle cores \
         (load average now {})",
        1e3 * obs_cpu,
        1e3 * obs_cpu / threads as f64,
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').next().unwrap_or("?")
    );
    println!("  input check of all values (observe checks only the held-out images) {:>7.1} ms", 1e3 * check);
    for (name, (wall, cpu)) in &parts {
        println!("  {name:<36} {:>7.1} ms wall, {:>7.1} ms CPU", 1e3 * wall, 1e3 * cpu);
    }
    println!("  the rest (R², bookkeeping)           {:>7.1} ms wall", 1e3 * (obs - parts.iter().map(|p| p.1 .0).sum::<f64>()).max(0.0));
    println!("  (resampling into fresh memory          {:>7.1} ms wall, {:>7.1} ms CPU)", 1e3 * fresh.0, 1e3 * fresh.1);
    println!(
        "overhead of one observation every K = {k} steps of a {step_ms} ms training step: {:.2} %",
        100.0 * 1e3 * obs / (k as f64 * step_ms)
    );
    if refit_steps == 0 {
        return;
    }

    monitor.config_mut().refit_every = 1;
    let mut refits = Vec::new();
    for r in 0..repeats.min(3) {
        let t = Instant::now();
        let rep = monitor.observe(100 + r as u64, &x).expect("observe with refit");
        refits.push(t.elapsed().as_secs_f64());
        let f = rep.refit.expect("refit");
        assert_eq!(f.steps, refit_steps);
    }
    let with_refit = median(refits.clone());
    let refit_only = with_refit - obs;
    println!(
        "observe with refit      {:>9.1} ms  ({refit_steps} refit steps; median of {}; all: {:?})",
        1e3 * with_refit,
        refits.len(),
        ms(&refits)
    );
    println!("  refit alone           {:>9.1} ms  ({:.1} ms per refit step)", 1e3 * refit_only, 1e3 * refit_only / refit_steps as f64);
    println!();
    println!("overhead per training step, observing every K = {k} steps:");
    println!("  no refits                       {:>8.2} ms/step", 1e3 * obs / k as f64);
    println!(
        "  refit every {refit_every} observations        {:>8.2} ms/step",
        1e3 * (obs + refit_only / refit_every as f64) / k as f64
    );
    println!("  refit at every observation      {:>8.2} ms/step", 1e3 * with_refit / k as f64);
}

fn ms(xs: &[f64]) -> Vec<String> {
    xs.iter().map(|x| format!("{:.0}", 1e3 * x)).collect()
}
