//! The fast trainer against the oracle: candle autograd on the unfused formula (every gradient,
//! at awkward shapes), the candle trainer (parameters after several AdamW steps), itself
//! (bit-identical reruns) and planted data (a short fit recovers the planted layers).

use super::*;
use crate::data::{Array, Features, LayerFeatures};
use crate::model::encoder::{EncoderSpec, Readout};
use crate::engine::candle_cpu::{objective, train_step, TrainState};
use crate::engine::predict::predict_cpu as predict_images;
use crate::model::FitStart;
use crate::model::posenc::CoordNorm;
use crate::rng::Rng;
use crate::synth::{generate, Scenario, SynthConfig};
use candle_core::{Device, Tensor};

/// A problem of the given shape: `maps[l] = (C_l, H_l, W_l)`, random features, responses and
/// coordinates, and an encoder moved away from its initialisation so that every parameter gets
/// a gradient and the selectors point anywhere, the map border and outside it included.
fn problem(n: usize, v: usize, maps: &[(usize, usize, usize)], d: usize, g: usize, seed: u64) -> (PreparedFeatures, BrainTensors, Encoder) {
    let mut rng = Rng::new(seed);
    let mut randn = |shape: Vec<usize>, s: f64| {
        let k: usize = shape.iter().product();
        Array::new(shape, (0..k).map(|_| (rng.normal() * s) as f32).collect()).unwrap()
    };
    let layers: Vec<LayerFeatures> = maps
        .iter()
        .enumerate()
        .map(|(i, &(c, h, w))| LayerFeatures {
            local: randn(vec![n, c, h, w], 1.0),
            // Layers without a global token take the spatial mean (Features::global).
            global: (i % 2 == 0).then(|| randn(vec![n, c], 1.0)),
        })
        .collect();
    let features = Features {
        model: "awkward".into(),
        layer_names: (0..maps.len()).map(|i| format!("l{i}")).collect(),
        stimulus_ids: None,
        layers,
    };
    // Responses on the scale of the predictions, so both smooth-L1 branches occur.
    let responses = randn(vec![n, v], 0.3);
    let coords = randn(vec![v, 3], 10.0);
    let prepared = PreparedFeatures::new(&features, g, crate::model::Resample::Bilinear, None).unwrap();
    let norm = CoordNorm::from_coords(&coords).unwrap();
    let pe = norm.encode(&coords).unwrap();
    let bt = BrainTensors {
        responses: responses.into(),
        pe: Tensor::from_vec(pe.data, pe.shape.as_slice(), &Device::Cpu).unwrap(),
        coord_norm: norm,
    };
    let spec = EncoderSpec {
        widths: prepared.widths().to_vec(),
        d,
        grid: g,
        resample: prepared.resample(),
        n_voxels: v,
        coord_norm: norm,
        layer_names: features.layer_names.clone(),
        model: "awkward".into(),
        layer_units: None,
    };
    let enc = Encoder::new(spec, seed).unwrap();
    for (_, var) in enc.named_vars() {
        let dims = var.as_tensor().dims().to_vec();
        let k: usize = dims.iter().product();
        let vals: Vec<f32> = (0..k).map(|_| (rng.normal() * 0.3) as f32).collect();
        var.set(&Tensor::from_vec(vals, dims.as_slice(), &Device::Cpu).unwrap()).unwrap();
    }
    (prepared, bt, enc)
}

fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale))
}

