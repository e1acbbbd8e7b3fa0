//! Time per optimiser step (forward, backward, clipped AdamW) of the fast CPU trainer against
//! PyTorch eager on the same model (`benches/torch_reference.py`), same machine, same threads,
//! in one run; the candle-autograd trainer is printed beside them. Default sizes: the
//! core size N 1000, V 5000, L 12 × 256, G 8, D 128, B 8, and 800 images × 4,000 voxels × 6
//! layers (the probe-set size of the default-fit benchmark).
//!
//! Usage: `cargo bench --bench fit_epoch -- [--steps S --torch-steps T --candle-steps K
//! --engines fast,candle,torch --images N --voxels V --layers L --width C --batch B]`.
//! With `--images` etc. only that one size runs. Each engine runs in its own process so that
//! its peak resident memory is its own: the high-water mark is reset (`/proc/self/clear_refs`)
//! once the features are prepared, so it covers the training only; the raw features are
//! dropped first and the resampled ones are kept (the feature set a fit holds).
//! PyTorch comes from `$FACTORTOPY_TORCH_PYTHON`, else `target/ci-venv` or `target/torch-venv`,
//! else `python3`; its threads are set to rayon's thread count.

use factortopy::engine::fast_cpu::FastCpuTrainer;
use factortopy::engine::Trainer;
use factortopy::engine::candle_cpu::{train_step, TrainState};
use factortopy::model::FitStart;
use factortopy::model::FitConfig;
use factortopy::synth::{generate, Scenario, SynthConfig};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn arg(args: &[String], name: &str) -> Option<usize> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

fn status_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[derive(Debug, Clone, Copy)]
struct Size {
    n: usize,
    v: usize,
    l: usize,
    c: usize,
    b: usize,
}

/// One engine at one size, in this process; prints `RESULT ms_per_step=.. peak_rss_mib=..
/// features_mib=..`.
fn child(engine: &str, s: Size, steps: usize) {
    let cfg = FitConfig { batch_size: s.b, ..FitConfig::default() };
    let syn = generate(&SynthConfig {
        scenario: Scenario::Hierarchical,
        n_images: s.n,
        n_voxels: s.v,
        n_layers: s.l,
        width: s.c,
        grid: cfg.grid,
        ..SynthConfig::default()
    })
    .expect("synthetic data");
    let mut brain = syn.brain;
    brain.zscore("synthetic").expect("z-score");
    let start = FitStart::new(&syn.features, &brain, &cfg).expect("fit start");
    drop(syn.features);
    let gg = cfg.grid * cfg.grid;
    let features_mib = start.prepared.widths().iter().map(|c| s.n * (gg + 1) * c * 4).sum::<usize>() as f64 / (1 << 20) as f64;
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let batches: Vec<&[usize]> = start.split.train.chunks(s.b).filter(|b| b.len() == s.b).collect();
    let warm = 3;
    let total = warm + steps;
    let mut secs = 0.0;
    match engine {
        "fast" => {
            let mut t = FastCpuTrainer::new(&start.encoder, &start.prepared, &start.bt, &cfg).expect("trainer");
            let order: Vec<usize> = (0..total).flat_map(|i| batches[i % batches.len()].iter().copied()).collect();
            t.set_order(&order).expect("order");
            for i in 0..total {
                if i == warm {
                    secs = -now();
                }
                t.step(i * s.b, s.b, i).expect("step");
            }
            secs += now();
        }
        _ => {
            let mut state = TrainState::new(&start.encoder, &cfg).expect("optimiser");
            for i in 0..total {
                if i == warm {
                    secs = -now();
                }
                train_step(&start.encoder, &start.prepared, &start.bt, batches[i % batches.len()], &cfg, i, &mut state)
                    .expect("step");
            }
            secs += now();
        }
    }
    println!(
        "RESULT ms_per_step={:.3} peak_rss_mib={:.1} features_mib={:.1} hwm_reset={reset}",
        1e3 * secs / steps as f64,
        status_mib("VmHWM:"),
        features_mib
    );
}

fn now() -> f64 {
    use std::sync::OnceLock;
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)).and_then(|x| x.parse().ok())
}

/// `(ms per step, peak RSS MiB, features MiB)` from a child's output, or why there is none.
fn parse(out: &str) -> Result<(f64, f64, f64), String> {
    let line = out.lines().find(|l| l.starts_with("RESULT") || l.starts_with("torch_step") || l.starts_with("SKIPPED"));
    match line {
        Some(l) if l.starts_with("SKIPPED") => Err(l.to_string()),
        Some(l) => Ok((
            field(l, "ms_per_step=").unwrap_or(f64::NAN),
            field(l, "peak_rss_mib=").unwrap_or(f64::NAN),
            field(l, "features_mib=").unwrap_or(f64::NAN),
        )),
        None => Err(format!("no result; output ends: {}", out.lines().rev().take(3).collect::<Vec<_>>().join(" | "))),
    }
}

