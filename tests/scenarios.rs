//! The scores order the synthetic scenarios as their planted hierarchies say (DESIGN §4, §8):
//! hierarchical above shuffled, reversed below zero, flat-early reading only from early layers.

use factortopy::model::FitConfig;
use factortopy::engine::Estimator;
use factortopy::synth::{generate, Scenario, SynthConfig};

/// (slope, b0, b1, spearman) of a scenario's fit; each must be defined.
fn scores(scenario: Scenario) -> Scores {
    let syn = generate(&SynthConfig {
        scenario,
        n_images: 800,
        n_voxels: 700,
        n_layers: 6,
        width: 32,
        grid: 8,
        noise_ceiling: 0.6,
        seed: 2,
        ..SynthConfig::default()
    })
    .unwrap();
    let mut brain = syn.brain;
    brain.zscore("synthetic").unwrap();
    let cfg = FitConfig { max_epochs: 6, ..FitConfig::fast() };
    let est = Estimator { fit: cfg, ..Estimator::default() };
    let job = est.fit(&syn.features, &brain, None).unwrap().into_encoder_fit().unwrap();
    let h = job.report.hierarchy;
    let s = Scores { slope: h.slope.unwrap(), b0: h.b0.unwrap(), b1: h.b1.unwrap(), spearman: h.spearman.unwrap() };
    eprintln!(
        "{scenario}: slope {:.3} b0 {:.3} b1 {:.3} spearman {:.3} (val R² {:.3})",
        s.slope, s.b0, s.b1, s.spearman, job.outcome.summary.best_val_r2
    );
    s
}

struct Scores {
    slope: f64,
    b0: f64,
    b1: f64,
    spearman: f64,
}

#[test]
fn scenarios_are_ordered_by_their_planted_hierarchy() {
    let hier = scores(Scenario::Hierarchical);
    let shuffled = scores(Scenario::Shuffled);
    let reversed = scores(Scenario::Reversed);
    let flat_early = scores(Scenario::FlatEarly);
    assert!(hier.slope > shuffled.slope.abs(), "hierarchical {} vs shuffled {}", hier.slope, shuffled.slope);
    assert!(reversed.slope < 0.0, "reversed slope {}", reversed.slope);
    assert!(flat_early.b1 < 0.4, "flat-early b1 {}", flat_early.b1);
}
