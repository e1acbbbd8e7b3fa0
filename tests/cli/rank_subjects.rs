// `factortopy rank` over several subjects: two subjects planted on the same features (the
// second with `synth --from-features`), three networks (the original, its layers reversed, and
// every layer equal to the first). The ranking over subjects must carry per-subject rows and an
// interval over subjects, put the original first and the reversed last, give the same JSON in
// worker processes as in one process, and resume an interrupted grid without refitting the
// pairs it finished.

use std::path::{Path, PathBuf};
use std::process::Output;

use factortopy::data::Features;
use factortopy::synth::{generate, Scenario, SynthConfig};

use crate::common::cli::{bin, stdout_ok};

fn with_layers(f: &Features, order: &[usize], name: &str) -> Features {
    Features {
        model: name.to_string(),
        layer_names: order.iter().map(|&i| format!("{}@{i}", f.layer_names[i])).collect(),
        stimulus_ids: f.stimulus_ids.clone(),
        layers: order.iter().map(|&i| f.layers[i].clone()).collect(),
    }
}

struct Setup {
    brains: [PathBuf; 2],
    nets: [PathBuf; 3],
}

fn setup(dir: &Path) -> Setup {
    let data = generate(&SynthConfig {
        scenario: Scenario::Hierarchical,
        n_images: 500,
        n_voxels: 400,
        n_layers: 4,
        width: 24,
        grid: 4,
        noise_ceiling: 0.8,
        seed: 11,
        signal_fraction: 0.9,
        prf_size: None,
    })
    .unwrap();
    let nets = [
        with_layers(&data.features, &[0, 1, 2, 3], "original"),
        with_layers(&data.features, &[3, 2, 1, 0], "reversed"),
        with_layers(&data.features, &[0, 0, 0, 0], "first-only"),
    ];
    let paths = nets.clone().map(|f| {
        let p = dir.join(format!("{}.safetensors", f.model));
        f.save(&p).unwrap();
        p
    });
    let s1 = dir.join("s1.safetensors");
    let mut b1 = data.brain.clone();
    b1.subject = Some("S1".into());
    b1.save(&s1).unwrap();
    // The second subject: another planting (other voxels, other noise) on the same network.
    let o = bin()
        .args(["synth", "--voxels", "300", "--seed", "12", "--noise-ceiling", "0.7", "--from-features"])
        .arg(&paths[0])
        .arg("--out")
        .arg(dir.join("s2"))
        .output()
        .unwrap();
    stdout_ok(&o);
    let s2 = dir.join("s2").join("brain.safetensors");
    Setup { brains: [s1, s2], nets: paths }
}

fn rank(s: &Setup, extra: &[&str]) -> Output {
    let mut c = bin();
    c.arg("rank");
    for b in &s.brains {
        c.arg("--brain").arg(b);
    }
    c.args(&s.nets);
    // The FactorTopy schedule; the ridge baseline refuses its flags.
    if !extra.windows(2).any(|w| w == ["--method", "ridge"]) {
        c.args(["--preset", "fast", "--epochs", "4", "--dim", "16", "--grid", "4", "--reg-steps", "40"]);
    }
    c.args(["--bootstrap", "200"]);
    c.args(extra);
    c.output().unwrap()
}

/// How many pairs a run fitted (its progress prints one `[pairs k/n]` line per fitted pair).
fn fitted(o: &Output) -> usize {
    String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.starts_with("[pairs ")).count()
}

