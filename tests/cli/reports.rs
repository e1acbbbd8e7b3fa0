//! The `factortopy` binary as a user runs it: reproducible reports, `score` agreeing with `fit`,
//! and bad input giving one clear error line, a non-zero exit and no partial output.

use factortopy::data::safetensors_io::{write_tensors, OutTensor, TensorFile};
use factortopy::data::Brain;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::cli::{run, s};

/// A small synthetic data set shared by the tests of this file.
fn synthetic() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("factortopy-cli-{}", std::process::id()));
        let out = run(&[
            "synth", "--out", s(&dir), "--images", "240", "--voxels", "150", "--layers", "3", "--width", "8",
            "--grid", "4", "--seed", "5",
        ]);
        assert!(out.status.success(), "synth failed: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

fn fit_args<'a>(features: &'a str, brain: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "fit", "--features", features, "--brain", brain, "--out", out, "--preset", "fast", "--grid", "4", "--dim", "16",
        "--epochs", "3", "--quiet",
    ]
}

#[test]
fn same_inputs_and_seed_give_byte_identical_reports_and_score_agrees() {
    let syn = synthetic();
    let tmp = tempfile::tempdir().unwrap();
    let (f, b) = (syn.join("features.safetensors"), syn.join("brain.safetensors"));
    let mut reports = Vec::new();
    for run_dir in ["a", "b"] {
        let out = tmp.path().join(run_dir);
        let o = run(&fit_args(s(&f), s(&b), s(&out)));
        assert!(o.status.success(), "fit failed: {}", String::from_utf8_lossy(&o.stderr));
        for file in ["report.json", "encoder.safetensors", "selectors.safetensors", "layer_map.png"] {
            assert!(out.join(file).is_file(), "{file} missing");
        }
        reports.push(std::fs::read(out.join("report.json")).unwrap());
    }
    assert_eq!(reports[0], reports[1], "report.json differs between two identical runs");
    let json: serde_json::Value = serde_json::from_slice(&reports[0]).unwrap();
    for key in ["slope", "b0", "b1", "spearman"] {
        assert!(json["hierarchy"][key].is_number(), "hierarchy.{key}");
    }
    assert!(json["r2"]["mean"].is_number() && json["r2"]["median"].is_number());
    let roi = &json["rois"][0];
    for key in ["name", "level", "n_voxels", "mean_depth", "mean_r2", "mean_scale"] {
        assert!(!roi[key].is_null(), "rois[0].{key}");
    }
    // `score` on the saved encoder recomputes the same report.
    let rescored = tmp.path().join("rescored.json");
    let enc = tmp.path().join("a").join("encoder.safetensors");
    let o = run(&["score", "--encoder", s(&enc), "--features", s(&f), "--brain", s(&b), "--out", s(&rescored)]);
    assert!(o.status.success(), "score failed: {}", String::from_utf8_lossy(&o.stderr));
    // Everything but `settings.fit` (the encoder file keeps only the seed and the validation
    // fraction, which `fit` reports) is byte-identical, intervals and p-values included.
    let mut fitted: serde_json::Value = serde_json::from_slice(&reports[0]).unwrap();
    let scored: serde_json::Value = serde_json::from_slice(&std::fs::read(&rescored).unwrap()).unwrap();
    assert!(fitted["settings"]["fit"]["lr"].is_number() && scored["settings"]["fit"].is_null());
    fitted["settings"]["fit"] = serde_json::Value::Null;
    assert_eq!(
        serde_json::to_string_pretty(&fitted).unwrap(),
        serde_json::to_string_pretty(&scored).unwrap(),
        "score disagrees with fit"
    );
    assert!(fitted["uncertainty"]["slope"]["lo"].is_number() && fitted["uncertainty"]["permutation"]["p_slope"].is_number());
    // A different seed gives a different fit.
    let other = tmp.path().join("c");
    let mut args = fit_args(s(&f), s(&b), s(&other));
    args.extend(["--seed", "9"]);
    assert!(run(&args).status.success());
    assert_ne!(std::fs::read(other.join("report.json")).unwrap(), reports[0]);
}

