//! The layer margin says which layer choices the data supports: on planted data whose layers
//! differ, the chosen layers beat every other layer on held-out images with intervals above 0;
//! when two layers carry the same features, the ROIs that choose one of them get a margin of 0
//! with an interval that includes it (the data cannot tell them apart).

use factortopy::data::Features;
use factortopy::engine::Estimator;
use factortopy::model::FitConfig;

mod common;

use common::planted_recovery;

fn margins(features: &Features, brain: &factortopy::data::Brain) -> Vec<(String, factortopy::scores::layer_margin::LayerMargin)> {
    let cfg = FitConfig { seed: 0, max_epochs: 4, ..FitConfig::fast() };
    let est = Estimator { fit: cfg, ..Estimator::default() };
    let job = est.fit(features, brain, None).unwrap().into_encoder_fit().unwrap();
    eprintln!("{}", job.report.headline());
    job.report.rois.iter().map(|r| (r.name.clone(), r.layer_margin.clone().expect("fit reports a margin for every ROI"))).collect()
}

#[test]
fn margins_separate_supported_choices_from_coin_tosses() {
    let (_, syn, brain) = planted_recovery(900, 1200);
    for (name, m) in margins(&syn.features, &brain) {
        assert!(m.lo <= m.margin && m.margin <= m.hi, "{name}: {m:?}");
        assert!(m.n_voxels > 0 && m.n_voxels <= factortopy::scores::layer_margin::VOXELS_PER_ROI, "{name}: {m:?}");
        assert!(m.lo > 0.0, "{name}: the planted layers differ, so the choice should be supported: {m:?}");
    }
    // The layer V1 reads (layer 0), appended again: V1's voxels choose one copy or the other,
    // and the other predicts exactly as well.
    let mut twin = syn.features.clone();
    twin.layers.push(twin.layers[0].clone());
    twin.layer_names.push("copy of layer 0".into());
    for (name, m) in margins(&twin, &brain) {
        if name == "V1" {
            assert!(m.margin.abs() < 0.01 && m.lo <= 0.0 && m.hi >= 0.0, "V1 reads one of two identical layers: {m:?}");
        }
    }
}