fn torch_python() -> String {
    if let Ok(p) = std::env::var("FACTORTOPY_TORCH_PYTHON") {
        return p;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    for venv in ["target/ci-venv", "target/torch-venv"] {
        let p = Path::new(root).join(venv).join("bin/python");
        if p.exists() {
            return p.display().to_string();
        }
    }
    "python3".into()
}

fn run(cmd: &mut Command) -> Result<(f64, f64, f64), String> {
    match cmd.output() {
        Ok(o) => {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            parse(&text)
        }
        Err(e) => Err(format!("could not start: {e}")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads = rayon::current_num_threads();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let s = Size {
            n: arg(&args, "--images").unwrap(),
            v: arg(&args, "--voxels").unwrap(),
            l: arg(&args, "--layers").unwrap(),
            c: arg(&args, "--width").unwrap(),
            b: arg(&args, "--batch").unwrap(),
        };
        child(&args[i + 1], s, arg(&args, "--steps").unwrap());
        return;
    }
    let steps = arg(&args, "--steps").unwrap_or(30);
    let torch_steps = arg(&args, "--torch-steps").unwrap_or(10);
    let candle_steps = arg(&args, "--candle-steps").unwrap_or(10);
    let engines: Vec<String> = args
        .iter()
        .position(|a| a == "--engines")
        .and_then(|i| args.get(i + 1))
        .map(|e| e.split(',').map(String::from).collect())
        .unwrap_or_else(|| vec!["fast".into(), "candle".into(), "torch".into()]);
    let sizes = match arg(&args, "--images") {
        Some(n) => vec![Size {
            n,
            v: arg(&args, "--voxels").unwrap_or(5000),
            l: arg(&args, "--layers").unwrap_or(12),
            c: arg(&args, "--width").unwrap_or(256),
            b: arg(&args, "--batch").unwrap_or(8),
        }],
        None => vec![Size { n: 1000, v: 5000, l: 12, c: 256, b: 8 }, Size { n: 800, v: 4000, l: 6, c: 256, b: 8 }],
    };
    let exe = std::env::current_exe().expect("own path");
    let python = torch_python();
    println!("fit_epoch: {threads} threads (rayon; torch.set_num_threads({threads})), G 8, D 128; python {python}");
    for s in sizes {
        let dims = |cmd: &mut Command| {
            cmd.args(["--images", &s.n.to_string(), "--voxels", &s.v.to_string(), "--layers", &s.l.to_string()])
                .args(["--width", &s.c.to_string(), "--batch", &s.b.to_string()]);
        };
        println!("\nN {} V {} L {} x {} B {}:", s.n, s.v, s.l, s.c, s.b);
        // Per engine: (ms per step, peak RSS MiB, feature-set MiB) or why it failed.
        type Timing = Result<(f64, f64, f64), String>;
        let mut results: Vec<(String, Timing)> = Vec::new();
        for e in &engines {
            let r = match e.as_str() {
                "fast" | "candle" => {
                    let mut cmd = Command::new(&exe);
                    cmd.args(["--child", e, "--steps", &(if e == "fast" { steps } else { candle_steps }).to_string()]);
                    dims(&mut cmd);
                    run(&mut cmd)
                }
                "torch" => {
                    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/torch_reference.py");
                    let mut cmd = Command::new(&python);
                    cmd.arg(script).args(["--device", "cpu", "--threads", &threads.to_string()]);
                    cmd.args(["--steps", &torch_steps.to_string(), "--dim", "128", "--grid", "8"]);
                    dims(&mut cmd);
                    run(&mut cmd)
                }
                other => Err(format!("unknown engine {other}")),
            };
            results.push((e.clone(), r));
        }
        let fast_ms = results.iter().find(|(e, _)| e == "fast").and_then(|(_, r)| r.as_ref().ok()).map(|r| r.0);
        for (e, r) in &results {
            match r {
                Ok((ms, peak, feat)) => {
                    let ratio = match fast_ms {
                        Some(f) if e != "fast" => format!("  {:.1}x the fast trainer's time", ms / f),
                        _ => String::new(),
                    };
                    let mem = if feat.is_finite() {
                        format!("peak RSS {peak:.0} MiB = {:.2}x the {feat:.0} MiB feature set", peak / feat)
                    } else {
                        format!("peak RSS {peak:.0} MiB")
                    };
                    println!("  {e:<7} {ms:>9.1} ms/step  {mem}{ratio}");
                }
                Err(why) => println!("  {e:<7} not measured: {why}"),
            }
        }
    }
}