/// Runs `fit` on broken inputs and checks the failure is clean.
fn assert_clean_failure(features: &Path, brain: &Path, out: &Path, must_mention: &[&str]) {
    let o = run(&fit_args(s(features), s(brain), s(out)));
    assert!(!o.status.success(), "fit accepted bad input");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{stderr}");
    for word in must_mention {
        assert!(lines[0].contains(word), "error line {:?} does not mention {word:?}", lines[0]);
    }
    for file in ["report.json", "encoder.safetensors", "selectors.safetensors", "layer_map.png"] {
        assert!(!out.join(file).exists(), "{file} was written despite the error");
    }
}

/// Rewrites a safetensors file with some tensors replaced or dropped.
fn rewrite(src: &Path, dst: &Path, edit: impl Fn(&str, &mut Vec<f32>) -> bool, roi_edit: Option<i32>) {
    let file = TensorFile::open(src).unwrap();
    let mut f32s: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut i32s: Vec<(String, Vec<usize>, Vec<i32>)> = Vec::new();
    for name in file.names() {
        if name == "roi" {
            let (shape, mut data) = file.i32(&name).unwrap();
            if let Some(v) = roi_edit {
                data[3] = v;
            }
            i32s.push((name, shape, data));
            continue;
        }
        let a = file.f32(&name).unwrap();
        let mut data = a.data;
        if edit(&name, &mut data) {
            f32s.push((name, a.shape, data));
        }
    }
    let mut tensors: Vec<(String, OutTensor)> =
        f32s.iter().map(|(n, sh, d)| (n.clone(), OutTensor::F32 { shape: sh.clone(), data: d })).collect();
    tensors.extend(i32s.iter().map(|(n, sh, d)| (n.clone(), OutTensor::I32 { shape: sh.clone(), data: d })));
    let meta: BTreeMap<String, String> = file.metadata().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    write_tensors(dst, &tensors, &meta).unwrap();
}

