//! Progress of the long commands: with stderr not a terminal (here a pipe), `fit`,
//! `fit --method ridge`, `rank` and `monitor` print one plain line per epoch or ridge layer with
//! the held-out R² and the time left, and no terminal control characters; `--quiet` prints none.
//! (The bar drawn on a terminal is tested in `cli::progress`.)

use std::path::Path;

use factortopy::synth::{generate, Scenario, SynthConfig};

use crate::common::cli::bin;

fn setup(dir: &Path) {
    let data = generate(&SynthConfig {
        scenario: Scenario::Hierarchical,
        n_images: 60,
        n_voxels: 40,
        n_layers: 3,
        width: 8,
        grid: 2,
        seed: 3,
        ..SynthConfig::default()
    })
    .unwrap();
    data.brain.save(&dir.join("brain.safetensors")).unwrap();
    data.features.save(&dir.join("features.safetensors")).unwrap();
}

/// Runs the CLI; returns its stderr after checking it succeeded.
fn stderr_of(args: &[&str]) -> String {
    let o = bin().args(args).output().unwrap();
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(o.status.success(), "{args:?}: {err}");
    assert!(!err.contains('\r') && !err.contains('\x1b'), "terminal control characters in piped progress: {err:?}");
    err
}

fn lines_with<'a>(text: &'a str, start: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(start)).collect()
}

#[test]
fn plain_lines_when_piped_and_nothing_when_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (f, b) = (s(&dir.join("features.safetensors")), s(&dir.join("brain.safetensors")));
    let small = ["--preset", "fast", "--epochs", "2", "--dim", "4", "--grid", "2", "--bootstrap", "0", "--permutations", "0"];
    let fit = |out: &str, extra: &[&str]| {
        let out = s(&dir.join(out));
        let mut args = vec!["fit", "--features", &f, "--brain", &b, "--out", &out, "--no-plots"];
        args.extend_from_slice(&small);
        args.extend_from_slice(extra);
        stderr_of(&args)
    };

    let err = fit("fit", &[]);
    let epochs = lines_with(&err, "epoch ");
    assert_eq!(epochs.len(), 2, "{err}");
    for (k, l) in epochs.iter().enumerate() {
        assert!(l.starts_with(&format!("epoch   {}/2  step ", k + 1)), "{l}");
        assert!(l.contains("val R² ") && l.contains("(best ") && l.ends_with(" left"), "{l}");
    }
    // The last epoch has no time left.
    assert!(epochs[1].ends_with("≤ 0s left"), "{}", epochs[1]);
    assert!(err.contains("schedule: preset fast: lr 0.01, batch 32"), "{err}");

    let quiet = fit("quiet", &["--quiet"]);
    assert!(lines_with(&quiet, "epoch").is_empty() && !quiet.contains("schedule:"), "{quiet}");

    // Without the FactorTopy-only flags of `small`, which the ridge baseline refuses.
    let ridge_out = s(&dir.join("ridge"));
    let ridge = stderr_of(&[
        "fit", "--features", &f, "--brain", &b, "--out", &ridge_out, "--no-plots", "--method", "ridge", "--alphas", "0:1:2",
        "--folds", "2", "--bootstrap", "0", "--permutations", "0",
    ]);
    let layers = lines_with(&ridge, "layer ");
    assert_eq!(layers.len(), 3, "{ridge}");
    assert!(layers[0].starts_with("layer  1/3 (") && layers[0].contains("mean held-out R² ") && layers[0].ends_with(" left"));

    let rank_out = s(&dir.join("rank"));
    let mut rank = vec!["rank", "--brain", &b, &f, &f, "--out", &rank_out];
    rank.extend_from_slice(&small);
    let err = stderr_of(&rank);
    assert_eq!(lines_with(&err, "[1/2] epoch ").len(), 2, "{err}");
    assert_eq!(lines_with(&err, "[2/2] epoch ").len(), 2, "{err}");
    assert!(err.contains("[2/2] fitting "), "{err}");
    rank.push("--quiet");
    let quiet = stderr_of(&rank);
    assert!(!quiet.contains("epoch") && !quiet.contains("fitting"), "{quiet}");

    let mon_out = s(&dir.join("monitor"));
    // The reference encoder must predict its held-out images: a longer fit of this tiny set.
    let mut monitor = vec!["monitor", "--brain", &b, "--reference", &f, "--out", &mon_out, &f];
    monitor.extend_from_slice(&["--preset", "fast", "--epochs", "15", "--batch-size", "4", "--dim", "8", "--grid", "2"]);
    monitor.extend_from_slice(&["--val-fraction", "0.2"]);
    let err = stderr_of(&monitor);
    assert_eq!(lines_with(&err, "epoch ").len(), 15, "{err}");
    monitor.push("--quiet");
    assert!(lines_with(&stderr_of(&monitor), "epoch").is_empty());
}
