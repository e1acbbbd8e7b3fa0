// Agreement with himalaya's RidgeCV. The arrays and himalaya's answers are made by
// tests/himalaya/run.sh (which installs himalaya into a virtual environment and sets
// FACTORTOPY_HIMALAYA_DIR); without that variable this test only says it was skipped.
//
// Checked per case: the chosen penalty of every target equals himalaya's (a target may differ
// only at a numerical tie, where both penalties' cross-validated scores agree to 1e-6
// relative), and held-out predictions agree to 1e-4 relative (L2 per target).

use std::path::Path;

use factortopy::baseline::ridge::{ridge_cv, Folds, RidgeCv};
use factortopy::data::{read_npy, Array};

fn load(dir: &Path, name: &str) -> Array {
    read_npy(&dir.join(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn check_case(dir: &Path) {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let folds = meta["folds"].as_u64().unwrap() as usize;
    let fit_intercept = meta["fit_intercept"].as_bool().unwrap();
    let (x, y, x_test) = (load(dir, "x.npy"), load(dir, "y.npy"), load(dir, "x_test.npy"));
    let alphas: Vec<f64> = load(dir, "alphas.npy").data.iter().map(|&a| a as f64).collect();
    let h_alpha = load(dir, "best_alphas.npy").data;
    let h_pred = load(dir, "pred.npy").data;
    let h_cv = load(dir, "cv_scores.npy").data;
    let (t, m) = (y.shape[1], x_test.shape[0]);

    let cfg = RidgeCv { alphas: alphas.clone(), folds: Folds::KFold(folds), fit_intercept, n_targets_batch: 0 };
    let fit = ridge_cv(&x, &y, &cfg).unwrap();
    let pred = fit.predict(&x_test.data, m).unwrap();

    let mut ties = 0;
    let mut worst_pred = 0.0f64;
    let mut distinct = std::collections::BTreeSet::new();
    for j in 0..t {
        let (ours, theirs) = (fit.best_alphas[j], h_alpha[j] as f64);
        distinct.insert(fit.best_alpha_index[j]);
        if ((ours - theirs) / theirs).abs() > 1e-6 {
            // Only a numerical tie may differ: both scores equal to 1e-6 relative (himalaya's
            // score carries its 1e-10·ln α tie-break term).
            let hs = h_cv[j] as f64;
            let rel = (fit.cv_scores[j] - hs).abs() / hs.abs().max(1e-12);
            assert!(
                rel < 1e-6,
                "{name}: target {j}: factortopy chose α = {ours} (CV score {}), himalaya α = {theirs} (CV score {hs})",
                fit.cv_scores[j]
            );
            eprintln!("tie {name} {j}: ours α={ours} s={} theirs α={theirs} s={hs}", fit.cv_scores[j]);
            ties += 1;
            continue;
        }
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for i in 0..m {
            let (a, b) = (pred[i * t + j] as f64, h_pred[i * t + j] as f64);
            num += (a - b).powi(2);
            den += b * b;
        }
        let rel = (num / den.max(1e-300)).sqrt();
        worst_pred = worst_pred.max(rel);
        assert!(rel < 1e-4, "{name}: target {j} (α = {ours}): predictions differ by {rel:.2e} relative");
        let cv_rel = (fit.cv_scores[j] - h_cv[j] as f64).abs() / (h_cv[j] as f64).abs().max(1e-12);
        assert!(cv_rel < 1e-3, "{name}: target {j}: CV score {} vs himalaya {}", fit.cv_scores[j], h_cv[j]);
    }
    assert!(ties * 100 <= t, "{name}: {ties} of {t} targets differ at numerical ties");
    eprintln!(
        "{name}: {t} targets, {} distinct penalties chosen, {ties} ties, worst prediction difference {worst_pred:.2e}",
        distinct.len()
    );
}

#[test]
fn ridge_cv_agrees_with_himalaya() {
    let Ok(dir) = std::env::var("FACTORTOPY_HIMALAYA_DIR") else {
        eprintln!("skipped: FACTORTOPY_HIMALAYA_DIR is not set (run tests/himalaya/run.sh)");
        return;
    };
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {dir}");
    for c in &cases {
        check_case(c);
    }
}
