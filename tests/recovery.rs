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
