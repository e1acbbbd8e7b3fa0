//! Bad input, class by class, through the `factortopy` binary as a user (or a hostile file) meets
//! it: sizes checked before allocation, no output clobbered or left half-made, no undefined
//! score reported as a number, one-line errors that name the thing. Each test failed on the code
//! before the fix. The randomised counterpart is `tests/cli/fuzz_inputs.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common::cli::{bin, fails_cleanly, run, s, stdout_ok};

/// Small synthetic data and a fitted encoder, shared by the tests of this file.
fn data() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("factortopy-robust-{}", std::process::id()));
        let o = run(&[
            "synth", "--out", s(&dir), "--images", "60", "--voxels", "40", "--layers", "2", "--width", "4", "--grid", "2",
            "--seed", "3",
        ]);
        stdout_ok(&o);
        let fit = dir.join("fit");
        let o = run(&[
            "fit", "--features", s(&dir.join("features.safetensors")), "--brain", s(&dir.join("brain.safetensors")),
            "--out", s(&fit), "--preset", "fast", "--epochs", "1", "--dim", "4", "--grid", "2", "--quiet",
        ]);
        stdout_ok(&o);
        dir
    })
}

fn features() -> PathBuf {
    data().join("features.safetensors")
}
fn brain() -> PathBuf {
    data().join("brain.safetensors")
}
fn encoder() -> PathBuf {
    data().join("fit/encoder.safetensors")
}

/// Copies a safetensors file with its JSON header edited (the data bytes are kept).
fn edit_header(src: &Path, dst: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let b = std::fs::read(src).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let mut h: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    edit(&mut h);
    let mut text = serde_json::to_vec(&h).unwrap();
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&b[8 + n..]);
    std::fs::write(dst, out).unwrap();
}

fn set_meta(src: &Path, dst: &Path, key: &str, value: &str) {
    edit_header(src, dst, |h| h["__metadata__"][key] = serde_json::Value::String(value.to_string()));
}

// 1. Sizes from anywhere are checked before memory is asked for. -------------------------------

#[test]
fn huge_flags_are_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let (f, b) = (features(), brain());
    let out = tmp.path().join("out");
    let max = u64::MAX.to_string();
    for (flag, value, word) in [
        ("--grid", max.as_str(), "--grid"),
        ("--dim", "4000000000", "--dim"),
        ("--batch-size", max.as_str(), "--batch-size"),
    ] {
        let o = run(&["fit", "--features", s(&f), "--brain", s(&b), "--out", s(&out), "--epochs", "1", flag, value]);
        fails_cleanly(&o, &[word]);
    }
    // Counts that multiply work (each seed is a whole fit) or size a table (a row per
    // resample): refused above their documented limit, not run for days or aborted allocating.
    for (flag, value, limit) in [
        ("--seeds", "4294967296", "1000"),
        ("--seeds", max.as_str(), "1000"),
        ("--seeds", "1000000", "1000"),
        ("--epochs", max.as_str(), "100000"),
        ("--patience", max.as_str(), "100000"),
        ("--bootstrap", max.as_str(), "100000"),
        ("--permutations", max.as_str(), "1000000"),
    ] {
        let mut a = vec!["fit", "--features", s(&f), "--brain", s(&b), "--out", s(&out), flag, value];
        if flag != "--epochs" {
            a.extend(["--epochs", "1"]);
        }
        fails_cleanly(&run(&a), &[flag, limit]);
    }
    let o = run(&["monitor", "--brain", s(&b), "--reference", s(&f), s(&f), "--out", s(&out), "--refit-every", "1", "--refit-steps", max.as_str()]);
    fails_cleanly(&o, &["refit", "100000000"]);
    let o = run(&["fit", "--method", "ridge", "--features", s(&f), "--brain", s(&b), "--out", s(&out), "--alphas", &format!("0:1:{max}")]);
    fails_cleanly(&o, &["--alphas"]);
    for args in [
        vec!["--voxels", max.as_str()],
        vec!["--images", max.as_str(), "--voxels", "40"],
        vec!["--layers", max.as_str()],
        vec!["--width", max.as_str(), "--images", "10"],
        vec!["--grid", max.as_str()],
        vec!["--images", "100000", "--voxels", "100000000"],
    ] {
        let mut a = vec!["synth", "--out", s(&out)];
        a.extend(args.iter().copied());
        fails_cleanly(&run(&a), &[]);
    }
    assert!(!out.exists(), "a refused command created its output folder");
}

