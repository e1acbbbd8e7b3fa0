// Ridge with cross-validated penalties against himalaya's numpy backend, in the same run and
// with the same thread count.
//
// Defaults are those of himalaya's own `benchmarks/benchmark_backends.py`: 3000 samples (the
// first 80 % fit, the rest predicted), 1000 features, 30000 targets, 20 penalties
// `logspace(-3, 20)`, 3 folds, float32 data `Y = X·W + 0.5·noise`, targets in batches of 5000
// for himalaya. The Rust side generates the data and writes it as .npy; `benches/ridge_himalaya.py`
// fits himalaya's `RidgeCV` on the same arrays and writes its choices and predictions back, so
// the run reports both wall times, the ratio, how many chosen penalties agree and how far the
// predictions are apart.
//
//   cargo bench --bench ridge -- [--samples N] [--features P] [--targets T] [--alphas K]
//       [--folds F] [--threads N] [--python PATH] [--rust-only] [--quick]
//
// The Python interpreter defaults to `target/himalaya-venv/bin/python` (made by
// `tests/himalaya/run.sh`); with none available only the Rust timing is printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use factortopy::baseline::ridge::{logspace, ridge_cv, Folds, RidgeCv};
use factortopy::data::{read_npy, write_npy, Array};
use factortopy::rng::Rng;

struct Args {
    samples: usize,
    features: usize,
    targets: usize,
    alphas: usize,
    folds: usize,
    threads: usize,
    python: Option<PathBuf>,
    rust_only: bool,
}

