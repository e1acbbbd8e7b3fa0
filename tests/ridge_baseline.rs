// The layer-wise ridge baseline on planted-hierarchy data: its per-ROI best layers
// must be the planted ones on the `hierarchical` scenario, its report has the FactorTopy fields,
// and its outputs are written.

use factortopy::baseline::{agreement, fit_ridge_baseline, write_ridge_outputs, RidgeBaselineConfig};
use factortopy::scores::Report;
use factortopy::synth::{generate, planted_layers, Scenario, SynthConfig, ROI_NAMES};

fn synth(scenario: Scenario) -> factortopy::synth::Synthetic {
    generate(&SynthConfig {
        scenario,
        n_images: 800,
        n_voxels: 700,
        n_layers: 5,
        width: 24,
        grid: 4,
        noise_ceiling: 0.8,
        seed: 11,
        signal_fraction: 0.9,
        prf_size: None,
    })
    .unwrap()
}

/// Most frequent best layer among the signal voxels of each ROI.
fn roi_modes(best: &[usize], data: &factortopy::synth::Synthetic, n_layers: usize) -> Vec<usize> {
    let mut counts = vec![vec![0usize; n_layers]; ROI_NAMES.len()];
    for (v, &b) in best.iter().enumerate() {
        let r = data.brain.roi[v];
        if r >= 0 && data.truth.signal[v] == 1 {
            counts[r as usize][b] += 1;
        }
    }
    counts.iter().map(|c| (0..n_layers).max_by_key(|&l| (c[l], std::cmp::Reverse(l))).unwrap()).collect()
}

#[test]
fn per_roi_best_layers_match_the_planted_hierarchy() {
    let data = synth(Scenario::Hierarchical);
    let cfg = RidgeBaselineConfig { n_folds: 3, ..RidgeBaselineConfig::default() };
    let fit = fit_ridge_baseline(&data.features, &data.brain, &cfg, false, None).unwrap();
    let planted = planted_layers(Scenario::Hierarchical, 5, 11);
    let modes = roi_modes(&fit.best_layer, &data, 5);
    for (k, name) in ROI_NAMES.iter().enumerate() {
        let hist = &fit.report.rois[k].layer_histogram;
        eprintln!("{name:>4}: planted {} ridge mode {} histogram {hist:?}", planted[k], modes[k]);
    }
    assert_eq!(modes, planted, "per-ROI best layers");
    let h = &fit.report.hierarchy;
    assert!(h.slope.unwrap() > 0.5 && h.spearman.unwrap() > 0.5, "{h:?}");
    assert_eq!(fit.report.method, "ridge");
    assert!(fit.report.r2.mean > 0.1, "held-out R² {}", fit.report.r2.mean);
    // Same split as FactorTopy.
    let split = factortopy::model::Split::new(800, cfg.val_fraction, cfg.seed).unwrap();
    assert_eq!(fit.split, split);
}

#[test]
fn reversed_scenario_gives_a_negative_slope_and_outputs_are_written() {
    let data = synth(Scenario::Reversed);
    let cfg = RidgeBaselineConfig { n_folds: 3, seed: 4, ..RidgeBaselineConfig::default() };
    let fit = fit_ridge_baseline(&data.features, &data.brain, &cfg, true, None).unwrap();
    assert!(fit.report.hierarchy.slope.unwrap() < -0.3, "{:?}", fit.report.hierarchy);
    let planted = planted_layers(Scenario::Reversed, 5, 11);
    assert_eq!(roi_modes(&fit.best_layer, &data, 5), planted);

    // Agreement with another map of the same brain (here: a second ridge fit with another seed).
    let other = fit_ridge_baseline(&data.features, &data.brain, &RidgeBaselineConfig { seed: 9, ..cfg.clone() }, true, None)
        .unwrap();
    let ag = agreement(&fit.report, &other.report, Some((&fit.selections, &other.selections, &data.brain))).unwrap();
    assert!(ag.roi_depth_pearson.unwrap() > 0.9, "{ag:?}");
    assert!(ag.same_layer_fraction.unwrap() > 0.6, "{ag:?}");

    let dir = tempfile::tempdir().unwrap();
    let out = write_ridge_outputs(dir.path(), &fit, &data.brain, Some((&other.report, &ag))).unwrap();
    let back = Report::read_json(&out.report).unwrap();
    assert_eq!(back.method, "ridge");
    assert_eq!(back.rois.len(), ROI_NAMES.len());
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out.summary).unwrap()).unwrap();
    assert_eq!(summary["layers"].as_array().unwrap().len(), 5);
    assert!(summary["agreement"]["rois"].is_array());
    for p in [&out.selectors, &out.layer_map, &out.roi_depth] {
        assert!(std::fs::metadata(p).unwrap().len() > 0, "{}", p.display());
    }
}