#[test]
fn huge_encoder_metadata_is_refused_by_score_and_monitor() {
    let tmp = tempfile::tempdir().unwrap();
    for (key, value, word) in [
        ("d", "1000000000000", "d"),
        ("grid", "18446744073709551615", "grid"),
        ("n_voxels", "4611686018427387904", "n_voxels"),
        ("widths", "[1000000000000, 4]", "elements"),
        ("val_fraction", "0.0", "val_fraction"),
    ] {
        let enc = tmp.path().join(format!("enc-{key}.safetensors"));
        set_meta(&encoder(), &enc, key, value);
        let o = run(&["score", "--encoder", s(&enc), "--features", s(&features()), "--brain", s(&brain())]);
        fails_cleanly(&o, &[s(&enc), word]);
        let out = tmp.path().join("mon");
        let o = run(&[
            "monitor", "--brain", s(&brain()), "--reference", s(&features()), "--encoder", s(&enc), "--out", s(&out),
            s(&features()),
        ]);
        fails_cleanly(&o, &[word]);
        assert!(!out.exists());
    }
}

#[test]
fn non_regular_input_files_are_refused() {
    let o = run(&["score", "--encoder", "/dev/zero", "--features", s(&features()), "--brain", s(&brain())]);
    fails_cleanly(&o, &["/dev/zero", "not a regular file"]);
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("fifo");
    if Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
        let o = run(&["score", "--encoder", s(&encoder()), "--features", s(&fifo), "--brain", s(&brain())]);
        fails_cleanly(&o, &["fifo", "not a regular file"]);
    }
}

// 2. Nothing a user wrote is overwritten by a failed run. --------------------------------------

#[test]
fn monitor_checks_every_checkpoint_before_touching_out() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("history.jsonl"), b"{\"step\": 0}\n").unwrap();
    let bad = tmp.path().join("bad.safetensors");
    let bytes = std::fs::read(features()).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let o = run(&[
        "monitor", "--brain", s(&brain()), "--reference", s(&features()), "--encoder", s(&encoder()), "--out", s(&out),
        s(&features()), s(&bad),
    ]);
    fails_cleanly(&o, &["bad.safetensors"]);
    assert_eq!(std::fs::read(out.join("history.jsonl")).unwrap(), b"{\"step\": 0}\n");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1, "the failed run wrote into --out");
    // A fresh --out is not even created.
    let fresh = tmp.path().join("fresh");
    let o = run(&[
        "monitor", "--brain", s(&brain()), "--reference", s(&features()), "--encoder", s(&encoder()), "--out", s(&fresh),
        s(&bad),
    ]);
    fails_cleanly(&o, &["bad.safetensors"]);
    assert!(!fresh.exists());
}

#[test]
fn too_few_held_out_images_are_refused_before_any_folder_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a/b");
    // 0.001 of 60 images holds out none: refused with the flag's name (it was quietly raised to
    // 2 before), and before --out is created.
    let o = run(&[
        "fit", "--features", s(&features()), "--brain", s(&brain()), "--out", s(&out), "--epochs", "1", "--dim", "4",
        "--grid", "2", "--val-fraction", "0.001",
    ]);
    fails_cleanly(&o, &["--val-fraction", "holds out 0"]);
    assert!(!tmp.path().join("a").exists(), "the refused fit left {}", out.display());
}

#[test]
fn a_run_that_fails_after_validation_leaves_no_empty_folder() {
    let tmp = tempfile::tempdir().unwrap();
    // A brain of pure noise planted on the same features: every input is valid, but the
    // reference encoder predicts nothing, which is found only after --out was prepared.
    let noise = tmp.path().join("noise");
    let o = run(&[
        "synth", "--from-features", s(&features()), "--out", s(&noise), "--voxels", "40", "--signal-fraction", "0", "--seed", "5",
    ]);
    stdout_ok(&o);
    let out = tmp.path().join("a/b");
    let o = run(&[
        "monitor", "--brain", s(&noise.join("brain.safetensors")), "--reference", s(&features()), "--encoder",
        s(&encoder()), "--out", s(&out), s(&features()),
    ]);
    fails_cleanly(&o, &["does not predict"]);
    assert!(!tmp.path().join("a").exists(), "the failed run left {}", out.display());
}