fn parse() -> Args {
    let mut a = Args {
        samples: 3000,
        features: 1000,
        targets: 30000,
        alphas: 20,
        folds: 3,
        threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        python: None,
        rust_only: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let num = |i: usize| -> usize {
        argv.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{} needs a number", argv[i]))
    };
    while i < argv.len() {
        match argv[i].as_str() {
            "--samples" => a.samples = num(i),
            "--features" => a.features = num(i),
            "--targets" => a.targets = num(i),
            "--alphas" => a.alphas = num(i),
            "--folds" => a.folds = num(i),
            "--threads" => a.threads = num(i),
            "--python" => a.python = Some(PathBuf::from(&argv[i + 1])),
            "--rust-only" => {
                a.rust_only = true;
                i += 1;
                continue;
            }
            "--quick" => {
                (a.samples, a.features, a.targets) = (600, 200, 2000);
                i += 1;
                continue;
            }
            // `cargo bench` passes --bench to every bench binary.
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// CPU seconds (user + system, all threads) used by this process so far.
fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn randn(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

fn main() {
    let args = parse();
    rayon::ThreadPoolBuilder::new().num_threads(args.threads).build_global().ok();
    let (n, p, t) = (args.samples, args.features, args.targets);
    let n_train = (0.8 * n as f64) as usize;
    let n_test = n - n_train;
    println!(
        "ridge CV benchmark: {n} samples ({n_train} fit, {n_test} predicted), {p} features, {t} targets, \
         {} alphas, {} folds, {} threads",
        args.alphas, args.folds, args.threads
    );

    // Data as in himalaya's benchmark (f32): Y = X·W + 0.5·noise.
    let t0 = Instant::now();
    let mut rng = Rng::new(42);
    let x = randn(&mut rng, n * p);
    let w = randn(&mut rng, p * t);
    let mut y = vec![0.0f32; n * t];
    {
        use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};
        matmul(
            MatMut::from_column_major_slice_mut(&mut y, t, n).transpose_mut(),
            Accum::Replace,
            MatRef::from_row_major_slice(&x, n, p),
            MatRef::from_row_major_slice(&w, p, t),
            1.0f32,
            Par::rayon(0),
        );
        use rayon::prelude::*;
        y.par_chunks_mut(t).enumerate().for_each(|(i, row)| {
            let mut r = Rng::derive(42, &format!("noise{i}"));
            row.iter_mut().for_each(|v| *v += 0.5 * r.normal() as f32);
        });
    }
    drop(w);
    let alphas: Vec<f64> = logspace(-3.0, 20.0, args.alphas).iter().map(|&a| a as f32 as f64).collect();
    let xtr = Array::new(vec![n_train, p], x[..n_train * p].to_vec()).unwrap();
    let xte = x[n_train * p..].to_vec();
    let ytr = Array::new(vec![n_train, t], y[..n_train * t].to_vec()).unwrap();
    let yte = y[n_train * t..].to_vec();
    drop((x, y));
    println!("data generated in {:.1} s", t0.elapsed().as_secs_f64());

    let cfg = RidgeCv { alphas: alphas.clone(), folds: Folds::KFold(args.folds), fit_intercept: false, n_targets_batch: 0 };
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let fit = ridge_cv(&xtr, &ytr, &cfg).expect("ridge_cv");
    let rust_fit = t0.elapsed().as_secs_f64();
    let rust_cpu = cpu_seconds() - c0;
    let t0 = Instant::now();
    let pred = fit.predict(&xte, n_test).expect("predict");
    let rust_pred = t0.elapsed().as_secs_f64();
    let r2: f64 = {
        let r = factortopy::scores::stats::r2_per_voxel(&pred, &yte, n_test, t);
        r.iter().map(|&v| v as f64).sum::<f64>() / t as f64
    };
    println!(
        "rust     fit {rust_fit:8.2} s   predict {rust_pred:6.2} s   total {:8.2} s   fit CPU {rust_cpu:8.2} s   (mean test R² {r2:.4})",
        rust_fit + rust_pred
    );

    if args.rust_only {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = args.python.clone().unwrap_or_else(|| root.join("target/himalaya-venv/bin/python"));
    if !python.exists() {
        println!(
            "himalaya: skipped ({} not found; run tests/himalaya/run.sh first or pass --python)",
            python.display()
        );
        return;
    }
    let dir = root.join("target/ridge-bench");
    std::fs::create_dir_all(&dir).unwrap();
    write_npy(&dir.join("x_train.npy"), &xtr).unwrap();
    write_npy(&dir.join("y_train.npy"), &ytr).unwrap();
    write_npy(&dir.join("x_test.npy"), &Array::new(vec![n_test, p], xte).unwrap()).unwrap();
    let alpha_arr = Array::new(vec![alphas.len()], alphas.iter().map(|&a| a as f32).collect()).unwrap();
    write_npy(&dir.join("alphas.npy"), &alpha_arr).unwrap();
    drop((xtr, ytr));
    let threads = args.threads.to_string();
    let status = Command::new(&python)
        .arg(root.join("benches/ridge_himalaya.py"))
        .arg(&dir)
        .arg(args.folds.to_string())
        .env("OPENBLAS_NUM_THREADS", &threads)
        .env("OMP_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads)
        .status()
        .expect("run himalaya");
    assert!(status.success(), "benches/ridge_himalaya.py failed");
    let timing: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("himalaya_timing.json")).unwrap()).unwrap();
    let (h_fit, h_pred) = (timing["fit"].as_f64().unwrap(), timing["predict"].as_f64().unwrap());
    let h_cpu = timing["fit_cpu"].as_f64().unwrap_or(f64::NAN);
    println!(
        "himalaya fit {h_fit:8.2} s   predict {h_pred:6.2} s   total {:8.2} s   fit CPU {h_cpu:8.2} s   ({} {}, numpy backend)",
        h_fit + h_pred,
        timing["himalaya"].as_str().unwrap_or("?"),
        timing["numpy"].as_str().unwrap_or("?")
    );
    println!(
        "ratio (himalaya / rust): fit wall {:.2}×   total wall {:.2}×   fit CPU {:.2}×",
        h_fit / rust_fit,
        (h_fit + h_pred) / (rust_fit + rust_pred),
        h_cpu / rust_cpu
    );

    // Same answers?
    let h_alpha = read_npy(&dir.join("himalaya_best_alphas.npy")).unwrap().data;
    let h_pred = read_npy(&dir.join("himalaya_pred.npy")).unwrap().data;
    let same = (0..t)
        .filter(|&j| ((h_alpha[j] as f64 - fit.best_alphas[j]) / fit.best_alphas[j]).abs() < 1e-5)
        .count();
    let mut worst = 0.0f64;
    let mut worst_same = 0.0f64;
    for j in 0..t {
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for i in 0..n_test {
            let (a, b) = (pred[i * t + j] as f64, h_pred[i * t + j] as f64);
            num += (a - b).powi(2);
            den += b * b;
        }
        let rel = (num / den.max(1e-30)).sqrt();
        worst = worst.max(rel);
        if ((h_alpha[j] as f64 - fit.best_alphas[j]) / fit.best_alphas[j]).abs() < 1e-5 {
            worst_same = worst_same.max(rel);
        }
    }
    println!(
        "agreement: same alpha for {same}/{t} targets ({:.2} %); prediction relative L2 difference: \
         max {worst:.2e} over all targets, {worst_same:.2e} over targets with the same alpha",
        100.0 * same as f64 / t as f64
    );
}
