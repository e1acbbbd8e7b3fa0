// Calibration of the uncertainty estimates on planted data (DESIGN §4, §8).
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
// default: K fits) against the noise-free fit at the first seed (what the same pipeline reports
// as its slope on noise-free data); it also prints, from the same K fits, the first fit's
// refit-free interval and the mixture, and whether each would have covered. `cargo test
// --release --test calibration -- --ignored --nocapture factortopy_calibration`; sizes can be
// changed for studies with FACTORTOPY_CALIBRATION_{SEEDS,LIST,K,IMAGES,EPOCHS,PATIENCE,NC,BETA,
// SIMEX,PRF} (defaults 20, 0..SEEDS, 3, 400, 60, 3, 0.3, the fast preset's smooth-L1 β 0.1, 0,
// 0; SIMEX=1 gives `--bias-correct simex`, PRF=-1 the generator's default receptive fields).
// Last runs (2-core machine, one run at a time, 2026-11-29): 20/20 on scenario seeds 0–19 and
// 19/20 on seeds 20–39 (LIST=20,...,39), 18/20 with K = 5; ≈ 6–7 min for 100 fits.
// docs/uncertainty.md has the numbers, the noise-induced shift that the interval's width covers at
// K = 3–5, and the earlier runs (17/20 before the trainer's summation order changed).
// The schedule is explicit (fast preset, d 16, grid 4, regulariser over 100 steps,
// early stopping with patience 3, at most EPOCHS epochs) so that changes of the default
// schedule do not move this check.

use factortopy::baseline::{fit_ridge_baseline, RidgeBaselineConfig};
use factortopy::data::{Brain, Features};
use factortopy::model::FitConfig;
use factortopy::engine::Estimator;
use factortopy::scores::bootstrap::percentile_interval;
use factortopy::scores::{BiasCorrection, Interval, IntervalKind, Report, Uncertainty, UncertaintyConfig};
use factortopy::synth::{generate, Scenario, SynthConfig};