#[test]
fn plot_that_fails_leaves_no_folder() {
    // `plot` prepares --out, then finds that the brain does not match the fit: the folder it
    // created goes again (every library function that fills a folder goes through one guard).
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other");
    let o = run(&["synth", "--from-features", s(&features()), "--out", s(&other), "--voxels", "30", "--seed", "5"]);
    stdout_ok(&o);
    let out = tmp.path().join("pics/new");
    let o = run(&["plot", s(&data().join("fit")), "--brain", s(&other.join("brain.safetensors")), "--out", s(&out)]);
    fails_cleanly(&o, &[]);
    assert!(!tmp.path().join("pics").exists(), "the failed plot left {}", out.display());
}

// 3. No undefined number reported as a number. --------------------------------------------------

#[test]
fn one_roi_level_gives_null_scores_and_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let flat = tmp.path().join("flat-brain.safetensors");
    // Every ROI at level 0: no spread in hierarchy position.
    edit_header(&brain(), &flat, |h| {
        let names: Vec<String> = serde_json::from_str(h["__metadata__"]["roi_names"].as_str().unwrap()).unwrap();
        h["__metadata__"]["roi_levels"] = serde_json::Value::String(serde_json::to_string(&vec![0; names.len()]).unwrap());
    });
    let o = run(&["score", "--encoder", s(&encoder()), "--features", s(&features()), "--brain", s(&flat)]);
    stdout_ok(&o);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["slope", "b0", "b1", "spearman"] {
        assert!(report["hierarchy"][key].is_null(), "hierarchy.{key} = {}", report["hierarchy"][key]);
    }
    assert!(report["hierarchy"]["warning"].as_str().unwrap().contains("one ROI level"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.lines().any(|l| l.starts_with("warning: ") && l.contains("undefined")), "{err}");
}

#[test]
fn ridge_compare_refuses_a_fit_of_another_brain() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other");
    let o = run(&[
        "synth", "--out", s(&other), "--images", "60", "--voxels", "45", "--layers", "2", "--width", "4", "--grid", "2",
        "--seed", "9",
    ]);
    assert!(o.status.success());
    let out = tmp.path().join("ridge");
    let o = run(&[
        "fit", "--method", "ridge", "--features", s(&other.join("features.safetensors")), "--brain",
        s(&other.join("brain.safetensors")), "--out", s(&out), "--compare", s(&data().join("fit")), "--alphas", "0:2:3",
        "--folds", "2", "--quiet",
    ]);
    fails_cleanly(&o, &["different brains"]);
    assert!(!out.exists());
}

#[test]
fn monitor_compares_checkpoint_ids_with_the_brains() {
    let tmp = tempfile::tempdir().unwrap();
    // The brain lists ids, the reference lists none, the checkpoint lists other ids.
    let ids: Vec<String> = (0..60).map(|i| format!("img{i}")).collect();
    let mut shuffled = ids.clone();
    shuffled.swap(3, 4);
    let b = tmp.path().join("brain.safetensors");
    set_meta(&brain(), &b, "stimulus_ids", &serde_json::to_string(&ids).unwrap());
    let reference = tmp.path().join("reference.safetensors");
    edit_header(&features(), &reference, |h| {
        h["__metadata__"].as_object_mut().unwrap().remove("stimulus_ids");
    });
    let ckpt = tmp.path().join("ckpt.safetensors");
    set_meta(&features(), &ckpt, "stimulus_ids", &serde_json::to_string(&shuffled).unwrap());
    let out = tmp.path().join("out");
    let o = run(&[
        "monitor", "--brain", s(&b), "--reference", s(&reference), "--encoder", s(&encoder()), "--out", s(&out), s(&ckpt),
    ]);
    fails_cleanly(&o, &["ckpt.safetensors", "stimulus_ids", "position 3"]);
}

// 4. Errors that name the thing. -----------------------------------------------------------------

