// `factortopy rank` and `factortopy::rank::rank` on planted data: three networks
// against one brain planted with a hierarchy on the first. The second network is the first
// with its layers in reverse order (so the brain's hierarchy is reversed relative to it), the
// third has them shuffled. The ranking must put the hierarchical network first and the
// reversed one last, and `--min-slope` must gate with exit status 3.

use std::path::Path;

use factortopy::data::Features;
use factortopy::engine::{Estimator, Method};
use factortopy::rank::{rank, RankConfig};
use factortopy::synth::{generate, Scenario, SynthConfig};

use crate::common::cli::bin;

fn permuted(f: &Features, order: &[usize], name: &str) -> Features {
    Features {
        model: name.to_string(),
        layer_names: order.iter().map(|&i| f.layer_names[i].clone()).collect(),
        stimulus_ids: f.stimulus_ids.clone(),
        layers: order.iter().map(|&i| f.layers[i].clone()).collect(),
    }
}

/// Brain planted hierarchically on `net-hier`; the other two are layer permutations of it.
fn setup(dir: &Path) -> (factortopy::data::Brain, Vec<Features>) {
    setup_with(dir, 1.0)
}

/// [`setup`] with a fraction of pure-noise voxels (`1 − signal_fraction`), whose layer choices
/// spread the depths within each ROI.
fn setup_with(dir: &Path, signal_fraction: f64) -> (factortopy::data::Brain, Vec<Features>) {
    let data = generate(&SynthConfig {
        scenario: Scenario::Hierarchical,
        n_images: 600,
        n_voxels: 600,
        n_layers: 4,
        width: 32,
        grid: 4,
        noise_ceiling: 0.8,
        seed: 5,
        signal_fraction,
        prf_size: None,
    })
    .unwrap();
    let hier = permuted(&data.features, &[0, 1, 2, 3], "net-hier");
    let rev = permuted(&data.features, &[3, 2, 1, 0], "net-rev");
    let shuf = permuted(&data.features, &[2, 0, 3, 1], "net-shuf");
    data.brain.save(&dir.join("brain.safetensors")).unwrap();
    for f in [&rev, &hier, &shuf] {
        f.save(&dir.join(format!("{}.safetensors", f.model))).unwrap();
    }
    (data.brain, vec![rev, hier, shuf])
}

fn rank_cmd(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = bin();
    c.arg("rank").arg("--brain").arg(dir.join("brain.safetensors"));
    for n in ["net-rev", "net-hier", "net-shuf"] {
        c.arg(dir.join(format!("{n}.safetensors")));
    }
    c.args(extra).arg("--quiet");
    c.output().unwrap()
}

fn names(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["rows"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn factortopy_rank_orders_hierarchical_first_and_reversed_last() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let out = tmp.path().join("out");
    // Small and fast: the `fast` preset, 3 epochs, bottleneck 16 (a few seconds per network).
    let o = rank_cmd(
        tmp.path(),
        &["--format", "json", "--min-slope", "0.2", "--preset", "fast", "--epochs", "3", "--dim", "16", "--grid", "4",
          "--reg-steps", "40", "--out", out.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    eprintln!("{stdout}");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let order = names(&stdout);
    assert_eq!(order.first().map(String::as_str), Some("net-hier"), "{order:?}");
    assert_eq!(order.last().map(String::as_str), Some("net-rev"), "{order:?}");
    assert!(out.join("roi_depth.png").is_file() && out.join("rank.json").is_file());
    // Every row carries its slope interval and permutation p-value; the planted hierarchy is
    // far from the null, and each adjacent pair has a paired test.
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    for r in rows {
        let (lo, hi) = (r["slope_interval"]["lo"].as_f64().unwrap(), r["slope_interval"]["hi"].as_f64().unwrap());
        assert!(lo <= hi, "{r}");
    }
    assert!(rows[0]["p_slope"].as_f64().unwrap() < 0.01, "{}", rows[0]);
    assert!(rows[0]["vs_next"]["p_value"].is_number() && rows[2]["vs_next"].is_null());
    assert_eq!(v["n_resamples"], 1000);
}

/// Two copies of one network are not significantly different; the hierarchical network and
/// its reversal are, paired over the same held-out images and voxels.
#[test]
fn paired_tests_separate_real_differences_from_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let (brain, nets) = setup_with(tmp.path(), 0.8);
    let (rev, hier) = (nets[0].clone(), nets[1].clone());
    let copy = Features { model: "net-hier-copy".into(), ..hier.clone() };
    let cfg = RankConfig { estimator: Estimator { method: Method::Ridge, ..Estimator::default() } };
    let rows = rank(&brain, &[rev, copy, hier], &cfg).unwrap();
    let order: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    // The copies tie; ties keep the input order.
    assert_eq!(order, ["net-hier-copy", "net-hier", "net-rev"]);
    let same = rows[0].vs_next.unwrap();
    assert!(!same.significant && same.estimate.abs() < 1e-9, "{same:?}");
    let real = rows[1].vs_next.unwrap();
    assert!(real.significant && real.p_value < 0.01 && real.interval.lo > 0.5, "{real:?}");
    assert!(rows[2].vs_next.is_none());
    let iv = rows[1].slope_interval.unwrap();
    let slope1 = rows[1].slope.unwrap();
    assert!(iv.lo < slope1 && slope1 <= iv.hi && iv.hi - iv.lo < 0.5, "{iv:?}");

    // --gate lower compares the interval's lower bound: a threshold between it and the point
    // slope passes the point gate and fails the lower one.
    let mid = format!("{}", (iv.lo + slope1) / 2.0);
    let o = rank_cmd(tmp.path(), &["--method", "ridge", "--min-slope", &mid]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("95% CI") && table.contains("vs next") && table.contains("paired bootstrap"), "{table}");
    let o = rank_cmd(tmp.path(), &["--method", "ridge", "--min-slope", &mid, "--gate", "lower"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lower bound"));
}

#[test]
fn ridge_rank_library_call_and_min_slope_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let (brain, nets) = setup(tmp.path());
    let cfg = RankConfig { estimator: Estimator { method: Method::Ridge, ..Estimator::default() } };
    let rows = rank(&brain, &nets, &cfg).unwrap();
    let order: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(order, ["net-hier", "net-shuf", "net-rev"]);
    assert!(rows[0].slope.unwrap() > 0.5 && rows[2].slope.unwrap() < -0.5, "{rows:?}");
    assert_eq!(rows.iter().map(|r| r.rank).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(rows[0].roi_depth.len(), brain.roi_names.len());

    // The gate: exit status 3 below --min-slope, 0 at or above it.
    let o = rank_cmd(tmp.path(), &["--method", "ridge", "--min-slope", "5"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("gate failed"));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.lines().nth(1).unwrap().contains("net-hier"), "{table}");
    let o = rank_cmd(tmp.path(), &["--method", "ridge", "--min-slope", "-1", "--format", "markdown"]);
    assert_eq!(o.status.code(), Some(0));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.starts_with("| rank | network |") && md.contains("net-rev"), "{md}");
    // A usage error exits with clap's status 2, not with the gate's 3.
    let o = rank_cmd(tmp.path(), &["--format", "yaml"]);
    assert_eq!(o.status.code(), Some(2), "clap usage error");
}
