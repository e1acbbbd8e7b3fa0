//! Memory at scale, as a user meets it: a 16-bit features file is fitted, scored and predicted
//! in memory close to the size of its files (not the four to five times an f32 decode of the
//! whole file took), and a command that would not fit in the memory it is given stops before
//! allocating, with one line saying what it needs, what is available and what would help.

use std::path::Path;
use std::process::Output;

use factortopy::data::{Array, Brain};
use half::f16;
use safetensors::{serialize_to_file, tensor::TensorView, Dtype};

use crate::common::cli::{bin, s, stdout_ok};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = bin();
    c.args(args).env_remove(factortopy::engine::memory::LIMIT_VAR);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run factortopy")
}

/// A cheap deterministic value stream in [-1, 1).
fn values(seed: u64, n: usize) -> impl Iterator<Item = f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

/// Writes an f16 features file of `n` images and `layers` layers of `c` channels at 8×8 with
/// global tokens (what the Python collector writes), and a brain of `v` voxels on a sheet.
fn write_inputs(dir: &Path, n: usize, layers: usize, c: usize, v: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let bytes = |vals: Vec<f32>| -> Vec<u8> { vals.into_iter().flat_map(|x| f16::from_f32(x).to_le_bytes()).collect() };
    let mut data = Vec::new();
    for l in 0..layers {
        data.push((format!("layers.{l}.local"), vec![n, c, 8, 8], bytes(values(2 * l as u64 + 1, n * c * 64).collect())));
        data.push((format!("layers.{l}.global"), vec![n, c], bytes(values(2 * l as u64 + 2, n * c).collect())));
    }
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(name, shape, b)| (name.clone(), TensorView::new(Dtype::F16, shape.clone(), b).unwrap()))
        .collect();
    let features = dir.join("features.safetensors");
    let meta = std::collections::HashMap::from([("model".to_string(), "random16".to_string())]);
    serialize_to_file(views, Some(meta), &features).unwrap();
    drop(data);
    let side = (v as f64).sqrt().ceil() as usize;
    let coords: Vec<f32> = (0..v).flat_map(|i| [(i % side) as f32, (i / side) as f32, ((i * 7) % 5) as f32]).collect();
    let brain = Brain {
        responses: Array::new(vec![n, v], values(99, n * v).collect()).unwrap().into(),
        coords: Array::new(vec![v, 3], coords).unwrap(),
        roi: (0..v).map(|i| (i % 5) as i32).collect(),
        noise_ceiling: None,
        flat: None,
        hemisphere: None,
        roi_names: ["V1", "V2", "V3", "hV4", "higher"].map(String::from).to_vec(),
        roi_levels: vec![0, 1, 2, 3, 4],
        stimulus_ids: None,
        subject: None,
    };
    let brain_path = dir.join("brain.safetensors");
    brain.save(&brain_path).unwrap();
    (features, brain_path)
}

/// The peak resident memory the command printed, in bytes.
fn peak(o: &Output) -> u64 {
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err.lines().find(|l| l.starts_with("peak memory:")).unwrap_or_else(|| panic!("no peak line in {err}"));
    let gib: f64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    (gib * (1u64 << 30) as f64) as u64
}