#[test]
fn control_characters_in_names_stay_on_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("f.safetensors");
    edit_header(&features(), &f, |h| {
        let m = h.as_object_mut().unwrap();
        let v = m.remove("layers.1.global").unwrap();
        m.insert("layers.1.glob\nal\u{1b}[2J".to_string(), v);
    });
    let line = fails_cleanly(&run(&["score", "--encoder", s(&encoder()), "--features", s(&f), "--brain", s(&brain())]), &[
        "glob\\nal\\u{1b}",
    ]);
    assert!(!line.chars().any(char::is_control));
}

#[test]
fn nan_options_are_refused_and_the_monitor_names_its_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (f, b) = (features(), brain());
    for (flag, value) in [("--lr", "NaN"), ("--val-fraction", "NaN"), ("--weight-decay", "inf")] {
        let o = run(&["fit", "--features", s(&f), "--brain", s(&b), "--out", s(&out), flag, value]);
        fails_cleanly(&o, &[flag]);
    }
    let o = run(&["monitor", "--brain", s(&b), "--reference", s(&f), "--out", s(&out), "--val-fraction", "1.5", s(&f)]);
    fails_cleanly(&o, &["--val-fraction"]);
    assert!(!out.exists());
}

#[test]
fn rank_with_a_very_long_model_name_does_not_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let long = tmp.path().join("long.safetensors");
    set_meta(&features(), &long, "model", &"x".repeat(70_000));
    let out = tmp.path().join("rank");
    let o = run(&[
        "rank", "--brain", s(&brain()), s(&long), s(&features()), "--method", "ridge", "--quiet", "--out", s(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let table = String::from_utf8_lossy(&o.stdout);
    // The header and the two rows stay narrow (the legend below them is prose).
    assert!(table.contains('…') && table.lines().take(3).all(|l| l.chars().count() < 200), "{table}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("rank.json")).unwrap()).unwrap();
    assert!(json["rows"].as_array().unwrap().iter().any(|r| r["name"].as_str().unwrap().len() == 70_000));
}

// 3. A folder gets a command's whole set of files, or is left as it was. ----------------------

/// Every file in `dir` with its bytes (hidden ones included), to compare a folder before and
/// after a failed run.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = if e.path().is_file() { std::fs::read(e.path()).unwrap() } else { b"<dir>".to_vec() };
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    v.sort();
    v
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

/// Overwrites element `index` of the f32 tensor `name` of a safetensors file.
fn poke_f32(path: &Path, name: &str, index: usize, value: f32) {
    let mut b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let start = h[name]["data_offsets"][0].as_u64().unwrap() as usize + 8 + n + 4 * index;
    b[start..start + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

/// `plot FIT_DIR` (whose default output is the fit folder) checks the whole fit before it
/// draws: a report that does not match, a corrupt encoder, selectors over more layers than the
/// report or a NaN R² are refused, and not one of the existing pictures is replaced.
#[test]
fn plot_checks_the_whole_fit_before_replacing_any_picture() {
    let tmp = tempfile::tempdir().unwrap();
    let fit = data().join("fit");
    type Edit = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        (
            "a report whose ROI histograms do not match its layers",
            Box::new(|d: &Path| {
                let p = d.join("report.json");
                let mut r: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                for roi in r["rois"].as_array_mut().unwrap() {
                    roi["layer_histogram"] = serde_json::json!([1, 2, 3, 4, 5]);
                }
                std::fs::write(&p, serde_json::to_vec(&r).unwrap()).unwrap();
            }),
            &["histogram"],
        ),
        (
            "a report over fewer layers than the selectors",
            Box::new(|d: &Path| {
                let p = d.join("report.json");
                let mut r: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                r["n_layers"] = serde_json::json!(1);
                std::fs::write(&p, serde_json::to_vec(&r).unwrap()).unwrap();
            }),
            &["layers"],
        ),
        ("a NaN R²", Box::new(|d: &Path| poke_f32(&d.join("selectors.safetensors"), "r2", 3, f32::NAN)), &["r2", "non-finite"]),
        (
            "a corrupt encoder (a NaN bias)",
            Box::new(|d: &Path| poke_f32(&d.join("encoder.safetensors"), "bias", 0, f32::NAN)),
            &["encoder.safetensors", "bias"],
        ),
        (
            "an encoder whose metadata contradicts its tensors",
            Box::new(|d: &Path| {
                let p = d.join("encoder.safetensors");
                set_meta(&p.clone(), &p, "grid", "0");
            }),
            &["encoder.safetensors", "grid"],
        ),
    ];
    for (i, (what, edit, words)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("fit{i}"));
        copy_dir(&fit, &dir);
        edit(&dir);
        let before = snapshot(&dir);
        let o = run(&["plot", s(&dir), "--brain", s(&brain())]);
        let line = fails_cleanly(&o, words);
        assert_eq!(snapshot(&dir), before, "{what}: the failed plot changed the fit folder ({line})");
    }
    // The unedited fit redraws; a temporary left by a killed run (a pid that cannot exist) goes.
    let dir = tmp.path().join("good");
    copy_dir(&fit, &dir);
    let stale = dir.join(".layer_map.png.4194399.0.tmp");
    std::fs::write(&stale, b"half").unwrap();
    let o = run(&["plot", s(&dir), "--brain", s(&brain())]);
    stdout_ok(&o);
    assert!(!stale.exists(), "the stale temporary of a dead process is still there");
    assert!(!snapshot(&dir).iter().any(|(n, _)| n.starts_with(".factortopy")), "{:?}", snapshot(&dir));
}

/// `fit` whose report.json cannot be written (here a folder of that name) fails with the name
/// and leaves the output folder as it was: no encoder, selectors or pictures of the failed run.
#[test]
fn fit_that_cannot_write_its_report_leaves_the_folder_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("report.json")).unwrap();
    std::fs::write(out.join("report.json/keep"), b"x").unwrap();
    std::fs::write(out.join("layer_map.png"), b"the user's picture").unwrap();
    let before = snapshot(&out);
    let o = run(&[
        "fit", "--features", s(&features()), "--brain", s(&brain()), "--out", s(&out), "--preset", "fast", "--epochs", "1",
        "--dim", "4", "--grid", "2", "--quiet",
    ]);
    fails_cleanly(&o, &["report.json"]);
    assert_eq!(snapshot(&out), before);
}

/// `monitor` whose state cannot be written (a folder named monitor.safetensors) keeps the
/// previous history.jsonl and charts: the history is not replaced before the state is written.
#[test]
fn monitor_that_cannot_write_its_state_keeps_the_previous_history() {
    let tmp = tempfile::tempdir().unwrap();
    // An encoder that predicts the held-out images (the shared one is fitted for one epoch).
    let fit = tmp.path().join("fit");
    let o = run(&[
        "fit", "--features", s(&features()), "--brain", s(&brain()), "--out", s(&fit), "--preset", "fast", "--epochs", "40",
        "--dim", "4", "--grid", "2", "--bootstrap", "0", "--permutations", "0", "--no-plots", "--quiet",
    ]);
    stdout_ok(&o);
    let enc = fit.join("encoder.safetensors");
    let out = tmp.path().join("out");
    let args = |out: &Path, steps: &str| -> Output {
        run(&[
            "monitor", "--brain", s(&brain()), "--reference", s(&features()), "--encoder", s(&enc), "--out", s(out),
            "--steps", steps, s(&features()), "--quiet",
        ])
    };
    let o = args(&out, "5");
    stdout_ok(&o);
    std::fs::remove_file(out.join("monitor.safetensors")).unwrap();
    std::fs::create_dir_all(out.join("monitor.safetensors/x")).unwrap();
    let before = snapshot(&out);
    fails_cleanly(&args(&out, "9"), &["monitor.safetensors"]);
    assert_eq!(snapshot(&out), before);
    assert!(String::from_utf8_lossy(&std::fs::read(out.join("history.jsonl")).unwrap()).contains("\"step\":5"));
}

/// A noise ceiling so small that the planted noise would be infinite is refused by validation,
/// before any file is written, not found later as non-finite responses.
#[test]
fn a_tiny_noise_ceiling_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("syn");
    for nc in ["1e-320", "1e-9"] {
        let o = run(&["synth", "--out", s(&out), "--images", "20", "--voxels", "10", "--noise-ceiling", nc]);
        fails_cleanly(&o, &["noise ceiling", "1e-6"]);
        assert!(!out.exists());
    }
}

