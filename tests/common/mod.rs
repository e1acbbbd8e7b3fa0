//! Set-up shared by the integration tests: planted-hierarchy data, small fitting problems, the
//! recovery measures of DESIGN §8, running the `factortopy` binary ([`cli`]) and, with the
//! `cuda` feature, the GPU skip logic. Each test crate uses part of it.
#![allow(dead_code)]

pub mod cli;

use factortopy::data::Brain;
use factortopy::model::{BrainTensors, Encoder, EncoderSpec, PreparedFeatures, Selections, Split};
use factortopy::scores::HierarchyScores;
use factortopy::synth::{generate, Scenario, Synthetic, SynthConfig};

/// Planted data with the brain z-scored as a loaded file would be.
pub fn planted(cfg: &SynthConfig) -> (Synthetic, Brain) {
    let syn = generate(cfg).expect("synthetic data");
    let mut brain = syn.brain.clone();
    brain.zscore("synthetic").expect("z-score");
    (syn, brain)
}

/// The recovery scenario of tests/recovery.rs and tests/gpu_fit.rs: 1500 images, 2000 voxels,
/// 6 layers of width 64, grid 8, noise ceiling 0.6.
pub fn recovery_scenario() -> SynthConfig {
    SynthConfig {
        scenario: Scenario::Hierarchical,
        n_images: 1500,
        n_voxels: 2000,
        n_layers: 6,
        width: 64,
        grid: 8,
        noise_ceiling: 0.6,
        seed: 1,
        ..SynthConfig::default()
    }
}

/// The recovery scenario at `n_images` × `n_voxels` (smaller ones keep several fits within a
/// test's time budget), planted and z-scored; also returns the scenario's settings.
pub fn planted_recovery(n_images: usize, n_voxels: usize) -> (SynthConfig, Synthetic, Brain) {
    let cfg = SynthConfig { n_images, n_voxels, ..recovery_scenario() };
    let (syn, brain) = planted(&cfg);
    (cfg, syn, brain)
}

/// A small fitting problem: prepared features, brain tensors, a fresh encoder (D 16, G 4) and
/// the split, on 60 images × 150 voxels × 4 layers.
pub fn small_problem(seed: u64) -> (PreparedFeatures, BrainTensors, Encoder, Split) {
    let (syn, brain) = planted(&SynthConfig {
        scenario: Scenario::Hierarchical,
        n_images: 60,
        n_voxels: 150,
        n_layers: 4,
        width: 16,
        grid: 4,
        seed,
        ..SynthConfig::default()
    });
    let prepared = PreparedFeatures::new(&syn.features, 4, factortopy::model::Resample::Bilinear, None).unwrap();
    let bt = BrainTensors::new(&brain, None).unwrap();
    let spec = EncoderSpec {
        widths: prepared.widths().to_vec(),
        d: 16,
        grid: 4,
        resample: prepared.resample(),
        n_voxels: brain.n_voxels(),
        coord_norm: bt.coord_norm,
        layer_names: syn.features.layer_names.clone(),
        model: "synthetic".into(),
        layer_units: None,
    };
    let enc = Encoder::new(spec, seed).unwrap();
    let split = Split::new(prepared.n_images(), 0.1, seed).unwrap();
    (prepared, bt, enc, split)
}

/// Every parameter of an encoder, flattened in `named_vars` order.
pub fn flat(enc: &Encoder) -> Vec<f32> {
    enc.named_vars().iter().flat_map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
}

/// How well a fit recovered what was planted (DESIGN §8), over the signal voxels.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    /// Fraction whose argmax layer is the planted layer.
    pub layer_acc: f64,
    /// Fraction whose location is within one grid cell of the planted one on both axes.
    pub space_acc: f64,
    /// Mean held-out R².
    pub mean_r2: f64,
    pub slope: f64,
    pub spearman: f64,
}

impl Recovery {
    pub fn measure(syn: &Synthetic, brain: &Brain, grid: usize, sel: &Selections, val_r2: &[f32]) -> Self {
        let truth = &syn.truth;
        let l = sel.n_layers();
        let signal: Vec<usize> = (0..truth.n_voxels()).filter(|&v| truth.signal[v] == 1).collect();
        let argmax = |v: usize| {
            let row = &sel.layer_probs.data[v * l..(v + 1) * l];
            (0..l).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap()
        };
        let frac = |n: usize| n as f64 / signal.len() as f64;
        let layer_acc = frac(signal.iter().filter(|&&v| argmax(v) as i32 == truth.layer[v]).count());
        let cell = 2.0 / grid as f32;
        let space_acc = frac(
            signal
                .iter()
                .filter(|&&v| {
                    (sel.space.data[v * 2] - truth.space.data[v * 2]).abs() <= cell
                        && (sel.space.data[v * 2 + 1] - truth.space.data[v * 2 + 1]).abs() <= cell
                })
                .count(),
        );
        let mean_r2 = signal.iter().map(|&v| val_r2[v] as f64).sum::<f64>() / signal.len() as f64;
        let h = HierarchyScores::compute(sel, brain, None).unwrap();
        Recovery { layer_acc, space_acc, mean_r2, slope: h.slope.expect("a defined slope"), spearman: h.spearman.expect("a defined Spearman rho") }
    }

    /// The thresholds of tests/recovery.rs, for a scenario with noise ceiling `nc`.
    pub fn assert_recovered(&self, nc: f64) {
        eprintln!("{self:?}");
        assert!(self.layer_acc >= 0.85, "argmax layer matches the planted layer for {:.3} of signal voxels", self.layer_acc);
        assert!(self.mean_r2 >= 0.7 * nc, "mean validation R² over signal voxels {:.3}", self.mean_r2);
        assert!(self.slope >= 0.6, "slope {:.3}", self.slope);
        assert!(self.spearman >= 0.8, "spearman {:.3}", self.spearman);
        assert!(self.space_acc >= 0.8, "location within one grid cell for {:.3} of signal voxels", self.space_acc);
    }
}

/// The CUDA device the GPU tests use (`FACTORTOPY_TEST_CUDA_DEVICE`, default 0).
pub fn cuda_ordinal() -> usize {
    std::env::var("FACTORTOPY_TEST_CUDA_DEVICE").ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The test's GPU, or `None` after printing `SKIPPED: <test>: <reason>`. With
/// `FACTORTOPY_TEST_REQUIRE_CUDA=1` (set by .ci/cuda_emu_check.sh) a missing device fails the
/// test instead.
#[cfg(feature = "cuda")]
pub fn gpu_or_skip(test: &str) -> Option<std::sync::Arc<factortopy::cuda::Gpu>> {
    match factortopy::cuda::gpu(cuda_ordinal()) {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("FACTORTOPY_TEST_REQUIRE_CUDA").is_ok_and(|v| v == "1") {
                panic!("{test}: FACTORTOPY_TEST_REQUIRE_CUDA=1 but cuda:{} cannot be used: {e}", cuda_ordinal());
            }
            eprintln!("SKIPPED: {test}: no usable CUDA device cuda:{}: {e}", cuda_ordinal());
            None
        }
    }
}

/// Whether the test's device is factortopy's CUDA emulator (scripts/cuda-emu), which runs the
/// kernels on the CPU thousands of times slower than a GPU: tests that fit at DESIGN's scale use
/// smaller problems there (and say so), everything else is the same.
#[cfg(feature = "cuda")]
pub fn on_emulator(g: &factortopy::cuda::Gpu) -> bool {
    g.name.contains("emulator")
}
