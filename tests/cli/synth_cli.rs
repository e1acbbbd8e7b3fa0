//! `factortopy synth`, including `--from-features` on a file the generator wrote and on a file
//! without global tokens.

// Index loops over voxels and images read closer to the maths here.
#![allow(clippy::needless_range_loop)]

use clap::Parser;

use factortopy::cli::{Cli, Command};
use factortopy::data::{Brain, Features};
use factortopy::synth::{self, Truth};

fn run(args: &[&str]) -> factortopy::Result<i32> {
    let mut argv = vec!["factortopy", "synth"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("arguments parse");
    match cli.command {
        Command::Synth(a) => factortopy::cli::synth::run(a),
        #[allow(unreachable_patterns)]
        _ => unreachable!(),
    }
}

const SMALL: [&str; 10] = [
    "--images", "24", "--voxels", "30", "--layers", "4", "--width", "6", "--grid", "3",
];

#[test]
fn writes_three_files_with_the_requested_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flat");
    let out_s = out.to_str().unwrap();
    let mut args = vec![
        "--out",
        out_s,
        "--scenario",
        "flat-late",
        "--seed",
        "3",
        "--noise-ceiling",
        "0.4",
    ];
    args.extend_from_slice(&SMALL);
    assert_eq!(run(&args).unwrap(), 0);
    let f = Features::load(&out.join(synth::FEATURES_FILE)).unwrap();
    assert_eq!(f.model, "synthetic-flat-late");
    assert_eq!(f.n_images(), 24);
    assert_eq!(f.n_layers(), 4);
    assert_eq!(f.layers[0].local.shape, vec![24, 6, 6, 6]);
    assert_eq!(f.layers[3].local.shape, vec![24, 6, 3, 3]);
    let b = Brain::load_with(&out.join(synth::BRAIN_FILE), false).unwrap();
    assert_eq!(b.responses.shape, vec![24, 30]);
    let t = Truth::load(&out.join(synth::TRUTH_FILE)).unwrap();
    // flat-late with L = 4: ceil(4/3) = 2, layers 2 and 3.
    assert!(t.layer.iter().all(|&l| l == 2 || l == 3), "{:?}", t.layer);
    let nc = b.noise_ceiling.unwrap();
    for v in 0..30 {
        assert_eq!(nc[v], if t.signal[v] == 1 { 0.4 } else { 0.0 });
    }
}

#[test]
fn from_features_plants_on_a_given_network() {
    let dir = tempfile::tempdir().unwrap();
    let gen = dir.path().join("gen");
    let gen_s = gen.to_str().unwrap();
    let mut args = vec!["--out", gen_s];
    args.extend_from_slice(&SMALL);
    run(&args).unwrap();
    let feats = gen.join(synth::FEATURES_FILE);

    let planted = dir.path().join("planted");
    let planted_s = planted.to_str().unwrap();
    run(&[
        "--out",
        planted_s,
        "--from-features",
        feats.to_str().unwrap(),
        "--scenario",
        "reversed",
        "--voxels",
        "50",
    ])
    .unwrap();
    assert!(!planted.join(synth::FEATURES_FILE).exists());
    let b = Brain::load(&planted.join(synth::BRAIN_FILE)).unwrap();
    assert_eq!(b.responses.shape, vec![24, 50]);
    let t = Truth::load(&planted.join(synth::TRUTH_FILE)).unwrap();
    // Reversed with L = 4: V1 reads the last layer, high-level ROIs the first.
    for v in 0..50 {
        let want = [3, 2, 1, 1, 0, 0, 0][b.roi[v] as usize];
        assert_eq!(t.layer[v], want);
    }
    // The result is what the library gives on the same features.
    let f = Features::load(&feats).unwrap();
    let cfg = synth::SynthConfig {
        scenario: synth::Scenario::Reversed,
        n_voxels: 50,
        n_layers: 4,
        n_images: 24,
        ..synth::SynthConfig::default()
    };
    let (lib_brain, lib_truth) = synth::plant(&f, &cfg).unwrap();
    assert_eq!(lib_truth, t);
    let raw = Brain::load_with(&planted.join(synth::BRAIN_FILE), false).unwrap();
    assert!(
        raw.responses == lib_brain.responses,
        "the CLI and the library planted different responses"
    );

    // Shape flags conflict with a features file and are refused, not ignored.
    let e = run(&[
        "--out",
        planted_s,
        "--from-features",
        feats.to_str().unwrap(),
        "--layers",
        "3",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("--layers") && e.contains("--from-features"),
        "{e}"
    );
}

#[test]
fn from_features_without_global_tokens_and_uneven_grids() {
    // A user's network: no CLS tokens, non-square and differing grids, differing widths.
    let mut rng = factortopy::rng::Rng::new(1);
    let n = 20;
    let mut mk = |c: usize, h: usize, w: usize| {
        let data = (0..n * c * h * w).map(|_| rng.normal() as f32).collect();
        factortopy::data::LayerFeatures {
            local: factortopy::data::Array::new(vec![n, c, h, w], data).unwrap(),
            global: None,
        }
    };
    let layers = vec![mk(5, 7, 9), mk(12, 4, 4), mk(3, 2, 3)];
    let f = Features {
        model: "mine".into(),
        layer_names: vec!["a".into(), "b".into(), "c".into()],
        stimulus_ids: Some((0..n).map(|i| format!("img{i}")).collect()),
        layers,
    };
    let dir = tempfile::tempdir().unwrap();
    let fp = dir.path().join("mine.safetensors");
    f.save(&fp).unwrap();
    let out = dir.path().join("o");
    run(&[
        "--out",
        out.to_str().unwrap(),
        "--from-features",
        fp.to_str().unwrap(),
        "--voxels",
        "21",
        "--scenario",
        "shuffled",
    ])
    .unwrap();
    let b = Brain::load(&out.join(synth::BRAIN_FILE)).unwrap();
    assert_eq!(
        b.stimulus_ids, f.stimulus_ids,
        "the brain lists the features' images"
    );
    factortopy::data::check_pair(&f, "features", &b, "brain").unwrap();
    let t = Truth::load(&out.join(synth::TRUTH_FILE)).unwrap();
    assert!(t.layer.iter().all(|&l| (0..3).contains(&l)));
}

#[test]
fn bad_arguments_are_clear_errors() {
    let e = Cli::try_parse_from([
        "factortopy",
        "synth",
        "--out",
        "x",
        "--scenario",
        "diagonal",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("diagonal") && e.contains("hierarchical") && e.contains("flat-early"),
        "{e}"
    );
    assert!(
        Cli::try_parse_from(["factortopy", "synth"]).is_err(),
        "--out is required"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let e = run(&["--out", out.to_str().unwrap(), "--noise-ceiling", "0"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("noise ceiling"), "{e}");
    let e = run(&["--out", out.to_str().unwrap(), "--voxels", "3"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("voxels"), "{e}");
    let missing = dir.path().join("absent.safetensors");
    let e = run(&[
        "--out",
        out.to_str().unwrap(),
        "--from-features",
        missing.to_str().unwrap(),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("absent.safetensors"), "{e}");
}