#[test]
fn sixteen_bit_features_are_fitted_in_about_their_file_size() {
    let dir = tempfile::tempdir().unwrap();
    // 900 images × 8 layers × 256 channels × 65 tokens in f16: 240 MB of features, 4 times that
    // once decoded to f32 and copied the way the whole-file loader did.
    let (features, brain) = write_inputs(dir.path(), 900, 8, 256, 1500);
    let files = std::fs::metadata(&features).unwrap().len() + std::fs::metadata(&brain).unwrap().len();
    let out = dir.path().join("fit");
    let fit = [
        "fit", "--features", s(&features), "--brain", s(&brain), "--out", s(&out), "--epochs", "1", "--no-plots",
    ];
    let o = run(&fit, &[]);
    assert!(o.status.success(), "fit failed: {}", String::from_utf8_lossy(&o.stderr));
    let p = peak(&o);
    eprintln!("fit: peak {:.3} GiB for {:.3} GiB of input files", p as f64 / 2f64.powi(30), files as f64 / 2f64.powi(30));
    // The prepared features take the file's bytes; the rest is the trainer and the process.
    assert!(p < files + files / 5 + (160 << 20), "fit peak {p} bytes for {files} bytes of files");

    let enc = out.join("encoder.safetensors");
    let o = run(&["score", "--encoder", s(&enc), "--features", s(&features), "--brain", s(&brain), "--out", s(&dir.path().join("r.json"))], &[]);
    assert!(o.status.success(), "score failed: {}", String::from_utf8_lossy(&o.stderr));
    // The held-out images are read, then the layer margins' sample: up to 1,000 training and
    // 500 held-out images, here all 900 (at a whole subject's 9,841, 15 % of them).
    assert!(peak(&o) < files + files / 5 + (160 << 20), "score peak {} bytes", peak(&o));
    let pred = dir.path().join("pred.safetensors");
    let o = run(&["predict", "--encoder", s(&enc), "--features", s(&features), "--out", s(&pred)], &[]);
    assert!(o.status.success(), "predict failed: {}", String::from_utf8_lossy(&o.stderr));
    // A block of images at a time, plus the predictions and the file written from them.
    assert!(peak(&o) < files / 2 + (160 << 20), "predict peak {} bytes", peak(&o));

    // A 16-bit store of the same features gives the same report as the file's own precision.
    let out16 = dir.path().join("fit16");
    let mut again = fit.to_vec();
    again[6] = s(&out16);
    again.extend(["--store", "f16", "--quiet"]);
    let o = run(&again, &[]);
    stdout_ok(&o);
    assert_eq!(std::fs::read(out.join("report.json")).unwrap(), std::fs::read(out16.join("report.json")).unwrap());
}

#[test]
fn commands_that_would_not_fit_stop_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let (features, brain) = write_inputs(dir.path(), 60, 2, 16, 40);
    let out = dir.path().join("fit");
    let tiny = [(factortopy::engine::memory::LIMIT_VAR, "1M")];
    for method in ["factortopy", "ridge"] {
        let o = run(
            &["fit", "--features", s(&features), "--brain", s(&brain), "--out", s(&out), "--method", method, "--quiet"],
            &tiny,
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{method}: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");
        assert!(err.contains("needs about") && err.contains("available") && err.contains("FACTORTOPY_MEMORY_LIMIT"), "{err}");
        assert!(!out.exists(), "{method}: a refused fit left {out:?} behind");
    }
    let err = String::from_utf8_lossy(
        &run(&["fit", "--features", s(&features), "--brain", s(&brain), "--out", s(&out), "--quiet"], &tiny).stderr,
    )
    .into_owned();
    assert!(err.contains("--grid") && err.contains("fewer layers"), "{err}");
    // With room, the same command runs.
    let o = run(
        &["fit", "--features", s(&features), "--brain", s(&brain), "--out", s(&out), "--epochs", "1", "--quiet", "--no-plots"],
        &[(factortopy::engine::memory::LIMIT_VAR, "8G")],
    );
    stdout_ok(&o);
    let enc = out.join("encoder.safetensors");
    for args in [
        vec!["score", "--encoder", s(&enc), "--features", s(&features), "--brain", s(&brain)],
        vec!["predict", "--encoder", s(&enc), "--features", s(&features), "--out", s(&dir.path().join("p.safetensors"))],
    ] {
        let o = run(&args, &tiny);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{}: {err}", args[0]);
        assert!(err.contains(&format!("{} needs about", args[0])), "{err}");
    }
    assert!(!dir.path().join("p.safetensors").exists());
}
