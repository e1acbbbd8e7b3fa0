// Calibration of the uncertainty estimates on planted data (issue 14, DESIGN §4, §8).
//
// For each of 20 seeds of a planted scenario, the brain is planted twice on the same network,
// cortex and truth: once with noise (noise ceiling NC) and once noise-free (NC = 1; pure-noise
// voxels stay pure noise). The same pipeline fits both; the noisy fit's 95 % interval of the
// slope must cover the noise-free fit's slope in at least 90 % of seeds. The permutation null
// must reject the hierarchical scenario (p < 0.01) and must not reject the shuffled one more
// often than chance (its p-values are not concentrated near 0).
//
// The CI test uses the layer-wise ridge baseline (the same bootstrap and permutation code as
// FactorTopy, a fraction of a second per fit). `factortopy_calibration` runs the FactorTopy
// pipeline as `fit --seeds K` does (`Estimator::fit_seeds`, intervals of kind `seeds`, K = 3 by
// default) against the noise-free fit at the first seed (what the same pipeline reports as its
// slope on noise-free data); it also prints the first fit's refit-free interval and whether that
// alone would have covered. It takes about 20 minutes on a loaded 2-core machine
// (`cargo test --release --test calibration -- --ignored --nocapture`); sizes can be changed
// for studies with FACTORTOPY_CALIBRATION_{SEEDS,K,IMAGES,EPOCHS,NC} (defaults 20, 3, 400, 60,
// 0.3). Last run: 17/20 covered, short of 18 (README "Uncertainty" has the numbers and why).
// The schedule is explicit (fast preset, d 16, grid 4, regulariser over 100 steps,
// early stopping with patience 3, at most EPOCHS epochs) so that changes of the default
// schedule do not move this check.

use factortopy::baseline::{fit_ridge_baseline, RidgeBaselineConfig};
use factortopy::data::{Brain, Features};
use factortopy::model::FitConfig;
use factortopy::engine::Estimator;
use factortopy::scores::bootstrap::percentile_interval;
use factortopy::scores::{Interval, IntervalKind, Report, UncertaintyConfig};
use factortopy::synth::{generate, Scenario, SynthConfig};

const SEEDS: u64 = 20;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn planted(scenario: Scenario, seed: u64, noise_ceiling: f64, n_images: usize, n_voxels: usize) -> (Features, Brain) {
    let syn = generate(&SynthConfig {
        scenario,
        n_images,
        n_voxels,
        n_layers: 4,
        width: 16,
        grid: 4,
        noise_ceiling,
        seed,
        // Point sampling, the data this check was calibrated on (issue 14). With the default
        // receptive fields (issue 16) the ridge intervals covered the noise-free slope in 16 of
        // 20 seeds, below the 18 required: an open question for the calibration, not hidden here.
        prf_size: Some(0.0),
        ..SynthConfig::default()
    })
    .unwrap();
    let mut brain = syn.brain;
    brain.zscore("synthetic").unwrap();
    (syn.features, brain)
}

fn ridge(f: &Features, b: &Brain) -> Report {
    let cfg = RidgeBaselineConfig { n_folds: 3, ..RidgeBaselineConfig::default() };
    fit_ridge_baseline(f, b, &cfg, false, None).unwrap().report
}

fn factortopy_estimator() -> Estimator {
    let epochs = env_or("FACTORTOPY_CALIBRATION_EPOCHS", 60);
    let patience = env_or("FACTORTOPY_CALIBRATION_PATIENCE", 3);
    let cfg = FitConfig { max_epochs: epochs, d: 16, grid: 4, reg_steps: 100, patience, ..FitConfig::fast() };
    Estimator { fit: cfg, ..Estimator::default() }
}

/// `fit --seeds K` on the noisy brain: its report (intervals of kind `seeds`) and, for
/// comparison, the first seed's refit-free slope interval and the mixture interval (the
/// percentile interval of all K fits' refit-free bootstrap replicates pooled).
fn factortopy_seeds(f: &Features, b: &Brain, k: usize) -> (Report, Option<Interval>, Option<Interval>) {
    let mut refit_free = Vec::new();
    let mut pooled = Vec::new();
    let mut cb = |_seed: u64, r: &Report| {
        let u = r.uncertainty.as_ref().unwrap();
        refit_free.push(u.slope);
        pooled.extend_from_slice(&u.replicates.slope);
    };
    let rep = factortopy_estimator().fit_seeds(f, b, k, None, Some(&mut cb)).unwrap().report().clone();
    let level = rep.uncertainty.as_ref().unwrap().level;
    (rep, refit_free[0], percentile_interval(&pooled, level))
}

/// One FactorTopy fit at the first seed, with the permutation test and no bootstrap (the
/// noise-free target; the shuffled scenario's null).
fn factortopy_single(f: &Features, b: &Brain) -> Report {
    let mut est = factortopy_estimator();
    let all = UncertaintyConfig::default();
    est.uncertainty = UncertaintyConfig { permutation: all.permutation, ..all.without_resampling() };
    est.fit(f, b, None).unwrap().report().clone()
}