#[test]
fn ranks_over_subjects_in_workers_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    let out = tmp.path().join("grid");

    let serial = stdout_ok(&rank(&s, &["--format", "json", "--quiet"]));
    let v: serde_json::Value = serde_json::from_str(&serial).unwrap();
    eprintln!("{serial}");
    assert_eq!(v["subjects"], serde_json::json!(["S1", "synthetic"]));
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"original"), "{names:?}");
    assert_eq!(names.last(), Some(&"reversed"), "{names:?}");
    for r in rows {
        // One row per subject, each with its own bootstrap interval, and the mean over subjects
        // inside its t-interval over subjects.
        let per = r["subjects"].as_array().unwrap();
        assert_eq!(per.len(), 2);
        assert!(per.iter().all(|p| p["slope_interval"]["lo"].is_number()), "{r}");
        let slope = &r["across"]["slope"];
        let mean = slope["mean"].as_f64().unwrap();
        let expect = (per[0]["slope"].as_f64().unwrap() + per[1]["slope"].as_f64().unwrap()) / 2.0;
        assert!((mean - expect).abs() < 1e-12);
        assert_eq!(slope["n"], 2);
        assert!(slope["interval"]["lo"].as_f64().unwrap() <= mean && mean <= slope["interval"]["hi"].as_f64().unwrap());
        assert!(r.get("fit_seconds").is_none() && per[0].get("fit_seconds").is_none(), "timings stay out of the JSON");
    }
    assert!(rows[0]["across"]["slope"]["mean"].as_f64().unwrap() > 0.2, "{}", rows[0]);
    assert!(rows[2]["across"]["slope"]["mean"].as_f64().unwrap() < -0.2, "{}", rows[2]);
    assert!(rows[0]["vs_next"]["p_value"].is_number() && rows[2]["vs_next"].is_null());

    // Two worker processes, with --out: the same JSON, byte for byte, and every pair kept.
    let o = rank(&s, &["--format", "json", "--jobs", "2", "--out", out.to_str().unwrap()]);
    assert_eq!(stdout_ok(&o), serial);
    assert_eq!(fitted(&o), 6, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_dir(out.join("pairs")).unwrap().count(), 6);
    assert_eq!(std::fs::read_to_string(out.join("rank.json")).unwrap(), serial);
    for f in ["report.0.s0.json", "report.2.s1.json", "roi_depth.s0.png", "roi_depth.s1.png"] {
        assert!(out.join(f).is_file(), "{f}");
    }

    // An interrupted grid: two pairs never finished. The rerun fits only those two.
    let mut pairs: Vec<PathBuf> = std::fs::read_dir(out.join("pairs")).unwrap().map(|e| e.unwrap().path()).collect();
    pairs.sort();
    std::fs::remove_file(&pairs[1]).unwrap();
    std::fs::remove_file(&pairs[4]).unwrap();
    let o = rank(&s, &["--format", "json", "--out", out.to_str().unwrap()]);
    assert_eq!(stdout_ok(&o), serial);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("resuming: 4 of 6 pairs already finished"), "{err}");
    assert_eq!(fitted(&o), 2, "{err}");
    // Changed settings change every digest: nothing is reused.
    let o = rank(&s, &["--format", "json", "--out", out.to_str().unwrap(), "--seed", "3", "--quiet"]);
    stdout_ok(&o);
    assert_eq!(std::fs::read_dir(out.join("pairs")).unwrap().count(), 12);

    // The gate over subjects compares the mean slope, or the lower bound of its interval.
    let mean = rows[0]["across"]["slope"]["mean"].as_f64().unwrap();
    let lo = rows[0]["across"]["slope"]["interval"]["lo"].as_f64().unwrap();
    let o = rank(&s, &["--quiet", "--out", out.to_str().unwrap(), "--min-slope", &format!("{}", mean + 0.01)]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("mean slope over subjects"));
    let mid = format!("{}", (lo + mean) / 2.0);
    let o = rank(&s, &["--quiet", "--out", out.to_str().unwrap(), "--min-slope", &mid, "--gate", "lower"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let o = rank(&s, &["--quiet", "--out", out.to_str().unwrap(), "--min-slope", &mid, "--format", "markdown"]);
    let md = stdout_ok(&o);
    assert!(md.contains("CI over subjects") && md.contains("S1 ") && md.contains("t-test"), "{md}");
}

/// A safetensors file's bytes with the first value of an f32 tensor replaced by NaN (a header
/// that checks out, values that do not); `tensor` must be in the file.
fn with_nan(bytes: &[u8], tensor: &str) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header[tensor]["dtype"], "F32");
    let start = 8 + n + header[tensor]["data_offsets"][0].as_u64().unwrap() as usize;
    let mut out = bytes.to_vec();
    out[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    out
}

