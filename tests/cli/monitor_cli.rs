//! `factortopy monitor` end to end: synthetic reference features and three "checkpoints" with
//! growing noise, replayed by the CLI; history.jsonl has one object per observation with the
//! required keys and rising forgetting, and the curves are written as PNG.

use std::path::{Path, PathBuf};
use std::process::Command;

use factortopy::data::Features;
use factortopy::rng::Rng;
use factortopy::synth::{generate, SynthConfig};

use crate::common::cli::bin;

fn noisy(f: &Features, sigma: f32, seed: u64) -> Features {
    let mut out = f.clone();
    let mut rng = Rng::new(seed);
    for l in &mut out.layers {
        l.local.data.iter_mut().for_each(|x| *x += sigma * rng.normal() as f32);
        if let Some(g) = &mut l.global {
            g.data.iter_mut().for_each(|x| *x += sigma * rng.normal() as f32);
        }
    }
    out
}

/// `factortopy monitor` of `ckpts` against the brain and reference features in `dir`.
fn monitor(dir: &Path, out: &Path, ckpts: &[PathBuf]) -> Command {
    let mut c = bin();
    c.arg("monitor").arg("--brain").arg(dir.join("brain.safetensors"));
    c.arg("--reference").arg(dir.join("features.safetensors")).arg("--out").arg(out).args(ckpts);
    c
}

fn is_png(p: &Path) -> bool {
    std::fs::read(p).map(|b| b.starts_with(b"\x89PNG\r\n\x1a\n")).unwrap_or(false)
}

#[test]
fn monitor_replays_checkpoints_and_writes_history_and_curves() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(&SynthConfig {
        n_images: 200,
        n_voxels: 120,
        n_layers: 3,
        width: 8,
        grid: 3,
        noise_ceiling: 0.9,
        seed: 2,
        ..SynthConfig::default()
    })
    .unwrap();
    factortopy::synth::write(dir.path(), &data).unwrap();
    let mut ckpts = Vec::new();
    for (k, sigma) in [0.3f32, 0.8, 2.0].into_iter().enumerate() {
        let p = dir.path().join(format!("ckpt{k}.safetensors"));
        noisy(&data.features, sigma, k as u64).save(&p).unwrap();
        ckpts.push(p);
    }
    let out = dir.path().join("out");
    let res = monitor(dir.path(), &out, &ckpts)
        .args(["--steps", "100,200,300", "--refit-every", "2", "--refit-steps", "5", "--threshold", "0.25"])
        .args(["--epochs", "10", "--batch-size", "8", "--lr", "0.01", "--dim", "8", "--grid", "3", "--val-fraction", "0.2"])
        .args(["--reg-steps", "50", "--quiet"])
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&res.stdout), String::from_utf8_lossy(&res.stderr));
    assert!(res.status.success(), "{log}");

    let text = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 4, "{text}");
    let steps: Vec<u64> = rows.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 100, 200, 300]);
    let mut last = -1.0;
    for r in &rows {
        for k in ["step", "retention", "forgetting", "cka", "should_stop", "drift", "rois"] {
            assert!(r.get(k).is_some(), "{k} missing: {r}");
        }
        let f = r["forgetting"].as_f64().unwrap();
        assert!(f > last, "forgetting not rising: {text}");
        last = f;
        assert_eq!(r["cka"].as_array().unwrap().len(), 3);
    }
    assert_eq!(rows[0]["retention"].as_f64().unwrap(), 1.0);
    assert!(rows[1]["refit"].is_object() && rows[3]["refit"].is_object() && rows[2]["refit"].is_null());
    assert!(rows[3]["should_stop"].as_bool().unwrap());
    assert!(is_png(&out.join("forgetting.png")) && is_png(&out.join("cka.png")));
    assert!(out.join("monitor.safetensors").exists());
    assert!(log.contains("retention"), "{log}");

    // Wrong number of --steps is a one-line error with a non-zero status.
    let res = monitor(dir.path(), &out, &ckpts)
        .args(["--steps", "1,2"])
        .output()
        .unwrap();
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("--steps"));
}
