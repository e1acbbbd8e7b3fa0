//! End-to-end check (DESIGN §8): fitting FactorTopy to planted-hierarchy synthetic data must
//! recover what was planted — layer, location, prediction quality and the hierarchy scores.

use factortopy::model::FitConfig;
use factortopy::engine::{Estimator, FitEvent};

mod common;

use common::{planted, recovery_scenario, Recovery};

#[test]
fn recovers_planted_hierarchy() {
    let syn_cfg = recovery_scenario();
    let (syn, brain) = planted(&syn_cfg);
    let cfg = recovery_config();
    let t = std::time::Instant::now();
    let mut log = |e: FitEvent<'_>| {
        if let FitEvent::Epoch(p) = e {
            eprintln!("epoch {} val R² {:.4} best {:.4} ({:.1} s)", p.epoch, p.val_r2, p.best_val_r2, p.seconds)
        }
    };
    let est = Estimator { fit: cfg, ..Estimator::default() };
    let job = est.fit(&syn.features, &brain, Some(&mut log)).unwrap().into_encoder_fit().unwrap();
    eprintln!("fit took {:.1} s", t.elapsed().as_secs_f64());
    let r = Recovery::measure(&syn, &brain, syn_cfg.grid, &job.selections, &job.outcome.val_r2);
    let h = &job.report.hierarchy;
    eprintln!("report: slope {:?}, spearman {:?}, b0 {:?}, b1 {:?}", h.slope, h.spearman, h.b0, h.b1);
    r.assert_recovered(syn_cfg.noise_ceiling);

    // The fitted space map shows the planted locations: the hue of each signal voxel's pixel
    // points where its planted image location does (voxels near the image centre have no hue).
    let truth = &syn.truth;
    let signal: Vec<usize> = (0..truth.n_voxels()).filter(|&v| truth.signal[v] == 1).collect();
    let geo = factortopy::plot::brain_map::Geometry::of(&brain).unwrap();
    let m = factortopy::plot::space_map::space_panel(&brain, &job.selections, "fitted space map").unwrap();
    let (c, placed) = factortopy::plot::brain_map::render((800, 600), &brain, &geo, &m).unwrap();
    let off_centre: Vec<usize> = signal
        .iter()
        .copied()
        .filter(|&v| truth.space.data[2 * v].hypot(truth.space.data[2 * v + 1]) >= 0.3)
        .collect();
    let mut errs = factortopy::plot::space_map::hue_errors(&c, &placed.px, &truth.space.data, &off_centre);
    errs.sort_by(f64::total_cmp);
    let median = errs[errs.len() / 2];
    eprintln!("fitted space map: hue error vs planted location, median {median:.1}° over {} voxels", errs.len());
    assert!(median < 20.0, "median hue error {median:.1}°");
}

/// The fast preset (lr 1e-2, batch 32): DESIGN's lr 1e-3 at batch 8 needs far more steps than
/// a probe set of this size gives in the test's time budget.
fn recovery_config() -> FitConfig {
    FitConfig { seed: 0, max_epochs: 6, ..FitConfig::fast() }
}

/// Features kept in 16 bits recover the planted hierarchy as features kept in f32 do.
///
/// Not voxel for voxel: a fit is chaotic in its rounding over hundreds of optimiser steps, so any
/// change in the last bits of the inputs redraws its optimisation noise. Measured on this
/// scenario, f32 inputs multiplied by (1 + 1e-6), or by random factors of f16's rounding size
/// (±2⁻¹¹), change the argmax layer of 0.6–1.0 % of voxels, the mean held-out R² by up to
/// 0.008 and the planted-layer accuracy by up to 0.004; f16 storage at seeds 0–3 changed
/// 0.5–2.6 % of the layer choices, the mean R² by 0.0002–0.0034 and the accuracy by −0.02 to
/// +0.004. The bounds below sit just outside that spread.
#[test]
fn sixteen_bit_storage_recovers_what_f32_does() {
    use factortopy::data::Precision;
    let mut syn_cfg = recovery_scenario();
    // A smaller scenario: two fits must fit the test's time budget.
    syn_cfg.n_images = 900;
    syn_cfg.n_voxels = 1200;
    let (syn, brain) = planted(&syn_cfg);
    let fit = |store: Option<Precision>| {
        let est = Estimator { fit: FitConfig { store, max_epochs: 4, ..recovery_config() }, ..Estimator::default() };
        est.fit(&syn.features, &brain, None).unwrap().into_encoder_fit().unwrap()
    };
    let (wide, narrow) = (fit(None), fit(Some(Precision::F16)));
    let argmax = |sel: &factortopy::model::Selections| -> Vec<usize> {
        let l = sel.n_layers();
        sel.layer_probs.data.chunks_exact(l).map(|r| (0..l).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap()).collect()
    };
    let (a, b) = (argmax(&wide.selections), argmax(&narrow.selections));
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64;
    let (ra, rb) = (wide.report.r2.mean, narrow.report.r2.mean);
    let rw = Recovery::measure(&syn, &brain, syn_cfg.grid, &wide.selections, &wide.outcome.val_r2);
    let rn = Recovery::measure(&syn, &brain, syn_cfg.grid, &narrow.selections, &narrow.outcome.val_r2);
    eprintln!("same layer choice for {same:.4} of voxels; mean held-out R² {ra:.5} (f32) vs {rb:.5} (f16)");
    eprintln!("f32 {rw:?}\nf16 {rn:?}");
    assert!(same >= 0.96, "the layer choice differs for {:.2}% of voxels", 100.0 * (1.0 - same));
    assert!((ra - rb).abs() <= 0.01, "mean held-out R² {ra} (f32) vs {rb} (f16)");
    assert!(rn.layer_acc >= rw.layer_acc - 0.03, "planted layer recovered for {} (f16) vs {} (f32)", rn.layer_acc, rw.layer_acc);
    assert!((rn.slope - rw.slope).abs() <= 0.05 && (rn.spearman - rw.spearman).abs() <= 0.05, "{rn:?} vs {rw:?}");
}
