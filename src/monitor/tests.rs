//! Monitor tests on small planted-hierarchy data (DESIGN §5, §8). One reference encoder is fitted
//! once and shared; each test builds its own monitor around it.

use super::*;
use crate::model::encoder_file::save_encoder;
use crate::data::Features;
use crate::rng::Rng;
use crate::synth::{generate, network::random_network, SynthConfig};
use once_cell::sync::Lazy;

pub(crate) struct Fixture {
    pub brain: Brain,
    pub features: Features,
    pub encoder: Encoder,
    pub record: FitRecord,
}

pub(crate) fn small_config() -> MonitorConfig {
    MonitorConfig {
        fit: FitConfig { d: 16, grid: 4, max_epochs: 12, batch_size: 16, lr: 3e-3, reg_steps: 100, seed: 3, ..FitConfig::default() },
        held_out_fraction: 0.2,
        refit_every: 0,
        refit_max_steps: 20,
        refit_max_seconds: None,
        forgetting_threshold: 0.3,
        weighted: false,
        device: crate::engine::Device::Cpu,
    }
}

pub(crate) static FIXTURE: Lazy<Fixture> = Lazy::new(|| {
    let synth = SynthConfig {
        n_images: 300,
        n_voxels: 400,
        n_layers: 4,
        width: 16,
        grid: 4,
        noise_ceiling: 0.8,
        seed: 11,
        ..SynthConfig::default()
    };
    let data = generate(&synth).unwrap();
    let m = Monitor::new(&data.brain, &data.features, small_config(), None).unwrap();
    Fixture {
        brain: data.brain,
        features: data.features,
        encoder: m.encoder().deep_copy().unwrap(),
        record: m.fit_record().clone(),
    }
});

fn monitor(cfg: MonitorConfig) -> Monitor {
    let f = &*FIXTURE;
    Monitor::with_encoder(&f.brain, &f.features, f.encoder.deep_copy().unwrap(), f.record.clone(), cfg).unwrap()
}

/// The reference features plus `sigma`-scaled fixed Gaussian noise (one pattern per seed).
fn noisy(f: &Features, sigma: f32, seed: u64) -> Features {
    let mut out = f.clone();
    let mut rng = Rng::new(seed);
    for l in &mut out.layers {
        for x in l.local.data.iter_mut() {
            *x += sigma * rng.normal() as f32;
        }
        if let Some(g) = &mut l.global {
            for x in g.data.iter_mut() {
                *x += sigma * rng.normal() as f32;
            }
        }
    }
    out
}

#[test]
fn reference_fit_predicts() {
    let m = monitor(small_config());
    assert!(m.reference_r2() > 0.05, "reference R² {}", m.reference_r2());
    assert_eq!(m.n_layers(), 4);
    assert_eq!(m.held_out().len(), 60);
}

#[test]
fn retention_is_exactly_one_at_step_zero() {
    let mut m = monitor(small_config());
    let r = m.observe(0, &FIXTURE.features).unwrap();
    assert_eq!(r.retention, 1.0);
    assert_eq!(r.forgetting, 0.0);
    assert_eq!(r.r2, r.reference_r2);
    for roi in &r.rois {
        if let Some(x) = roi.retention {
            assert_eq!(x, 1.0, "{}", roi.name);
        }
    }
    for c in &r.cka {
        assert!((c - 1.0).abs() < 1e-9, "{c}");
    }
    assert!(!r.should_stop);
    assert!(r.refit.is_none());
    assert_eq!(r.observation, 0);
    // A second identical observation is identical apart from its index.
    let r2 = m.observe(5, &FIXTURE.features).unwrap();
    assert_eq!(r2.retention, 1.0);
    assert_eq!(r2.observation, 1);
    assert_eq!(m.history().len(), 2);
}

#[test]
fn growing_noise_raises_forgetting_and_lowers_cka() {
    let mut m = monitor(small_config());
    let mut last_f = -1.0;
    let mut last_cka = vec![2.0; 4];
    for (k, sigma) in [0.0f32, 0.3, 0.6, 1.2, 2.4].into_iter().enumerate() {
        let r = m.observe(k as u64 * 100, &noisy(&FIXTURE.features, sigma, 7)).unwrap();
        assert!(r.forgetting > last_f, "sigma {sigma}: forgetting {} after {last_f}", r.forgetting);
        for (l, last) in last_cka.iter().enumerate() {
            assert!(r.cka[l] < *last, "sigma {sigma} layer {l}: cka {} after {last}", r.cka[l]);
            assert!((r.drift[l] - (1.0 - r.cka[l])).abs() < 1e-12);
        }
        last_f = r.forgetting;
        last_cka = r.cka.clone();
    }
    assert!(last_f > 0.3, "heavy noise forgets: {last_f}");
    assert!(m.history().last().unwrap().should_stop);
    assert!(!m.history()[1].should_stop);
}

