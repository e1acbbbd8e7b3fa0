//! The planted-hierarchy generator (DESIGN §8): reproducibility, planted patterns, the planted
//! response itself, the noise ceiling and the files it writes.

// Index loops over voxels and images read closer to the maths here.
#![allow(clippy::needless_range_loop)]

use std::path::Path;

use factortopy::data::{Array, Brain, Features};
use factortopy::synth::sample::{bilinear_sample, resize_layer};
use factortopy::synth::{
    self, plant_detailed, planted_layers, planted_scale, Scenario, SynthConfig, Truth, ROI_LEVELS,
    ROI_NAMES,
};

fn small(scenario: Scenario, seed: u64) -> SynthConfig {
    SynthConfig {
        scenario,
        n_images: 40,
        n_voxels: 60,
        n_layers: 6,
        width: 8,
        grid: 4,
        noise_ceiling: 0.5,
        seed,
        signal_fraction: 0.8,
        prf_size: None,
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn same_seed_gives_byte_identical_files() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (d, seed) in dirs.iter().zip([7, 7, 8]) {
        let data = synth::generate(&small(Scenario::Shuffled, seed)).unwrap();
        synth::write(d.path(), &data).unwrap();
    }
    for f in [synth::FEATURES_FILE, synth::BRAIN_FILE, synth::TRUTH_FILE] {
        let a = read(&dirs[0].path().join(f));
        assert!(!a.is_empty());
        assert_eq!(
            a,
            read(&dirs[1].path().join(f)),
            "{f} differs between runs with the same seed"
        );
    }
    assert_ne!(
        read(&dirs[0].path().join(synth::BRAIN_FILE)),
        read(&dirs[2].path().join(synth::BRAIN_FILE))
    );
    assert_ne!(
        read(&dirs[0].path().join(synth::FEATURES_FILE)),
        read(&dirs[2].path().join(synth::FEATURES_FILE))
    );
}

/// Planted layer of each ROI, read back from the per-voxel truth.
fn roi_layers(brain: &Brain, truth: &Truth) -> Vec<i32> {
    (0..ROI_NAMES.len())
        .map(|r| {
            let ls: Vec<i32> = (0..brain.roi.len())
                .filter(|&v| brain.roi[v] == r as i32)
                .map(|v| truth.layer[v])
                .collect();
            assert!(!ls.is_empty(), "ROI {} has no voxels", ROI_NAMES[r]);
            assert!(
                ls.iter().all(|&l| l == ls[0]),
                "ROI {} mixes layers",
                ROI_NAMES[r]
            );
            ls[0]
        })
        .collect()
}

#[test]
fn scenarios_plant_the_described_layer_patterns() {
    for l in [1usize, 2, 3, 5, 6, 9, 12] {
        let third = l.div_ceil(3);
        for seed in 0..5 {
            let by = |sc| planted_layers(sc, l, seed);
            let pairs: Vec<(i32, usize)> = ROI_LEVELS
                .iter()
                .copied()
                .zip(by(Scenario::Hierarchical))
                .collect();
            for a in &pairs {
                for b in &pairs {
                    if a.0 < b.0 {
                        assert!(a.1 <= b.1, "hierarchical L={l}: {pairs:?}");
                    }
                }
            }
            assert_eq!(pairs[0].1, 0);
            assert!(pairs.iter().filter(|p| p.0 == 4).all(|p| p.1 == l - 1));
            let rev = by(Scenario::Reversed);
            for (r, h) in rev.iter().zip(by(Scenario::Hierarchical)) {
                assert_eq!(*r, l - 1 - h);
            }
            assert!(
                by(Scenario::FlatEarly).iter().all(|&x| x < third),
                "flat-early L={l}"
            );
            assert!(
                by(Scenario::FlatLate)
                    .iter()
                    .all(|&x| x >= l - third && x < l),
                "flat-late L={l}"
            );
            assert!(by(Scenario::Shuffled).iter().all(|&x| x < l));
        }
    }
    // Shuffled really shuffles: over a few seeds, some ROI pair is out of hierarchical order.
    let out_of_order = (0..10).any(|seed| {
        let s = planted_layers(Scenario::Shuffled, 6, seed);
        s[0] > s[3] || s[1] > s[4]
    });
    assert!(out_of_order);

    // The same patterns come out of the generator, per voxel.
    for sc in Scenario::ALL {
        let cfg = small(sc, 3);
        let data = synth::generate(&cfg).unwrap();
        let got = roi_layers(&data.brain, &data.truth);
        let want: Vec<i32> = planted_layers(sc, cfg.n_layers, cfg.seed)
            .iter()
            .map(|&x| x as i32)
            .collect();
        assert_eq!(got, want, "{sc}");
        let levels = &data.brain.roi_levels;
        for a in 0..7 {
            for b in 0..7 {
                if levels[a] < levels[b] {
                    match sc {
                        Scenario::Hierarchical => assert!(got[a] <= got[b]),
                        Scenario::Reversed => assert!(got[a] >= got[b]),
                        _ => {}
                    }
                }
            }
        }
        if sc == Scenario::FlatEarly {
            assert!(got.iter().all(|&x| x < 2));
        }
        assert_eq!(data.features.model, format!("synthetic-{sc}"));
        for v in 0..cfg.n_voxels {
            let level = ROI_LEVELS[data.brain.roi[v] as usize];
            assert_eq!(data.truth.scale[v], planted_scale(level));
        }
    }
}

/// The clean planted response recomputed from its definition, straight from the features.
fn recompute(
    features: &Features,
    grid: usize,
    layer: usize,
    x: f32,
    y: f32,
    s: f32,
    w: &[f32],
) -> Vec<f64> {
    let local = resize_layer(&features.layers[layer].local, grid).unwrap();
    let global = features.global(layer);
    let (n, c) = (local.shape[0], local.shape[1]);
    let mut sampled = vec![0.0f32; c];
    let y_raw: Vec<f64> = (0..n)
        .map(|img| {
            let map = &local.data[img * c * grid * grid..(img + 1) * c * grid * grid];
            bilinear_sample(map, c, grid, grid, x, y, &mut sampled);
            (0..c)
                .map(|ch| {
                    w[ch] as f64
                        * ((1.0 - s) as f64 * sampled[ch] as f64
                            + s as f64 * global.data[img * c + ch] as f64)
                })
                .sum()
        })
        .collect();
    standardised(y_raw)
}

/// The clean response of a voxel with a receptive field, recomputed pixel by pixel: each pixel
/// of the layer's own map weighs the area of its intersection with the square window (side
/// `f`, centred at (x, y), in image-fraction units) over the window's area: a direct 2-D
/// computation, not the generator's separable weights.
fn recompute_window(features: &Features, layer: usize, x: f32, y: f32, f: f64, s: f32, w: &[f32]) -> Vec<f64> {
    let local = &features.layers[layer].local;
    let global = features.global(layer);
    let (n, c, h, wd) = (local.shape[0], local.shape[1], local.shape[2], local.shape[3]);
    let (cx, cy) = ((x as f64 + 1.0) / 2.0, (y as f64 + 1.0) / 2.0);
    let overlap = |a0: f64, a1: f64, b0: f64, b1: f64| (a1.min(b1) - a0.max(b0)).max(0.0);
    let mut weights = vec![0.0f64; h * wd];
    for py in 0..h {
        for px in 0..wd {
            let ax = overlap(cx - f / 2.0, cx + f / 2.0, px as f64 / wd as f64, (px + 1) as f64 / wd as f64);
            let ay = overlap(cy - f / 2.0, cy + f / 2.0, py as f64 / h as f64, (py + 1) as f64 / h as f64);
            weights[py * wd + px] = ax * ay / (f * f);
        }
    }
    let y_raw: Vec<f64> = (0..n)
        .map(|img| {
            (0..c)
                .map(|ch| {
                    let plane = &local.data[(img * c + ch) * h * wd..(img * c + ch + 1) * h * wd];
                    let pooled: f64 = plane.iter().zip(&weights).map(|(&v, &k)| v as f64 * k).sum();
                    w[ch] as f64 * ((1.0 - s) as f64 * pooled + s as f64 * global.data[img * c + ch] as f64)
                })
                .sum()
        })
        .collect();
    standardised(y_raw)
}

#[test]
fn receptive_field_responses_equal_direct_recomputation() {
    // Layers at 2G and G; the default window (one grid cell), a wide one that crosses the
    // image border, and one narrower than a pixel of the 2G map.
    for prf in [None, Some(0.45), Some(0.05)] {
        let cfg = SynthConfig { n_images: 30, n_voxels: 40, n_layers: 5, width: 6, grid: 3, prf_size: prf, ..SynthConfig::default() };
        let features = factortopy::synth::network::random_network(cfg.n_images, cfg.n_layers, cfg.width, cfg.grid, 11).unwrap();
        let p = plant_detailed(&features, &cfg).unwrap();
        let f = prf.unwrap_or(1.0 / 3.0);
        let mut checked_layers = std::collections::BTreeSet::new();
        for v in 0..cfg.n_voxels {
            if p.truth.signal[v] == 0 {
                continue;
            }
            let l = p.truth.layer[v] as usize;
            let (x, y) = (p.truth.space.data[2 * v], p.truth.space.data[2 * v + 1]);
            let want = recompute_window(&features, l, x, y, f, p.truth.scale[v], &p.readout[v]);
            for img in 0..cfg.n_images {
                let got = p.clean.data[img * cfg.n_voxels + v] as f64;
                assert!((got - want[img]).abs() < 1e-4, "prf {prf:?} voxel {v} image {img}: {got} vs {}", want[img]);
            }
            checked_layers.insert(l);
        }
        assert!(checked_layers.len() >= 3, "{checked_layers:?}");
    }
}

#[test]
fn clean_response_equals_direct_recomputation() {
    // Point sampling (`prf_size` 0) of the G×G resampled maps. Layers at 2G and G, so both the
    // resampled and the untouched path are covered.
    let cfg = SynthConfig {
        n_images: 30,
        n_voxels: 40,
        n_layers: 5,
        width: 6,
        grid: 3,
        prf_size: Some(0.0),
        ..SynthConfig::default()
    };
    let features = factortopy::synth::network::random_network(
        cfg.n_images,
        cfg.n_layers,
        cfg.width,
        cfg.grid,
        11,
    )
    .unwrap();
    assert_eq!(features.layers[0].local.shape[2], 6);
    assert_eq!(features.layers[4].local.shape[2], 3);
    let p = plant_detailed(&features, &cfg).unwrap();
    let v_all = cfg.n_voxels;
    let mut checked_layers = std::collections::BTreeSet::new();
    for v in 0..v_all {
        if p.truth.signal[v] == 0 {
            assert!(p.readout[v].is_empty());
            continue;
        }
        let l = p.truth.layer[v] as usize;
        assert_eq!(p.readout[v].len(), cfg.width);
        let (x, y) = (p.truth.space.data[2 * v], p.truth.space.data[2 * v + 1]);
        let want = recompute(
            &features,
            cfg.grid,
            l,
            x,
            y,
            p.truth.scale[v],
            &p.readout[v],
        );
        for img in 0..cfg.n_images {
            let got = p.clean.data[img * v_all + v] as f64;
            assert!(
                (got - want[img]).abs() < 1e-4,
                "voxel {v} image {img}: {got} vs {}",
                want[img]
            );
        }
        checked_layers.insert(l);
    }
    assert!(checked_layers.len() >= 3, "{checked_layers:?}");
}

#[test]
fn readouts_are_low_rank_per_layer() {
    // w_v = B_l·r_v with K = 16 < C: the readouts of one layer span at most 16 dimensions.
    let cfg = SynthConfig {
        n_images: 10,
        n_voxels: 120,
        n_layers: 1,
        width: 24,
        grid: 2,
        signal_fraction: 1.0,
        ..SynthConfig::default()
    };
    let features =
        factortopy::synth::network::random_network(cfg.n_images, 1, cfg.width, cfg.grid, 0)
            .unwrap();
    let p = plant_detailed(&features, &cfg).unwrap();
    let rows: Vec<Vec<f64>> = p
        .readout
        .iter()
        .map(|w| w.iter().map(|&x| x as f64).collect())
        .collect();
    assert_eq!(rank(rows, 1e-4), 16);
}

/// Numerical rank by Gaussian elimination with partial pivoting; `tol` is relative to the
/// largest entry (the readouts are f32, so exact zeros are not to be expected).
fn rank(mut m: Vec<Vec<f64>>, tol: f64) -> usize {
    let cols = m[0].len();
    let tol = tol * m.iter().flatten().fold(0.0f64, |a, &b| a.max(b.abs()));
    let mut r = 0;
    for c in 0..cols {
        let Some(p) =
            (r..m.len()).max_by(|&a, &b| m[a][c].abs().partial_cmp(&m[b][c].abs()).unwrap())
        else {
            break;
        };
        if m[p][c].abs() < tol {
            continue;
        }
        m.swap(r, p);
        for i in 0..m.len() {
            if i != r {
                let f = m[i][c] / m[r][c];
                for j in 0..cols {
                    m[i][j] -= f * m[r][j];
                }
            }
        }
        r += 1;
    }
    r
}

fn corr2(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab * sab / (saa * sbb)
}

#[test]
fn explainable_variance_matches_the_noise_ceiling() {
    for nc in [0.3, 0.6, 1.0] {
        let cfg = SynthConfig {
            n_images: 4000,
            n_voxels: 40,
            n_layers: 3,
            width: 8,
            grid: 4,
            noise_ceiling: nc,
            signal_fraction: 0.75,
            seed: 5,
            ..SynthConfig::default()
        };
        let features = factortopy::synth::network::random_network(
            cfg.n_images,
            cfg.n_layers,
            cfg.width,
            cfg.grid,
            1,
        )
        .unwrap();
        let p = plant_detailed(&features, &cfg).unwrap();
        let (n, v) = (cfg.n_images, cfg.n_voxels);
        let col = |a: &Array, i: usize| -> Vec<f64> {
            (0..n).map(|img| a.data[img * v + i] as f64).collect()
        };
        let ceil = p.brain.noise_ceiling.as_ref().unwrap();
        let mut sum = 0.0;
        let mut count = 0;
        for i in 0..v {
            if p.truth.signal[i] == 1 {
                let r2 = corr2(&col(&p.brain.responses, i), &col(&p.clean, i));
                assert!((r2 - nc).abs() < 0.05, "NC {nc}, voxel {i}: explained {r2}");
                assert_eq!(ceil[i], nc as f32);
                sum += r2;
                count += 1;
            } else {
                assert_eq!(ceil[i], 0.0);
                assert!(col(&p.clean, i).iter().all(|&x| x == 0.0));
                let resp = col(&p.brain.responses, i);
                let var = resp.iter().map(|x| x * x).sum::<f64>() / n as f64;
                assert!(
                    (var - 1.0).abs() < 0.1,
                    "pure-noise voxel {i} variance {var}"
                );
            }
        }
        assert_eq!(count, 30);
        let mean = sum / count as f64;
        assert!((mean - nc).abs() < 0.015, "NC {nc}: mean explained {mean}");
    }
}

#[test]
fn signal_voxels_and_rois() {
    let cfg = small(Scenario::Hierarchical, 2);
    let data = synth::generate(&cfg).unwrap();
    let b = &data.brain;
    assert_eq!(
        b.roi_names,
        ROI_NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(b.roi_levels, ROI_LEVELS.to_vec());
    assert_eq!(b.subject.as_deref(), Some("synthetic"));
    let n_off = data.truth.signal.iter().filter(|&&s| s == 0).count();
    assert_eq!(n_off, 12); // round(0.2 · 60)
    for r in 0..7 {
        assert!(
            (0..cfg.n_voxels).any(|v| b.roi[v] == r && data.truth.signal[v] == 1),
            "ROI {r} has no signal voxel"
        );
    }
    // Even with no signal requested, every ROI keeps one signal voxel.
    let none = synth::generate(&SynthConfig {
        signal_fraction: 0.0,
        ..cfg.clone()
    })
    .unwrap();
    assert_eq!(none.truth.signal.iter().filter(|&&s| s == 1).count(), 7);
}

#[test]
fn written_files_load_through_the_data_contracts() {
    let cfg = small(Scenario::Reversed, 4);
    let data = synth::generate(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/out");
    synth::write(&out, &data).unwrap();

    let f = Features::load(&out.join(synth::FEATURES_FILE)).unwrap();
    assert_eq!(f.model, "synthetic-reversed");
    assert_eq!(f.n_layers(), 6);
    assert_eq!(f.layers[0].local.shape, vec![40, 8, 8, 8]);
    assert_eq!(f.layers[5].local.shape, vec![40, 8, 4, 4]);
    assert_eq!(
        f.layers[3].global.as_ref().unwrap(),
        data.features.layers[3].global.as_ref().unwrap()
    );

    let b = Brain::load_with(&out.join(synth::BRAIN_FILE), false).unwrap();
    assert!(
        b.responses == data.brain.responses,
        "responses changed on the way through the file"
    );
    assert_eq!(b.coords.shape, vec![60, 3]);
    assert_eq!(b.flat.as_ref().unwrap().shape, vec![60, 2]);
    assert_eq!(b.roi, data.brain.roi);
    assert_eq!(b.noise_ceiling, data.brain.noise_ceiling);
    assert_eq!(b.roi_names, data.brain.roi_names);
    assert_eq!(b.roi_levels, data.brain.roi_levels);

    let t = Truth::load(&out.join(synth::TRUTH_FILE)).unwrap();
    assert_eq!(t, data.truth);
}

#[test]
fn truth_round_trips_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let t = Truth {
        layer: vec![0, 3, 5],
        space: Array::new(vec![3, 2], vec![-0.5, 0.25, 0.0, 0.75, 1.0, -1.0]).unwrap(),
        scale: vec![0.1, 0.55, 0.7],
        signal: vec![1, 0, 1],
    };
    let p = dir.path().join("truth.safetensors");
    t.save(&p).unwrap();
    assert_eq!(Truth::load(&p).unwrap(), t);

    let bad = Truth {
        signal: vec![1, 2, 1],
        ..t.clone()
    };
    bad.save(&p).unwrap();
    let e = Truth::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("signal") && e.contains("truth.safetensors"),
        "{e}"
    );

    let short = Truth {
        scale: vec![0.1],
        ..t.clone()
    };
    assert!(short.save(&dir.path().join("x.safetensors")).is_err());

    std::fs::write(&p, b"not a safetensors file").unwrap();
    assert!(Truth::load(&p).is_err());
}

#[test]
fn cortical_sheet_is_smooth_and_rois_are_contiguous() {
    let data = synth::generate(&SynthConfig {
        n_voxels: 1500,
        ..small(Scenario::Hierarchical, 9)
    })
    .unwrap();
    let b = &data.brain;
    let v = b.roi.len();
    let flat = b.flat.as_ref().unwrap();
    let pos = |i: usize| (flat.data[2 * i] as f64, flat.data[2 * i + 1] as f64);
    let sp = |i: usize| {
        (
            data.truth.space.data[2 * i] as f64,
            data.truth.space.data[2 * i + 1] as f64,
        )
    };
    let mut near_pairs_across_borders = 0;
    for i in 0..v {
        let (xi, yi) = pos(i);
        let z = b.coords.data[3 * i + 2] as f64;
        assert!((z - 5.0 * (std::f64::consts::PI * xi / 100.0).sin()).abs() < 1e-4);
        assert_eq!(
            (b.coords.data[3 * i] as f64, b.coords.data[3 * i + 1] as f64),
            (xi, yi)
        );
        for j in i + 1..v {
            let (xj, yj) = pos(j);
            let d = ((xi - xj).powi(2) + (yi - yj).powi(2)).sqrt();
            if d < 3.0 {
                // Retinotopy is smooth everywhere, across ROI borders included (1.5/20 per unit).
                let (a, c) = (sp(i), sp(j));
                let ds = ((a.0 - c.0).powi(2) + (a.1 - c.1).powi(2)).sqrt();
                assert!(
                    ds <= 0.075 * d + 1e-4,
                    "voxels {i}, {j}: sheet distance {d}, image distance {ds}"
                );
                if b.roi[i] != b.roi[j] {
                    near_pairs_across_borders += 1;
                }
            }
        }
    }
    assert!(near_pairs_across_borders > 10);
    // Each ROI is a rectangle-like patch: its voxels span its strip.
    for r in 0..4 {
        let xs: Vec<f64> = (0..v)
            .filter(|&i| b.roi[i] == r)
            .map(|i| pos(i).0)
            .collect();
        let (lo, hi) = xs
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        assert!(lo >= 20.0 * r as f64 && hi <= 20.0 * (r + 1) as f64);
        assert!(hi - lo > 15.0);
    }
}

/// `y` with mean 0 and standard deviation 1 (population, over its own length), as the generator
/// standardises every clean response.
fn standardised(mut y: Vec<f64>) -> Vec<f64> {
    let n = y.len() as f64;
    let m = y.iter().sum::<f64>() / n;
    let sd = (y.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt();
    y.iter_mut().for_each(|v| *v = (*v - m) / sd);
    y
}