#[test]
fn bad_inputs_fail_with_one_clear_line_and_no_output() {
    let syn = synthetic();
    let tmp = tempfile::tempdir().unwrap();
    let (f, b) = (syn.join("features.safetensors"), syn.join("brain.safetensors"));
    let out = tmp.path().join("out");

    // Different image counts in the two files.
    let other = tmp.path().join("other");
    let o = run(&["synth", "--out", s(&other), "--images", "200", "--voxels", "150", "--layers", "3", "--width", "8", "--grid", "4"]);
    assert!(o.status.success());
    assert_clean_failure(&f, &other.join("brain.safetensors"), &out, &["240", "200"]);

    // A NaN in the responses.
    let nan = tmp.path().join("nan_brain.safetensors");
    rewrite(&b, &nan, |name, d| {
        if name == "responses" {
            d[7] = f32::NAN;
        }
        true
    }, None);
    assert_clean_failure(&f, &nan, &out, &["nan_brain.safetensors", "responses"]);

    // A layer without its local map.
    let no_local = tmp.path().join("no_local.safetensors");
    rewrite(&f, &no_local, |name, _| name != "layers.1.local", None);
    assert_clean_failure(&no_local, &b, &out, &["no_local.safetensors", "layers.1.local"]);

    // An ROI index out of range.
    let bad_roi = tmp.path().join("bad_roi.safetensors");
    rewrite(&b, &bad_roi, |_, _| true, Some(99));
    assert_clean_failure(&f, &bad_roi, &out, &["bad_roi.safetensors", "99"]);

    // A truncated file.
    let truncated = tmp.path().join("truncated.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_failure(&truncated, &b, &out, &["truncated.safetensors"]);

    // An output directory that cannot be created (its parent is a regular file).
    let blocker = tmp.path().join("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let unwritable = blocker.join("out");
    assert_clean_failure(&f, &b, &unwritable, &["blocker"]);

    // Nothing of the above left an output directory with files in it.
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
    let _ = Brain::load(&b).unwrap();
}

/// `fit --seeds K` refits with K seeds and reports the spread of the headline numbers and
/// intervals over the seeds; the outputs (and the headline numbers themselves) are the first
/// seed's fit.
#[test]
fn seeds_report_the_spread_over_refits() {
    let syn = synthetic();
    let tmp = tempfile::tempdir().unwrap();
    let (f, b) = (syn.join("features.safetensors"), syn.join("brain.safetensors"));
    let out = tmp.path().join("seeds");
    let mut args = fit_args(s(&f), s(&b), s(&out));
    args.extend(["--seeds", "3", "--seed", "4", "--bootstrap", "200", "--confidence", "0.9"]);
    let o = run(&args);
    assert!(o.status.success(), "fit failed: {}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let sp = &json["seeds"];
    assert_eq!(sp["seeds"], serde_json::json!([4, 5, 6]));
    let slopes: Vec<f64> = sp["slope"]["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(slopes.len(), 3);
    assert_eq!(slopes[0], json["hierarchy"]["slope"].as_f64().unwrap());
    assert!(slopes[0] != slopes[1] || slopes[1] != slopes[2], "three seeds gave identical slopes {slopes:?}");
    let (lo, hi) = (sp["slope"]["min"].as_f64().unwrap(), sp["slope"]["max"].as_f64().unwrap());
    assert!(slopes.iter().all(|&x| lo <= x && x <= hi) && sp["slope"]["std"].as_f64().unwrap() > 0.0);
    assert!(sp["r2_mean"]["mean"].is_number() && sp["noise_normalized_mean"]["std"].is_number());
    // The intervals are of kind `seeds` (fit-to-fit spread, Student t with K − 1 = 2 degrees of
    // freedom, plus the refit-free bootstrap, whose 200 resamples are split over the 3 fits):
    // a prediction interval at 90 % with t₂ = 2.92 reaches at least 3.37 sample sds from the
    // mean, and no value of 3 lies further than 1.16 sds from it, so every seed's slope is in.
    let u = &json["uncertainty"];
    assert_eq!((u["kind"].as_str(), u["n_fits"].as_u64()), (Some("seeds"), Some(3)));
    let (ilo, ihi) = (u["slope"]["lo"].as_f64().unwrap(), u["slope"]["hi"].as_f64().unwrap());
    assert!(slopes.iter().all(|&x| ilo < x && x < ihi), "{slopes:?} outside [{ilo}, {ihi}]");
    assert!(u["permutation"]["p_slope"].is_number());
    assert!(String::from_utf8_lossy(&o.stdout).contains("over 3 seeds (where another fit lands"));
    // The interval settings travel with the report.
    assert_eq!(json["uncertainty"]["n_resamples"], 200);
    assert_eq!(json["uncertainty"]["level"], 0.9);
    assert_eq!(json["settings"]["uncertainty"]["bootstrap"]["n_resamples"], 200);
    assert_eq!(json["settings"]["fit"]["seed"], 4);
    assert!(String::from_utf8_lossy(&o.stdout).contains("over 3 seeds"));
    // Nonsense settings are one clean error.
    let mut bad = fit_args(s(&f), s(&b), s(&out));
    bad.extend(["--confidence", "1.5"]);
    let o = run(&bad);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("confidence level"));
    // SIMEX extrapolates over refits: without --seeds K ≥ 2 it is refused before any fit, and
    // an unknown correction is a usage error.
    let simex_out = tmp.path().join("simex");
    let mut one = fit_args(s(&f), s(&b), s(&simex_out));
    one.extend(["--bias-correct", "simex"]);
    let o = run(&one);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --seeds K with K ≥ 2"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!simex_out.exists());
    let mut unknown = fit_args(s(&f), s(&b), s(&out));
    unknown.extend(["--seeds", "2", "--bias-correct", "jackknife"]);
    let o = run(&unknown);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("unknown bias correction"));
}

/// Every value of `old` is in `new` at the same place, unchanged (`new` may add keys).
fn assert_contains_json(old: &serde_json::Value, new: &serde_json::Value, at: &str) {
    match (old, new) {
        (serde_json::Value::Object(o), serde_json::Value::Object(n)) => {
            for (k, v) in o {
                let there = n.get(k).unwrap_or_else(|| panic!("{at}/{k} is missing from the new report"));
                assert_contains_json(v, there, &format!("{at}/{k}"));
            }
        }
        (serde_json::Value::Array(o), serde_json::Value::Array(n)) => {
            assert_eq!(o.len(), n.len(), "{at}: length");
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                assert_contains_json(a, b, &format!("{at}/{i}"));
            }
        }
        // Prediction-based numbers (R², Pearson r, their intervals) follow the readout's
        // summation order, which the prediction path may change: equal to f32 rounding.
        (serde_json::Value::Number(a), serde_json::Value::Number(b)) if a.is_f64() || b.is_f64() => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{at} changed: {a} vs {b}");
        }
        _ => assert_eq!(old, new, "{at} changed"),
    }
}