/// A pair that fails names its network and subject; the others finish and are kept, and the
/// rerun after the fix fits only the failed pairs.
#[test]
fn a_failed_pair_is_named_and_the_rest_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    let out = tmp.path().join("grid");
    // The reversed network with one non-finite value: its header is fine, its fit is not.
    let good = std::fs::read(&s.nets[1]).unwrap();
    std::fs::write(&s.nets[1], with_nan(&with_nan(&good, "layers.0.local"), "layers.0.global")).unwrap();
    let o = rank(&s, &["--method", "ridge", "--jobs", "2", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let last = err.lines().last().unwrap();
    assert!(last.contains("2 of 6 pairs failed") && last.contains("reversed.safetensors × S1"), "{err}");
    assert!(last.contains("reversed.safetensors × synthetic") && !last.contains("original.safetensors ×"), "{err}");
    assert_eq!(std::fs::read_dir(out.join("pairs")).unwrap().count(), 4);
    std::fs::write(&s.nets[1], good).unwrap();
    let o = rank(&s, &["--method", "ridge", "--out", out.to_str().unwrap(), "--with-layers"]);
    let table = stdout_ok(&o);
    // --with-layers is a setting: every pair is refitted, with its per-layer scores.
    assert_eq!(fitted(&o), 6);
    assert!(table.contains("per-layer held-out R² of the layer-wise ridge baseline, original (mean over 2 subjects)"), "{table}");
    let o = rank(&s, &["--method", "ridge", "--quiet", "--format", "json", "--out", out.to_str().unwrap(), "--with-layers"]);
    let v: serde_json::Value = serde_json::from_str(&stdout_ok(&o)).unwrap();
    let layers = &v["rows"][0]["subjects"][0]["layers"];
    assert_eq!(layers["layer_names"].as_array().unwrap().len(), 4);
    // The planted early ROI (V1) is best explained by an early layer of the original network.
    let v1: Vec<f64> = layers["r2"][0].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert!(v1[0] > v1[3], "{v1:?}");
}

/// Subjects must share the images.
#[test]
fn subjects_with_other_images_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    let o = bin()
        .args(["synth", "--images", "300", "--voxels", "100", "--layers", "2", "--width", "8", "--out"])
        .arg(tmp.path().join("other"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = bin()
        .arg("rank")
        .arg("--brain")
        .arg(&s.brains[0])
        .arg("--brain")
        .arg(tmp.path().join("other/brain.safetensors"))
        .args(&s.nets)
        .args(["--method", "ridge"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("has 500 images but") && err.contains("has 300") && err.lines().count() == 1, "{err}");
    let o = bin().arg("rank").arg("--brain").arg(&s.brains[0]).args(&s.nets).args(["--jobs", "0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("--jobs must be between 1 and"));
}

/// `--with-layers` beside a FactorTopy fit: a ridge side fit on the same split gives every
/// layer's held-out R² per ROI; with one subject the one-brain layout carries it per row.
#[test]
fn per_layer_scores_beside_a_factortopy_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    let o = bin()
        .arg("rank")
        .arg("--brain")
        .arg(&s.brains[0])
        .arg(&s.nets[0])
        .args(["--preset", "fast", "--epochs", "2", "--dim", "16", "--grid", "4", "--bootstrap", "0"])
        .args(["--permutations", "0", "--with-layers", "--quiet", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout_ok(&o)).unwrap();
    assert!(v.get("subjects").is_none(), "one subject keeps the one-brain layout");
    let layers = &v["rows"][0]["layers"];
    let rois = layers["roi_names"].as_array().unwrap();
    assert_eq!(layers["r2"].as_array().unwrap().len(), rois.len());
    // V1 is planted on the first layer: a ridge fit on it explains V1 better than one on the last.
    let v1: Vec<f64> = layers["r2"][0].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(rois[0], "V1");
    assert!(v1[0] > v1[3], "{v1:?}");
}