const SEEDS: u64 = 20;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn planted(scenario: Scenario, seed: u64, noise_ceiling: f64, n_images: usize, n_voxels: usize) -> (Features, Brain) {
    // Point sampling (0), the data this check was calibrated on; FACTORTOPY_CALIBRATION_PRF=-1
    // plants with the generator's default receptive fields, another value with that size.
    let prf: f64 = env_or("FACTORTOPY_CALIBRATION_PRF", 0.0);
    let syn = generate(&SynthConfig {
        scenario,
        n_images,
        n_voxels,
        n_layers: 4,
        width: 16,
        grid: 4,
        noise_ceiling,
        seed,
        // Point sampling, the data this check was calibrated on. With the default
        // receptive fields the ridge intervals covered the noise-free slope in 16 of
        // 20 seeds, below the 18 required: an open question for the calibration, not hidden here.
        prf_size: (prf >= 0.0).then_some(prf),
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
    let beta = env_or("FACTORTOPY_CALIBRATION_BETA", FitConfig::fast().beta);
    let cfg = FitConfig { max_epochs: epochs, d: 16, grid: 4, reg_steps: 100, patience, beta, ..FitConfig::fast() };
    Estimator { fit: cfg, ..Estimator::default() }
}

/// Intervals of one noisy brain from `fit --seeds K` (with `--bias-correct simex` when
/// `simex`): the report, and for comparison the first seed's refit-free slope interval, the
/// mixture interval (the percentile interval of all K fits' refit-free bootstrap replicates
/// pooled) and the uncorrected interval over seeds (from the same K fits at λ = 0).
struct SeedFits {
    report: Report,
    refit_free: Option<Interval>,
    mixture: Option<Interval>,
    over_seeds: Option<Interval>,
}

fn factortopy_seeds(f: &Features, b: &Brain, k: usize, simex: bool) -> SeedFits {
    let mut reports = Vec::new();
    let mut cb = |_seed: u64, r: &Report| reports.push(r.clone());
    let mut est = factortopy_estimator();
    if simex {
        est.uncertainty.bias_correction = BiasCorrection::Simex;
    }
    let report = est.fit_seeds(f, b, k, None, Some(&mut cb)).unwrap().report().clone();
    let level = report.uncertainty.as_ref().unwrap().level;
    let pooled: Vec<f64> = reports.iter().flat_map(|r| r.uncertainty.as_ref().unwrap().replicates.slope.clone()).collect();
    SeedFits {
        refit_free: reports[0].uncertainty.as_ref().unwrap().slope,
        mixture: percentile_interval(&pooled, level),
        over_seeds: Uncertainty::over_seeds(&reports, &[]).unwrap().slope,
        report,
    }
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
#[ignore = "≈ 7 minutes on the 2-core machine (100 FactorTopy fits); last runs 20/20 and 19/20 (seeds 20–39): docs/uncertainty.md"]
fn factortopy_calibration() {
    let seeds = env_or("FACTORTOPY_CALIBRATION_SEEDS", SEEDS);
    let k = env_or("FACTORTOPY_CALIBRATION_K", 3usize);
    let nc = env_or("FACTORTOPY_CALIBRATION_NC", 0.3);
    let images = env_or("FACTORTOPY_CALIBRATION_IMAGES", 400);
    let simex = env_or("FACTORTOPY_CALIBRATION_SIMEX", 0u8) == 1;
    let list: Vec<u64> = std::env::var("FACTORTOPY_CALIBRATION_LIST")
        .map(|l| l.split(',').map(|x| x.trim().parse().expect("a comma-separated list of seeds")).collect())
        .unwrap_or_else(|_| (0..seeds).collect());
    let n = list.len() as u64;
    let start = std::time::Instant::now();
    let (mut covered, mut seeds_covered, mut refit_free_covered, mut mixture_covered) = (0, 0, 0, 0);
    let (mut hier_p, mut shuffled_p, mut halves, mut rf_halves, mut gaps, mut corrected_gaps) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let kind = if simex { IntervalKind::Simex } else { IntervalKind::Seeds };
    for &seed in &list {
        let (f, noisy) = planted(Scenario::Hierarchical, seed, nc, images, 280);
        let (_, clean) = planted(Scenario::Hierarchical, seed, 1.0, images, 280);
        let fits = factortopy_seeds(&f, &noisy, k, simex);
        let rep = &fits.report;
        let target = factortopy_single(&f, &clean).hierarchy.slope.expect("a defined noise-free slope");
        let u = rep.uncertainty.as_ref().unwrap();
        assert_eq!((u.kind, u.n_fits), (kind, if simex { 4 * k } else { k }));
        let iv = u.slope.expect("an interval of the slope");
        let hit = iv.contains(target);
        covered += hit as usize;
        let hit_of = |i: Option<Interval>| i.is_some_and(|i| i.contains(target));
        let (seeds_hit, rf_hit, mix_hit) = (hit_of(fits.over_seeds), hit_of(fits.refit_free), hit_of(fits.mixture));
        seeds_covered += seeds_hit as usize;
        refit_free_covered += rf_hit as usize;
        mixture_covered += mix_hit as usize;
        halves.push((iv.hi - iv.lo) / 2.0);
        rf_halves.push(fits.refit_free.map_or(f64::NAN, |i| (i.hi - i.lo) / 2.0));
        let spread = rep.seeds.as_ref().and_then(|s| s.slope.clone()).expect("a spread over seeds");
        gaps.push(spread.mean - target);
        let x = u.simex.as_ref().and_then(|x| x.slope.clone());
        let corrected = x.as_ref().map_or(f64::NAN, |x| x.corrected);
        corrected_gaps.push(corrected - target);
        let p = u.permutation.unwrap().p_slope;
        hier_p.push(p);
        let (fs, shuffled) = planted(Scenario::Shuffled, seed, nc, images, 280);
        let ps = factortopy_single(&fs, &shuffled).uncertainty.unwrap().permutation.unwrap().p_slope;
        shuffled_p.push(ps);
        let show = |i: Option<Interval>, hit: bool| {
            i.map_or("none".into(), |i| format!("[{:.3}, {:.3}] {}", i.lo, i.hi, if hit { "covered" } else { "missed" }))
        };
        eprintln!(
            "factortopy seed {seed:>2}: slopes {:?} (mean {:.3}) SIMEX means per λ {:?} corrected {corrected:.3}; \
             {:.0} % {} [{:.3}, {:.3}] noise-free {target:.3} {}; over seeds {}; refit-free {}; mixture {}; \
             p(hier) {p:.4} p(shuffled) {ps:.4}; {:.0} s so far",
            spread.values.iter().map(|x| (x * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            spread.mean,
            x.map_or(vec![], |x| x.means.iter().map(|m| (m * 1000.0).round() / 1000.0).collect()),
            100.0 * u.level,
            kind.name(),
            iv.lo,
            iv.hi,
            if hit { "covered" } else { "MISSED" },
            show(fits.over_seeds, seeds_hit),
            show(fits.refit_free, rf_hit),
            show(fits.mixture, mix_hit),
            start.elapsed().as_secs_f64()
        );
    }
    let range = |xs: &[f64]| {
        (xs.iter().copied().fold(f64::INFINITY, f64::min), xs.iter().copied().fold(f64::NEG_INFINITY, f64::max))
    };
    eprintln!(
        "factortopy (K = {k}, {images} images, NC {nc}): coverage of the {} interval {covered}/{n} (half-width median {:.3}, \
         range {:.3}–{:.3}); uncorrected over seeds {seeds_covered}/{n}; refit-free alone {refit_free_covered}/{n} \
         (half-width median {:.3}); mixture of the K fits' replicates {mixture_covered}/{n}; \
         mean over seeds − noise-free: median {:+.3}, range {:+.3}…{:+.3}; SIMEX-corrected − noise-free: median {:+.3}, \
         range {:+.3}…{:+.3}; hierarchical p max {:.4}; shuffled p median {:.3}, {} of {n} below 0.05; {:.0} s",
        kind.name(),
        median(&halves),
        range(&halves).0,
        range(&halves).1,
        median(&rf_halves),
        median(&gaps),
        range(&gaps).0,
        range(&gaps).1,
        median(&corrected_gaps),
        range(&corrected_gaps).0,
        range(&corrected_gaps).1,
        hier_p.iter().copied().fold(0.0, f64::max),
        median(&shuffled_p),
        shuffled_p.iter().filter(|&&p| p < 0.05).count(),
        start.elapsed().as_secs_f64()
    );
    check(&Outcome { covered, hier_p, shuffled_p });
}

/// The study behind docs/uncertainty.md ("What the FactorTopy rows show"): for each scenario seed in
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

/// SIMEX end to end on tiny planted data, in seconds: an under-trained schedule (the warm-up
/// that raises layer entropy fades over 100 optimiser steps and the fit stops soon after) lets
/// measurement noise attenuate the slope strongly (docs/uncertainty.md: noisy fits learn the
/// layer choice more slowly), so the fits to the noisy brain sit well below the fit to the
/// noise-free one. The SIMEX-corrected slope must move toward the noise-free fit's slope (at the
/// first seed, as in the calibration) and its interval cover it; the report carries the kind,
/// the λ grid, the number of fits and the uncorrected numbers; and it is deterministic.
#[test]
fn simex_moves_the_slope_toward_the_noise_free_fit() {
    let (f, noisy) = planted(Scenario::Hierarchical, 3, 0.3, 160, 120);
    let (_, clean) = planted(Scenario::Hierarchical, 3, 1.0, 160, 120);
    let cfg = FitConfig { max_epochs: 12, patience: 1000, d: 16, grid: 4, reg_steps: 60, ..FitConfig::fast() };
    let mut est = Estimator { fit: cfg, ..Estimator::default() };
    est.uncertainty = UncertaintyConfig { bias_correction: BiasCorrection::Simex, ..est.uncertainty.without_resampling() };
    est.uncertainty.bootstrap.n_resamples = 40;
    let k = 2;
    let start = std::time::Instant::now();
    let rep = est.fit_seeds(&f, &noisy, k, None, None).unwrap().report().clone();
    // One fit cannot extrapolate: refused; the noise-free target is a plain fit.
    let e = est.fit(&f, &clean, None).err().expect("a single fit refuses bias correction");
    assert!(e.to_string().contains("--seeds"), "{e}");
    let plain = UncertaintyConfig { bias_correction: BiasCorrection::None, ..est.uncertainty.without_resampling() };
    let target = Estimator { uncertainty: plain, ..est.clone() }.fit(&f, &clean, None).unwrap().report().hierarchy.slope.unwrap();
    let u = rep.uncertainty.as_ref().unwrap();
    let x = u.simex.as_ref().expect("a SIMEX summary");
    assert_eq!((u.kind, u.n_fits, x.n_fits, x.fits_per_lambda), (IntervalKind::Simex, 4 * k, 4 * k, k));
    assert_eq!(x.lambdas, vec![0.0, 0.5, 1.0, 2.0]);
    let slope = x.slope.as_ref().unwrap();
    let uncorrected = rep.seeds.as_ref().unwrap().slope.as_ref().unwrap().mean;
    eprintln!(
        "noisy slopes mean {uncorrected:.3} (first fit {:.3}), SIMEX means per λ {:?}, corrected {:.3} {:?}, noise-free {target:.3}; {:.1} s",
        rep.hierarchy.slope.unwrap(),
        slope.means,
        slope.corrected,
        u.slope,
        start.elapsed().as_secs_f64()
    );
    // The uncorrected numbers stay: the first fit's slope and the mean over seeds (λ = 0).
    assert!((slope.means[0] - uncorrected).abs() < 1e-12);
    assert!(uncorrected < target - 0.1, "the schedule should attenuate the noisy slope: {uncorrected} vs {target}");
    // More added noise, lower slope; the correction moves up, toward the noise-free fit, and its
    // interval covers that fit. Not asserted: how much of the gap it closes. Here the slope
    // falls steeply from λ = 0 to 0.5 and then flattens, and a quadratic through such a curve
    // can overshoot at λ = −1 (on scenario seeds 0–5 of this setting the corrected slope was
    // 0.76–1.43 against noise-free 0.72–0.84, uncorrected 0.43–0.64; every interval covered).
    assert!(slope.means.windows(2).all(|w| w[1] < w[0]), "{:?}", slope.means);
    assert!(slope.corrected > uncorrected + 0.1, "{} vs {uncorrected}", slope.corrected);
    assert!(u.slope.unwrap().contains(target), "{:?} vs {target}", u.slope);
    let json = rep.to_json();
    assert!(json.contains("\"kind\": \"simex\"") && json.contains("\"bias_correction\": \"simex\""), "{json}");
    // Deterministic for a seed.
    assert_eq!(est.fit_seeds(&f, &noisy, k, None, None).unwrap().report().to_json(), json);
}