struct Outcome {
    covered: usize,
    hier_p: Vec<f64>,
    shuffled_p: Vec<f64>,
}

fn calibrate(
    name: &str,
    fit: impl Fn(&Features, &Brain) -> Report,
    seeds: u64,
    nc: f64,
    n_images: usize,
    n_voxels: usize,
) -> Outcome {
    let mut covered = 0;
    let mut hier_p = Vec::new();
    let mut shuffled_p = Vec::new();
    for seed in 0..seeds {
        let (f, noisy) = planted(Scenario::Hierarchical, seed, nc, n_images, n_voxels);
        let (_, clean) = planted(Scenario::Hierarchical, seed, 1.0, n_images, n_voxels);
        let rep = fit(&f, &noisy);
        let target = fit(&f, &clean).hierarchy.slope.expect("a defined noise-free slope");
        let u = rep.uncertainty.as_ref().unwrap();
        let iv = u.slope.unwrap();
        let hit = iv.contains(target);
        covered += hit as usize;
        let p = u.permutation.unwrap();
        hier_p.push(p.p_slope);
        let (fs, shuffled) = planted(Scenario::Shuffled, seed, nc, n_images, n_voxels);
        let ps = fit(&fs, &shuffled).uncertainty.unwrap().permutation.unwrap().p_slope;
        shuffled_p.push(ps);
        eprintln!(
            "{name} seed {seed:>2}: slope {:.3} [{:.3}, {:.3}] noise-free {target:.3} {}  p(hier) {:.4}  p(shuffled) {ps:.4}",
            rep.hierarchy.slope.expect("a defined slope"),
            iv.lo,
            iv.hi,
            if hit { "covered" } else { "MISSED" },
            p.p_slope
        );
    }
    eprintln!(
        "{name}: coverage {covered}/{seeds}; hierarchical p max {:.4}; shuffled p median {:.3}, {} of {seeds} below 0.05",
        hier_p.iter().copied().fold(0.0, f64::max),
        median(&shuffled_p),
        shuffled_p.iter().filter(|&&p| p < 0.05).count()
    );
    Outcome { covered, hier_p, shuffled_p }
}

fn median(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    (s[(n - 1) / 2] + s[n / 2]) / 2.0
}

fn check(o: &Outcome) {
    assert_eq!(o.hier_p.len(), SEEDS as usize, "the check is defined for {SEEDS} seeds");
    assert!(o.covered * 10 >= 9 * SEEDS as usize, "95 % intervals covered the noise-free slope in {}/{SEEDS} seeds", o.covered);
    assert!(o.hier_p.iter().all(|&p| p < 0.01), "hierarchical p-values {:?}", o.hier_p);
    // Under the null, P(p < 0.05) is at most 0.05 (one expected in 20); 5 or more of 20 would be
    // concentration near 0 (binomial tail < 0.3 %). And the p-values must spread: median > 0.2.
    let small = o.shuffled_p.iter().filter(|&&p| p < 0.05).count();
    assert!(small < 5 && median(&o.shuffled_p) > 0.2, "shuffled p-values concentrate near 0: {:?}", o.shuffled_p);
}

#[test]
fn ridge_calibration() {
    let o = calibrate("ridge", ridge, SEEDS, 0.3, 240, 280);
    check(&o);
}

