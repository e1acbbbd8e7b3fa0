//! The one fit engine: every entry point reaches it with the device it was given, a
//! device that cannot be used is a one-line error before any work, `--device cpu` changes
//! nothing, and `predict` agrees with the engine's own validation predictions.

use crate::common::cli::{run, s, stdout_ok};
use crate::common::planted;
use factortopy::data::safetensors_io::TensorFile;
use factortopy::engine::{Device, Estimator, Method};
use factortopy::model::encoder_file::load_encoder;
use factortopy::model::FitConfig;
use factortopy::stats::r2_per_voxel;
use factortopy::synth::{Scenario, SynthConfig};
use std::path::Path;

/// A CUDA device that cannot be used here: any ordinal without the `cuda` feature, an absurd
/// one with it.
fn unusable_cuda() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda:1000000"
    } else {
        "cuda:0"
    }
}

fn small() -> SynthConfig {
    SynthConfig {
        scenario: Scenario::Hierarchical,
        n_images: 200,
        n_voxels: 120,
        n_layers: 3,
        width: 8,
        grid: 4,
        seed: 7,
        ..SynthConfig::default()
    }
}

fn small_fit() -> FitConfig {
    FitConfig { d: 16, grid: 4, max_epochs: 3, val_fraction: 0.2, ..FitConfig::fast() }
}

/// Writes the small synthetic data set, fits it once on the CPU with the CLI and returns
/// (features, brain, fit dir).
fn fitted(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let data = tmp.join("data");
    let o = run(&[
        "synth", "--out", s(&data), "--images", "200", "--voxels", "120", "--layers", "3", "--width", "8", "--grid",
        "4", "--seed", "7",
    ]);
    stdout_ok(&o);
    let (f, b) = (data.join("features.safetensors"), data.join("brain.safetensors"));
    let out = tmp.join("fit");
    let o = run(&[
        "fit", "--features", s(&f), "--brain", s(&b), "--out", s(&out), "--preset", "fast", "--grid", "4", "--dim",
        "16", "--epochs", "3", "--quiet",
    ]);
    stdout_ok(&o);
    (f, b, out)
}

#[test]
fn every_cli_command_refuses_an_unusable_device_in_one_line_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let (f, b, fit_dir) = fitted(tmp.path());
    let enc = fit_dir.join("encoder.safetensors");
    let dev = unusable_cuda();
    let fresh = |name: &str| tmp.path().join(name);
    let commands: Vec<(&str, Vec<String>, std::path::PathBuf)> = vec![
        ("fit", vec!["fit", "--features", s(&f), "--brain", s(&b), "--out", s(&fresh("f"))], fresh("f")),
        ("score", vec!["score", "--encoder", s(&enc), "--features", s(&f), "--brain", s(&b), "--out", s(&fresh("s.json"))], fresh("s.json")),
        ("predict", vec!["predict", "--encoder", s(&enc), "--features", s(&f), "--out", s(&fresh("p.safetensors"))], fresh("p.safetensors")),
        ("rank", vec!["rank", "--brain", s(&b), s(&f), "--out", s(&fresh("r"))], fresh("r")),
        ("monitor", vec!["monitor", "--brain", s(&b), "--reference", s(&f), "--out", s(&fresh("m")), s(&f)], fresh("m")),
    ]
    .into_iter()
    .map(|(n, a, p)| (n, a.into_iter().map(String::from).collect(), p))
    .collect();
    for (name, mut args, output) in commands {
        args.extend(["--device".to_string(), dev.to_string()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&refs);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name} --device {dev}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line, got {err:?}");
        assert!(err.starts_with("error: cuda: "), "{name}: {err}");
        assert!(!output.exists(), "{name} created {} before failing", output.display());
    }
    // A device name that is not one is a one-line error too.
    let o = run(&["score", "--encoder", s(&enc), "--features", s(&f), "--brain", s(&b), "--device", "gpu"]);
    assert_ne!(o.status.code(), Some(0));
}