/// Loss and every gradient against candle autograd through the unfused readout, at shapes that
/// exercise the SIMD tails and edge cases: V not a multiple of the voxel block, D below and above
/// one SIMD vector and odd, one layer (no entropy term), G = 1 (also with groups of voxels larger
/// than one block of the blocked readout), layers of different widths and map sizes, batches of
/// 1 and odd sizes, the regulariser on and off.
#[test]
fn gradients_match_candle_autograd_at_awkward_shapes() {
    // (N, V, maps, D, G, batch, step of the regulariser clock)
    type Case = (usize, usize, Vec<(usize, usize, usize)>, usize, usize, Vec<usize>, usize);
    let cases: Vec<Case> = vec![
        (9, 67, vec![(3, 4, 4), (7, 3, 5), (5, 2, 2)], 5, 3, vec![0, 2, 3, 5], 50),
        (4, 5, vec![(9, 2, 3)], 17, 1, vec![3], 0),
        (6, 130, vec![(16, 8, 8), (4, 5, 5)], 16, 8, vec![5, 1, 4], 0),
        (5, 70, vec![(33, 3, 3), (2, 6, 6), (1, 2, 2), (8, 4, 4)], 33, 2, vec![4, 0], 150),
        // G 1: most voxels share one cell, so the blocked readout splits their group.
        (4, 230, vec![(6, 3, 3), (3, 2, 2)], 8, 1, vec![1, 3, 2], 0),
    ];
    for (ci, (n, v, maps, d, g, batch, step)) in cases.into_iter().enumerate() {
        let (prepared, bt, enc) = problem(n, v, &maps, d, g, 100 + ci as u64);
        let cfg = FitConfig { d, grid: g, batch_size: batch.len(), reg_steps: 100, readout: Readout::Unfused, ..FitConfig::default() };
        let loss = objective(&enc, &prepared, &bt, &batch, &cfg, step).unwrap();
        let want_loss = loss.to_scalar::<f32>().unwrap() as f64;
        let grads = loss.backward().unwrap();
        let mut fast = FastCpuTrainer::new(&enc, &prepared, &bt, &cfg).unwrap();
        let (got_loss, got) = fast.loss_and_gradients(&batch, step).unwrap();
        assert!((got_loss - want_loss).abs() <= 1e-5 * want_loss.abs(), "case {ci}: loss {got_loss} vs {want_loss}");
        for ((name, var), (name2, g_fast)) in enc.named_vars().into_iter().zip(got) {
            assert_eq!(name, name2);
            let g_ref = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let e = max_rel_err(&g_fast, &g_ref);
            assert!(e <= 1e-4, "case {ci}: gradient of {name}: relative error {e:.2e}");
        }
    }
}

/// Planted-hierarchy data of a small size, z-scored, with the shared fit setup.
fn planted(n: usize, v: usize, l: usize, c: usize, cfg: &FitConfig, seed: u64) -> (FitStart, crate::synth::Synthetic) {
    let syn = generate(&SynthConfig {
        scenario: Scenario::Hierarchical,
        n_images: n,
        n_voxels: v,
        n_layers: l,
        width: c,
        grid: cfg.grid,
        seed,
        ..SynthConfig::default()
    })
    .unwrap();
    let mut brain = syn.brain.clone();
    brain.zscore("synthetic").unwrap();
    (FitStart::new(&syn.features, &brain, cfg).unwrap(), syn)
}

fn flat(named: &NamedValues) -> Vec<f32> {
    named.iter().flat_map(|(_, v)| v.iter().copied()).collect()
}

/// Twenty clipped AdamW steps from the same initialisation on the same batches: the parameters
/// agree with the candle trainer's to float rounding, and so do the predictions.
#[test]
fn steps_match_the_candle_trainer() {
    let cfg = FitConfig { d: 16, grid: 4, batch_size: 8, ..FitConfig::default() };
    let (s, _) = planted(200, 150, 4, 16, &cfg, 2);
    let reference = s.encoder.deep_copy().unwrap();
    let mut state = TrainState::new(&reference, &cfg).unwrap();
    let mut fast = FastCpuTrainer::new(&s.encoder, &s.prepared, &s.bt, &cfg).unwrap();
    fast.set_order(&s.split.train).unwrap();
    for (step, batch) in s.split.train.chunks(cfg.batch_size).take(20).enumerate() {
        let want = train_step(&reference, &s.prepared, &s.bt, batch, &cfg, step, &mut state).unwrap();
        let got = fast.step(step * cfg.batch_size, batch.len(), step).unwrap();
        assert!((got - want).abs() <= 1e-4 * want.abs(), "step {step}: loss {got} vs {want}");
    }
    let want: Vec<f32> = reference.named_vars().iter().flat_map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
    let got = flat(&fast.parameters());
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let err = got.iter().zip(&want).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
    // AdamW moves every parameter by about ±lr per step whatever the gradient's size, so a
    // component whose gradient is at rounding level may step the other way once (as the GPU
    // trainer's test): 2e-3 of the largest parameter allows that.
    assert!(err < 2e-3, "parameters after 20 steps differ by {err:.3e} (relative to max |θ|)");
    let p_fast = fast.predict(&s.split.val).unwrap();
    let p_ref = predict_images(&reference, &s.prepared, &s.bt.pe, &s.split.val).unwrap();
    assert!(max_rel_err(&p_fast, &p_ref) < 1e-2, "validation predictions differ");
}