#[test]
fn replacing_late_layers_damages_only_them() {
    let f = &*FIXTURE;
    let other = random_network(300, 4, 16, 4, 999).unwrap();
    let mut m = monitor(small_config());
    let mut last_f = m.observe(0, &f.features).unwrap().forgetting;
    for replaced in 1..=3usize {
        let mut x = f.features.clone();
        for l in 4 - replaced..4 {
            x.layers[l] = other.layers[l].clone();
        }
        let r = m.observe(replaced as u64, &x).unwrap();
        assert!(r.forgetting > last_f + 0.01, "{replaced} replaced: {} after {last_f}", r.forgetting);
        last_f = r.forgetting;
        for l in 0..4 {
            if l < 4 - replaced {
                assert!((r.cka[l] - 1.0).abs() < 1e-9, "untouched layer {l}: {}", r.cka[l]);
            } else {
                assert!(r.cka[l].abs() < 0.15, "replaced layer {l}: {}", r.cka[l]);
            }
        }
    }
    // High-level ROIs (reading late layers) lose more than V1 when only the last layer goes.
    let r = &m.history()[1];
    let ffa = r.rois.iter().find(|x| x.name == "FFA").unwrap().forgetting.unwrap();
    let v1 = r.rois.iter().find(|x| x.name == "V1").unwrap().forgetting.unwrap();
    assert!(ffa > v1 + 0.1, "FFA {ffa} V1 {v1}");
}

#[test]
fn refits_report_hierarchy_and_layer_shift() {
    let cfg = MonitorConfig { refit_every: 2, ..small_config() };
    let mut m = monitor(cfg);
    let r0 = m.observe(0, &FIXTURE.features).unwrap();
    assert!(r0.refit.is_none());
    let r1 = m.observe(1, &FIXTURE.features).unwrap();
    let refit = r1.refit.expect("second observation refits");
    assert!(refit.steps <= 20 && refit.steps > 0);
    assert!(refit.layer_shift >= 0.0 && refit.layer_shift < 0.2, "{}", refit.layer_shift);
    assert!((0.0..=1.0).contains(&refit.argmax_moved));
    assert!(refit.r2 > 0.0);
    assert!(m.observe(2, &FIXTURE.features).unwrap().refit.is_none());
    // Reversing the layers moves the map a lot more.
    let mut rev = FIXTURE.features.clone();
    rev.layers.reverse();
    let widths_same = rev.layers.iter().zip(&FIXTURE.features.layers).all(|(a, b)| a.local.shape == b.local.shape);
    if widths_same {
        let r3 = m.observe(3, &rev).unwrap();
        let moved = r3.refit.expect("fourth observation refits");
        assert!(moved.layer_shift > refit.layer_shift, "{} vs {}", moved.layer_shift, refit.layer_shift);
    }
}

#[test]
fn save_load_observe_matches_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitor.safetensors");
    let cfg = MonitorConfig { refit_every: 2, ..small_config() };
    let mut a = monitor(cfg);
    a.observe(0, &FIXTURE.features).unwrap();
    a.save(&path).unwrap();
    let mut b = Monitor::load(&path, &FIXTURE.brain).unwrap();
    assert_eq!(b.history(), a.history());
    assert_eq!(b.config(), a.config());
    assert_eq!(b.reference_r2(), a.reference_r2());
    let x = noisy(&FIXTURE.features, 0.5, 3);
    let ra = a.observe(10, &x).unwrap();
    let rb = b.observe(10, &x).unwrap();
    assert!(ra.refit.is_some());
    assert_eq!(ra, rb);
    assert_eq!(ra.to_json_line(), rb.to_json_line());
    // A second round trip keeps the whole history.
    b.save(&path).unwrap();
    let c = Monitor::load(&path, &FIXTURE.brain).unwrap();
    assert_eq!(c.history(), a.history());
    // The state refuses another brain.
    let mut other = FIXTURE.brain.clone();
    std::sync::Arc::make_mut(&mut other.responses).data[0] += 1.0;
    let e = Monitor::load(&path, &other).err().unwrap().to_string();
    assert!(e.contains("different brain"), "{e}");
}

#[test]
fn history_file_appends_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let mut m = monitor(small_config());
    m.set_history_file(Some(path.clone()));
    m.observe(0, &FIXTURE.features).unwrap();
    m.observe(50, &noisy(&FIXTURE.features, 1.0, 1)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for (line, r) in lines.iter().zip(m.history()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for k in ["step", "retention", "forgetting", "cka", "should_stop"] {
            assert!(v.get(k).is_some(), "{k} missing in {line}");
        }
        assert_eq!(*line, r.to_json_line());
        let back = StepReport::from_json(line).unwrap();
        assert_eq!((back.step, back.cka.len()), (r.step, r.cka.len()));
        assert!((back.retention - r.retention).abs() < 1e-12);
    }
    let whole = dir.path().join("all.jsonl");
    m.write_history_jsonl(&whole).unwrap();
    assert_eq!(std::fs::read_to_string(&whole).unwrap(), text);
}