// 4. Under an address-space limit, no abort. ---------------------------------------------------

/// `fit` under `ulimit -v` with many worker threads: the matrix-product workspace each thread
/// may map (sized by the kernels from the cache sizes, allocated infallibly) is reserved out of
/// the address space before anything is allocated, and the worker pool takes only the threads
/// whose workspace fits, so the run fits (with a note when it took fewer threads) or stops with
/// one line naming the limit; it is never killed by an aborted allocation. Under a 6 GiB limit
/// this small fit must run, whatever thread count is asked for.
#[test]
fn fit_under_an_address_space_limit_fits_or_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    for (threads, kib) in [(6, 6 << 20), (64, 6 << 20), (6, 3 << 20)] {
        let out = tmp.path().join(format!("out-{threads}-{kib}"));
        let script = format!(
            "ulimit -v {kib} && RAYON_NUM_THREADS={threads} exec '{}' fit --features '{}' --brain '{}' --out '{}' \
             --preset fast --epochs 1 --dim 4 --grid 2 --bootstrap 0 --permutations 0 --quiet",
            env!("CARGO_BIN_EXE_factortopy"),
            s(&features()),
            s(&brain()),
            s(&out)
        );
        let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        if kib == 6 << 20 {
            assert_eq!(o.status.code(), Some(0), "{threads} threads under ulimit -v {kib}: {err}");
        }
        if threads == 64 {
            assert!(err.contains("note: the address-space limit (ulimit -v) leaves room for"), "{err}");
        }
        match o.status.code() {
            Some(0) => assert!(out.join("report.json").is_file(), "{err}"),
            Some(1) => {
                let line = fails_cleanly(&o, &[]);
                assert!(line.contains("ulimit -v") || line.contains("out of memory"), "{line}");
                assert!(!out.exists(), "the refused fit left {}", out.display());
            }
            _ => panic!("{threads} threads under ulimit -v {kib}: {:?}\n{err}", o.status),
        }
    }
}