/// A fixed encoder's predictions: the fast predictor equals the candle path to rounding.
#[test]
fn predictor_matches_candle_predictions() {
    // More images than one prediction pass holds (EVAL_CHUNK), in a scrambled order.
    let n = super::EVAL_CHUNK + 13;
    let (prepared, bt, enc) = problem(n, 77, &[(6, 4, 4), (11, 2, 2), (3, 3, 3)], 12, 4, 7);
    let idx: Vec<usize> = (0..n).rev().collect();
    let want = predict_images(&enc, &prepared, &bt.pe, &idx).unwrap();
    let got = FastPredictor::new(&enc, &bt.pe).unwrap().predict(&prepared, &idx).unwrap();
    assert!(max_rel_err(&got, &want) < 1e-5, "{}", max_rel_err(&got, &want));
    let cfg = FitConfig { d: 12, grid: 4, ..FitConfig::default() };
    let got = FastCpuTrainer::new(&enc, &prepared, &bt, &cfg).unwrap().predict(&idx).unwrap();
    assert!(max_rel_err(&got, &want) < 1e-5);
    assert!(FastPredictor::new(&enc, &bt.pe).unwrap().predict(&prepared, &[n]).is_err());
}

/// Same inputs, same numbers: two trainers run the same steps to bit-identical parameters.
#[test]
fn training_is_deterministic() {
    let cfg = FitConfig { d: 16, grid: 4, batch_size: 8, ..FitConfig::default() };
    let (s, _) = planted(60, 300, 3, 16, &cfg, 5);
    let run = || {
        let mut t = FastCpuTrainer::new(&s.encoder, &s.prepared, &s.bt, &cfg).unwrap();
        t.set_order(&s.split.train).unwrap();
        let losses: Vec<f64> =
            (0..6).map(|i| t.step(i * cfg.batch_size, cfg.batch_size, i).unwrap()).collect();
        (losses, flat(&t.parameters()), t.predict(&s.split.val).unwrap())
    };
    assert_eq!(run(), run());
}

/// Bad inputs are errors, not panics.
#[test]
fn rejects_out_of_range_batches_and_indices() {
    let (prepared, bt, enc) = problem(5, 9, &[(3, 2, 2)], 4, 2, 1);
    let cfg = FitConfig { d: 4, grid: 2, batch_size: 2, ..FitConfig::default() };
    let mut t = FastCpuTrainer::new(&enc, &prepared, &bt, &cfg).unwrap();
    assert!(t.set_order(&[0, 5]).is_err());
    t.set_order(&[0, 1, 2]).unwrap();
    assert!(t.step(2, 2, 0).is_err());
    assert!(t.step(0, 3, 0).is_err());
    assert!(t.predict(&[9]).is_err());
    let other = FitConfig { d: 4, grid: 3, ..cfg.clone() };
    // Features prepared at another grid than the encoder's.
    let (prepared3, _, _) = problem(5, 9, &[(3, 2, 2)], 4, 3, 1);
    assert_eq!(prepared3.grid(), 3);
    assert!(FastCpuTrainer::new(&enc, &prepared3, &bt, &other).is_err());
}

/// A short fit on planted data recovers the planted layer of most signal voxels (DESIGN §8).
#[test]
fn short_fit_recovers_planted_layers() {
    let cfg = FitConfig { d: 32, grid: 8, ..FitConfig::fast() };
    let (s, syn) = planted(600, 400, 4, 32, &cfg, 3);
    let mut t = FastCpuTrainer::new(&s.encoder, &s.prepared, &s.bt, &cfg).unwrap();
    let mut rng = Rng::derive(cfg.seed, "batches");
    let mut step = 0;
    for _ in 0..12 {
        let mut order = s.split.train.clone();
        rng.shuffle(&mut order);
        t.set_order(&order).unwrap();
        for (i, batch) in order.chunks(cfg.batch_size).enumerate() {
            t.step(i * cfg.batch_size, batch.len(), step).unwrap();
            step += 1;
        }
    }
    t.snapshot_best().unwrap();
    t.write_best_into(&s.encoder).unwrap();
    let sel = s.encoder.selectors(&s.bt.pe).unwrap().to_host().unwrap();
    let truth = &syn.truth;
    let l = sel.n_layers();
    let signal: Vec<usize> = (0..truth.n_voxels()).filter(|&v| truth.signal[v] == 1).collect();
    let hits = signal
        .iter()
        .filter(|&&v| {
            let row = &sel.layer_probs.data[v * l..(v + 1) * l];
            (0..l).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as i32 == truth.layer[v]
        })
        .count();
    let acc = hits as f64 / signal.len() as f64;
    assert!(acc >= 0.8, "argmax layer matches the planted layer for {acc:.3} of signal voxels");
}