#[test]
fn saved_encoder_file_gives_the_same_monitor() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("enc.safetensors");
    save_encoder(&p, &FIXTURE.encoder, &FIXTURE.record).unwrap();
    let mut a = Monitor::from_encoder_file(&FIXTURE.brain, &FIXTURE.features, &p, small_config()).unwrap();
    let mut b = monitor(small_config());
    assert_eq!(a.held_out(), b.held_out());
    assert_eq!(a.reference_r2(), b.reference_r2());
    let x = noisy(&FIXTURE.features, 0.7, 9);
    assert_eq!(a.observe(1, &x).unwrap(), b.observe(1, &x).unwrap());
}

#[test]
fn bad_observations_are_errors_and_leave_no_trace() {
    let mut m = monitor(small_config());
    let row = FIXTURE.features.layers[1].local.data.len() / FIXTURE.features.n_images();
    let held = m.held_out()[0];
    let mut nan = FIXTURE.features.clone();
    nan.layers[1].local.data[held * row + 17] = f32::NAN;
    let e = m.observe(1, &nan).unwrap_err().to_string();
    assert!(e.contains("non-finite") && e.contains("step 1"), "{e}");
    let mut nan_global = FIXTURE.features.clone();
    let train = (0..FIXTURE.features.n_images()).find(|i| !m.held_out().contains(i)).unwrap();
    let c = nan_global.layers[0].local.shape[1];
    let g = nan_global.layers[0].global.get_or_insert_with(|| FIXTURE.features.global(0));
    g.data[train * c] = f32::INFINITY;
    assert!(m.observe(1, &nan_global).unwrap_err().to_string().contains("non-finite"));
    let mut fewer = FIXTURE.features.clone();
    fewer.layers.pop();
    fewer.layer_names.pop();
    assert!(m.observe(2, &fewer).unwrap_err().to_string().contains("layers"));
    let other = random_network(200, 4, 16, 4, 1).unwrap();
    assert!(m.observe(3, &other).unwrap_err().to_string().contains("probe images"));
    let wide = random_network(300, 4, 8, 4, 1).unwrap();
    assert!(m.observe(4, &wide).unwrap_err().to_string().contains("widths"));
    assert!(m.history().is_empty());
}

#[test]
fn observations_check_the_values_they_read() {
    // Retention reads only the held-out images' local maps: a NaN in a training image's map
    // cannot change it, and checking every value of a large feature set costs more than the
    // observation. A refit reads every image, so then the whole set is checked.
    let mut m = monitor(small_config());
    let row = FIXTURE.features.layers[1].local.data.len() / FIXTURE.features.n_images();
    let train = (0..FIXTURE.features.n_images()).find(|i| !m.held_out().contains(i)).unwrap();
    let mut x = noisy(&FIXTURE.features, 0.7, 9);
    let clean = m.observe(1, &x).unwrap();
    x.layers[1].local.data[train * row + 3] = f32::NAN;
    let with_nan = m.observe(2, &x).unwrap();
    assert_eq!(clean.retention, with_nan.retention);
    assert!(with_nan.retention.is_finite());
    m.config_mut().refit_every = 1;
    let e = m.observe(3, &x).unwrap_err().to_string();
    assert!(e.contains("non-finite") && e.contains("step 3"), "{e}");
    assert_eq!(m.history().len(), 2);
}

#[test]
fn config_validation() {
    assert!(MonitorConfig::default().validate().is_ok());
    for bad in [
        MonitorConfig { held_out_fraction: 0.0, ..MonitorConfig::default() },
        MonitorConfig { held_out_fraction: 1.0, ..MonitorConfig::default() },
        MonitorConfig { refit_every: 3, refit_max_steps: 0, ..MonitorConfig::default() },
        MonitorConfig { refit_max_seconds: Some(0.0), ..MonitorConfig::default() },
        MonitorConfig { forgetting_threshold: f64::NAN, ..MonitorConfig::default() },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

#[test]
fn an_encoder_that_predicts_nothing_is_refused() {
    let f = &*FIXTURE;
    let fresh = Encoder::new(f.encoder.spec.clone(), 5).unwrap();
    let e = Monitor::with_encoder(&f.brain, &f.features, fresh, f.record.clone(), small_config()).err().unwrap();
    assert!(e.to_string().contains("retention is undefined"), "{e}");
}