// 5. A full filesystem. ------------------------------------------------------------------------

/// A small filesystem mounted for one test and unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    /// A tmpfs of `kib` KiB at `dir`, or `None` where this machine does not allow mounting one
    /// (not root, or no tmpfs).
    fn mount(dir: &Path, kib: u64) -> Option<SmallFs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs", s(dir)])
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| SmallFs(dir.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

/// `fit` and `synth` into a folder on a filesystem that fills up part-way: whatever the size,
/// the command either writes its whole set or fails with one line and leaves the folder exactly
/// as it found it (the user's own file untouched, no staged files, no temporaries).
#[test]
fn a_full_filesystem_leaves_the_folder_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let mut failed = 0;
    for kib in [8u64, 48, 160, 600, 4096] {
        let mount = tmp.path().join(format!("fs{kib}"));
        let Some(_fs) = SmallFs::mount(&mount, kib) else {
            eprintln!("not run: this machine does not allow mounting a small tmpfs (needs root)");
            return;
        };
        for cmd in ["fit", "synth"] {
            let out = mount.join(cmd);
            std::fs::create_dir_all(&out).unwrap();
            std::fs::write(out.join("notes.txt"), b"the user's own file").unwrap();
            let mut c = bin();
            match cmd {
                "fit" => c.args(["fit", "--features", s(&features()), "--brain", s(&brain()), "--out", s(&out)]).args([
                    "--preset", "fast", "--epochs", "1", "--dim", "4", "--grid", "2", "--bootstrap", "0",
                    "--permutations", "0", "--quiet",
                ]),
                _ => c.args(["synth", "--out", s(&out), "--images", "200", "--voxels", "300", "--layers", "3"]),
            };
            let o = c.output().unwrap();
            let mut names: Vec<String> =
                std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            if o.status.success() {
                let expected = if cmd == "fit" { "report.json" } else { "brain.safetensors" };
                assert!(names.iter().any(|n| n == expected), "{cmd} on {kib} KiB: {names:?}");
            } else {
                failed += 1;
                let line = fails_cleanly(&o, &[]);
                assert!(line.to_lowercase().contains("space"), "{cmd} on {kib} KiB: {line}");
                assert_eq!(names, ["notes.txt"], "{cmd} on {kib} KiB left files behind: {line}");
            }
            assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"the user's own file");
        }
    }
    // The sizes reach from a filesystem too small for anything to one that holds everything.
    assert!(failed >= 2, "no size made a command fail part-way");
}