/// The selector outputs and per-voxel R² of `selectors.safetensors` to f32 rounding (≤ 1e-5;
/// measured 4e-7 at most): the training readout became blocked matrix products after these
/// files were written, which sums the same terms in another order. Every discrete outcome (step
/// counts, layer choices) must still be identical, through the report comparison below.
fn assert_same_selectors(golden: &[u8], new: &[u8]) {
    let g = TensorFile::from_bytes(Path::new("golden selectors"), golden.to_vec()).unwrap();
    let n = TensorFile::from_bytes(Path::new("new selectors"), new.to_vec()).unwrap();
    assert_eq!(g.names(), n.names());
    for name in g.names() {
        let (a, b) = (g.f32(&name).unwrap(), n.f32(&name).unwrap());
        assert_eq!(a.shape, b.shape, "{name}");
        let worst = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{name} changed by up to {worst:e}");
    }
}

/// `--preset design` keeps DESIGN §3.1's bilinear resampling, so it reproduces what `fit`
/// reported before the resampling became a setting: the golden files were written by the
/// commit before it, on the same synthetic data (`synth --prf-size 0`, the point sampling of
/// that commit, so this also checks that it plants the same data) (grid 3 on 8×8 and 4×4 maps, non-integer ratios
/// where `auto` and `bilinear` differ). Selectors to f32 rounding (see `assert_same_selectors`);
/// every value of the old report unchanged (the new report only adds keys, such as the
/// resampling itself). Fits are
/// deterministic on a given machine; these files come from the 2-core x86-64 CI machine.
/// Prediction-based values (held-out R² and what derives from it) are compared to f32 rounding:
/// the fixed-encoder readout became dense products after these files were written.
#[test]
fn design_preset_reproduces_the_reports_from_before_resampling_was_a_setting() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let tmp = tempfile::tempdir().unwrap();
    let syn = tmp.path().join("syn");
    let o = run(&[
        "synth", "--out", s(&syn), "--images", "240", "--voxels", "150", "--layers", "3", "--width", "8", "--grid", "4",
        "--seed", "5", "--prf-size", "0",
    ]);
    assert!(o.status.success(), "synth failed: {}", String::from_utf8_lossy(&o.stderr));
    let (f, b) = (syn.join("features.safetensors"), syn.join("brain.safetensors"));
    let fit = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "fit", "--features", s(&f), "--brain", s(&b), "--out", s(out), "--preset", "design", "--grid", "3", "--dim",
            "16", "--epochs", "2", "--quiet",
        ];
        args.extend(extra);
        let o = run(&args);
        assert!(o.status.success(), "fit failed: {}", String::from_utf8_lossy(&o.stderr));
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        (report, std::fs::read(out.join("selectors.safetensors")).unwrap())
    };
    let (report, selectors) = fit(&tmp.path().join("design"), &[]);
    assert_same_selectors(&std::fs::read(golden.join("design_preset_selectors.safetensors")).unwrap(), &selectors);
    let mut old: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden.join("design_preset_report.json")).unwrap()).unwrap();
    for k in ["library_version", "schema_version"] {
        old.as_object_mut().unwrap().remove(k);
    }
    // The intervals became percentile intervals centred on the point estimates after these
    // files were written (the plain ones could exclude their own number: here the held-out R²
    // mean −0.067 had [−0.197, −0.081]). The replicates are the same, so every interval keeps
    // its width, and now holds its point.
    let points = [
        ("slope", "/hierarchy/slope"),
        ("b0", "/hierarchy/b0"),
        ("b1", "/hierarchy/b1"),
        ("spearman", "/hierarchy/spearman"),
        ("r2_mean", "/r2/mean"),
        ("r2_median", "/r2/median"),
        ("pearson_mean", "/pearson/mean"),
        ("pearson_median", "/pearson/median"),
        ("noise_normalized_mean", "/noise_ceiling/normalized/mean"),
        ("noise_normalized_median", "/noise_ceiling/normalized/median"),
        ("algonauts_mean", "/noise_ceiling/algonauts/mean"),
    ];
    for (name, point) in points {
        let was = old["uncertainty"].as_object_mut().unwrap().remove(name).unwrap();
        let now = &report["uncertainty"][name];
        let width = |iv: &serde_json::Value| iv["hi"].as_f64().unwrap() - iv["lo"].as_f64().unwrap();
        assert!((width(&was) - width(now)).abs() <= 1e-5 * width(&was).abs().max(1.0), "{name}: width changed");
        let x = report.pointer(point).unwrap().as_f64().unwrap();
        assert!(now["lo"].as_f64().unwrap() <= x && x <= now["hi"].as_f64().unwrap(), "{name}: {x} outside {now}");
    }
    assert_contains_json(&old, &report, "");
    assert_eq!(report["settings"]["fit"]["resample"], "bilinear");
    // `--resample` overrides the preset, and on these maps area averaging fits differently.
    let (auto, auto_selectors) = fit(&tmp.path().join("auto"), &["--resample", "auto"]);
    assert_eq!(auto["settings"]["fit"]["resample"], "auto");
    assert!(auto_selectors != selectors, "--resample auto gave the bilinear fit");
    let o = run(&["fit", "--features", s(&f), "--brain", s(&b), "--out", s(&tmp.path().join("x")), "--resample", "cubic"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected bilinear, area or auto"));
}

/// Every `fit` flag does what it says for the method it is given with: `--no-plots` writes no
/// picture with either method, `--seed` and `--val-fraction` set the ridge baseline's split, and
/// a flag the method does not use is refused with one line naming it, before anything is read
/// or written.
#[test]
fn fit_flags_act_for_every_method_or_are_refused() {
    let syn = synthetic();
    let tmp = tempfile::tempdir().unwrap();
    let (f, b) = (syn.join("features.safetensors"), syn.join("brain.safetensors"));
    let pictures = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "png")).collect()
    };
    let ridge = tmp.path().join("ridge");
    let o = run(&[
        "fit", "--method", "ridge", "--features", s(&f), "--brain", s(&b), "--out", s(&ridge), "--alphas", "0:2:3", "--folds",
        "2", "--seed", "3", "--val-fraction", "0.2", "--no-plots", "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(pictures(&ridge).is_empty(), "{:?}", pictures(&ridge));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("picture"));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(ridge.join("report.json")).unwrap()).unwrap();
    assert_eq!((report["settings"]["ridge"]["seed"].as_u64(), report["settings"]["ridge"]["val_fraction"].as_f64()), (Some(3), Some(0.2)));
    assert_eq!(report["settings"]["ridge"]["n_folds"], 2);
    assert!(ridge.join("ridge.json").is_file() && ridge.join("selectors.safetensors").is_file());

    let ft = tmp.path().join("ft");
    let mut args = fit_args(s(&f), s(&b), s(&ft));
    args.push("--no-plots");
    let o = run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(pictures(&ft).is_empty());
    let o = run(&["score", "--encoder", s(&ft.join("encoder.safetensors")), "--features", s(&f), "--brain", s(&b), "--no-plots"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--no-plots applies with --fit-dir only"), "{err}");

    let bad = tmp.path().join("bad");
    let refused = [
        ("ridge", "--epochs", "3"),
        ("ridge", "--batch-size", "4"),
        ("ridge", "--lr", "0.1"),
        ("ridge", "--weight-decay", "0"),
        ("ridge", "--dim", "8"),
        ("ridge", "--grid", "2"),
        ("ridge", "--patience", "2"),
        ("ridge", "--reg-steps", "10"),
        ("ridge", "--preset", "fast"),
        ("ridge", "--resample", "area"),
        ("ridge", "--layer-units", "raw"),
        ("ridge", "--store", "f16"),
        ("factortopy", "--alphas", "0:1:2"),
        ("factortopy", "--folds", "3"),
        ("factortopy", "--compare", s(&ridge)),
    ];
    for (method, flag, value) in refused {
        let o = run(&["fit", "--method", method, "--features", s(&f), "--brain", s(&b), "--out", s(&bad), flag, value]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{method} {flag}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(&format!("{flag} applies to")), "{method} {flag}: {err}");
        assert!(!bad.exists(), "{method} {flag}");
    }
    let o = run(&["rank", "--method", "ridge", "--brain", s(&b), s(&f), "--epochs", "3", "--quiet"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--epochs applies to the factortopy method only"), "{err}");
}