#[test]
fn device_cpu_is_the_default_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let (f, b, fit_dir) = fitted(tmp.path());
    let out = tmp.path().join("cpu");
    let o = run(&[
        "fit", "--features", s(&f), "--brain", s(&b), "--out", s(&out), "--preset", "fast", "--grid", "4", "--dim",
        "16", "--epochs", "3", "--quiet", "--device", "cpu",
    ]);
    stdout_ok(&o);
    for file in ["report.json", "encoder.safetensors", "selectors.safetensors"] {
        assert_eq!(std::fs::read(out.join(file)).unwrap(), std::fs::read(fit_dir.join(file)).unwrap(), "{file}");
    }
}

/// `predict` (library and CLI) reproduces the predictions behind the fit's own held-out scores.
#[test]
fn predict_agrees_with_the_fits_validation_predictions() {
    let (syn, brain) = planted(&small());
    let est = Estimator::new(Method::Factortopy, Device::Cpu, small_fit());
    let job = est.fit(&syn.features, &brain, None).unwrap().into_encoder_fit().unwrap();
    let pred = est.predict(&job.outcome.encoder, &brain.coords, &syn.features).unwrap();
    assert_eq!(pred.shape, vec![200, 120]);
    let v = brain.n_voxels();
    let val = &job.outcome.split.val;
    let rows = |data: &[f32]| -> Vec<f32> { val.iter().flat_map(|&i| data[i * v..(i + 1) * v].to_vec()).collect() };
    let r2 = r2_per_voxel(&rows(&pred.data), &rows(&brain.responses.data), val.len(), v);
    // Equal up to the summation order of chunked products (the fit predicts the held-out images
    // alone, predict all images).
    for (k, (a, b)) in r2.iter().zip(&job.outcome.val_r2).enumerate() {
        assert!((a - b).abs() < 1e-5, "voxel {k}: predict's held-out R² {a} vs the fit's {b}");
    }

    // Through the saved encoder (which carries the voxel coordinates) and the CLI.
    let tmp = tempfile::tempdir().unwrap();
    factortopy::pipeline::write_fit_outputs(tmp.path(), &job, &brain).unwrap();
    let enc = tmp.path().join("encoder.safetensors");
    let (enc_loaded, record) = load_encoder(&enc).unwrap();
    assert_eq!(record.coords.as_ref(), Some(&brain.coords));
    let again = est.predict(&enc_loaded, record.coords.as_ref().unwrap(), &syn.features).unwrap();
    assert_eq!(again.data, pred.data);
    let feats = tmp.path().join("features.safetensors");
    syn.features.save(&feats).unwrap();
    let out = tmp.path().join("pred.safetensors");
    let o = run(&["predict", "--encoder", s(&enc), "--features", s(&feats), "--out", s(&out)]);
    stdout_ok(&o);
    let file = TensorFile::open(&out).unwrap();
    let p = file.f32("predictions").unwrap();
    assert_eq!(p.shape, vec![200, 120]);
    assert_eq!(p.data, pred.data);
    assert_eq!(file.metadata().get("model"), Some(&syn.features.model));
}

#[test]
fn predict_refuses_mismatched_inputs_with_clear_errors() {
    let (syn, brain) = planted(&small());
    let est = Estimator::new(Method::Factortopy, Device::Cpu, small_fit());
    let job = est.fit(&syn.features, &brain, None).unwrap().into_encoder_fit().unwrap();
    let enc = &job.outcome.encoder;
    let mut fewer = syn.features.clone();
    fewer.layers.pop();
    fewer.layer_names.pop();
    let e = est.predict(enc, &brain.coords, &fewer).unwrap_err().to_string();
    assert!(e.contains("widths"), "{e}");
    let short = factortopy::data::Array::new(vec![2, 3], vec![0.0; 6]).unwrap();
    let e = est.predict(enc, &short, &syn.features).unwrap_err().to_string();
    assert!(e.contains("voxel coordinates"), "{e}");
    let ridge = Estimator { method: Method::Ridge, device: Device::Cuda(0), ..est.clone() };
    assert!(ridge.validate().is_err());
}

#[test]
fn methods_have_one_name_each() {
    for m in Method::ALL {
        assert_eq!(m.name().parse::<Method>().unwrap(), m);
        assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{}\"", m.name()));
    }
    assert!("lasso".parse::<Method>().is_err());
}