#[test]
#[ignore = "17 minutes (100 FactorTopy fits); not met yet: 17/20 covered (README, Uncertainty)"]
fn factortopy_calibration() {
    let seeds = env_or("FACTORTOPY_CALIBRATION_SEEDS", SEEDS);
    let k = env_or("FACTORTOPY_CALIBRATION_K", 3usize);
    let nc = env_or("FACTORTOPY_CALIBRATION_NC", 0.3);
    let images = env_or("FACTORTOPY_CALIBRATION_IMAGES", 400);
    let start = std::time::Instant::now();
    let (mut covered, mut refit_free_covered, mut mixture_covered) = (0, 0, 0);
    let (mut hier_p, mut shuffled_p, mut halves, mut rf_halves, mut gaps) = (vec![], vec![], vec![], vec![], vec![]);
    for seed in 0..seeds {
        let (f, noisy) = planted(Scenario::Hierarchical, seed, nc, images, 280);
        let (_, clean) = planted(Scenario::Hierarchical, seed, 1.0, images, 280);
        let (rep, refit_free, mixture) = factortopy_seeds(&f, &noisy, k);
        let target = factortopy_single(&f, &clean).hierarchy.slope.expect("a defined noise-free slope");
        let u = rep.uncertainty.as_ref().unwrap();
        assert_eq!((u.kind, u.n_fits), (IntervalKind::Seeds, k));
        let iv = u.slope.expect("a seeds interval of the slope");
        let hit = iv.contains(target);
        covered += hit as usize;
        let rf_hit = refit_free.is_some_and(|i| i.contains(target));
        refit_free_covered += rf_hit as usize;
        let mix_hit = mixture.is_some_and(|i| i.contains(target));
        mixture_covered += mix_hit as usize;
        halves.push((iv.hi - iv.lo) / 2.0);
        rf_halves.push(refit_free.map_or(f64::NAN, |i| (i.hi - i.lo) / 2.0));
        let spread = rep.seeds.as_ref().and_then(|s| s.slope.clone()).expect("a spread over seeds");
        gaps.push(spread.mean - target);
        let p = u.permutation.unwrap().p_slope;
        hier_p.push(p);
        let (fs, shuffled) = planted(Scenario::Shuffled, seed, nc, images, 280);
        let ps = factortopy_single(&fs, &shuffled).uncertainty.unwrap().permutation.unwrap().p_slope;
        shuffled_p.push(ps);
        eprintln!(
            "factortopy seed {seed:>2}: slopes {:?} (mean {:.3}) {:.0} % over seeds [{:.3}, {:.3}] noise-free {target:.3} {}; \
             refit-free [{:.3}, {:.3}] {}; mixture [{:.3}, {:.3}] {}; p(hier) {p:.4} p(shuffled) {ps:.4}; {:.0} s so far",
            spread.values.iter().map(|x| (x * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            spread.mean,
            100.0 * u.level,
            iv.lo,
            iv.hi,
            if hit { "covered" } else { "MISSED" },
            refit_free.map_or(f64::NAN, |i| i.lo),
            refit_free.map_or(f64::NAN, |i| i.hi),
            if rf_hit { "covered" } else { "missed" },
            mixture.map_or(f64::NAN, |i| i.lo),
            mixture.map_or(f64::NAN, |i| i.hi),
            if mix_hit { "covered" } else { "missed" },
            start.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "factortopy (K = {k}, {images} images, NC {nc}): coverage over seeds {covered}/{seeds} (half-width median {:.3}, \
         range {:.3}–{:.3}); refit-free alone {refit_free_covered}/{seeds} (half-width median {:.3}); \
         mixture of the K fits' replicates {mixture_covered}/{seeds}; \
         mean over seeds − noise-free: median {:+.3}, range {:+.3}…{:+.3}; hierarchical p max {:.4}; \
         shuffled p median {:.3}, {} of {seeds} below 0.05; {:.0} s",
        median(&halves),
        halves.iter().copied().fold(f64::INFINITY, f64::min),
        halves.iter().copied().fold(0.0, f64::max),
        median(&rf_halves),
        median(&gaps),
        gaps.iter().copied().fold(f64::INFINITY, f64::min),
        gaps.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        hier_p.iter().copied().fold(0.0, f64::max),
        median(&shuffled_p),
        shuffled_p.iter().filter(|&&p| p < 0.05).count(),
        start.elapsed().as_secs_f64()
    );
    check(&Outcome { covered, hier_p, shuffled_p });
}

/// The study behind README's "What the FactorTopy rows show": for each scenario seed in
/// FACTORTOPY_CALIBRATION_LIST (default 0..6), K fits (seeds 0..K, default 6) of the noisy and of
/// the noise-free brain, with their slopes, best epochs and refit-free half-widths. With
/// FACTORTOPY_CALIBRATION_PATIENCE=1000 and FACTORTOPY_CALIBRATION_EPOCHS=E the fits run E epochs
/// without early stopping (the best epoch by validation R² is still kept).
#[test]
#[ignore = "a study, not a check: 72 FactorTopy fits at the defaults"]
fn factortopy_noisy_vs_noise_free_study() {
    let k = env_or("FACTORTOPY_CALIBRATION_K", 6u64);
    let nc = env_or("FACTORTOPY_CALIBRATION_NC", 0.3);
    let images = env_or("FACTORTOPY_CALIBRATION_IMAGES", 400);
    let list: Vec<u64> = std::env::var("FACTORTOPY_CALIBRATION_LIST")
        .map(|l| l.split(',').map(|x| x.trim().parse().expect("a comma-separated list of seeds")).collect())
        .unwrap_or_else(|_| (0..6).collect());
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    for seed in list {
        let (f, noisy) = planted(Scenario::Hierarchical, seed, nc, images, 280);
        let (_, clean) = planted(Scenario::Hierarchical, seed, 1.0, images, 280);
        let mut line = format!("scenario seed {seed:>2}:");
        for (name, brain) in [("noisy", &noisy), ("noise-free", &clean)] {
            let (mut slopes, mut epochs, mut halves) = (vec![], vec![], vec![]);
            for fit_seed in 0..k {
                let mut est = factortopy_estimator();
                est.fit.seed = fit_seed;
                let rep = est.fit(&f, brain, None).unwrap().report().clone();
                slopes.push(round(rep.hierarchy.slope.expect("a defined slope")));
                epochs.push(rep.fit.as_ref().map_or(0, |s| s.best_epoch));
                halves.push(rep.uncertainty.as_ref().and_then(|u| u.slope).map_or(f64::NAN, |i| round((i.hi - i.lo) / 2.0)));
            }
            let mean = slopes.iter().sum::<f64>() / slopes.len() as f64;
            line += &format!(" {name} slopes {slopes:?} (mean {mean:.3}) best epochs {epochs:?} refit-free half-widths {halves:?};");
        }
        eprintln!("{line}");
    }
}
