//! Intervals over seeds from the reports of K fits: the one place that reads whole
//! reports to build an [`Uncertainty`], so `uncertainty` (which `report` embeds) does not depend
//! on `report`.

use crate::error::{Error, Result};
use crate::scores::bootstrap::Replicates;
use crate::scores::report::Report;
use crate::scores::seed_interval::{replicate_variance, seeds_interval, OverSeeds};
use crate::scores::simex::{extrapolate, SimexNumber, SimexSummary, DEGREE};
use crate::scores::stats;
use crate::scores::uncertainty::{IntervalKind, Uncertainty};

impl Uncertainty {
    /// The intervals of kind [`IntervalKind::Seeds`] from the reports of K ≥ 2 fits of the same
    /// data with different seeds, each carrying its refit-free uncertainty (with its
    /// replicates, as computed in this process). The permutation test, the replicates and the
    /// held-out image count are the first report's; `n_resamples` is the sum over the fits.
    ///
    /// `perturbed` holds, for each added-noise level λ > 0 of SIMEX
    /// ([`crate::scores::simex`]), the reports of the K refits (same seeds, responses with added
    /// noise); when it is not empty the intervals are of kind [`IntervalKind::Simex`]: slope,
    /// b0, b1 and Spearman are extrapolated to no noise (the bootstrap term from the fits at
    /// λ = 0), the other numbers keep their interval over seeds.
    pub fn over_seeds(reports: &[Report], perturbed: &[(f64, Vec<Report>)]) -> Result<Self> {
        let us: Vec<&Uncertainty> = reports
            .iter()
            .map(|r| r.uncertainty.as_ref())
            .collect::<Option<_>>()
            .ok_or_else(|| Error::invalid("an interval over seeds needs every fit's refit-free uncertainty"))?;
        if us.len() < 2 {
            return Err(Error::invalid(format!("an interval over seeds needs at least 2 fits, got {}", us.len())));
        }
        let first = us[0];
        if us.iter().any(|u| u.level != first.level || u.kind != IntervalKind::RefitFree) {
            return Err(Error::invalid("the fits of an interval over seeds must share the confidence level and be refit-free"));
        }
        if perturbed.iter().any(|(l, r)| !(*l > 0.0 && l.is_finite()) || r.len() != us.len()) {
            return Err(Error::invalid(format!(
                "SIMEX needs, at each added-noise level λ > 0, as many refits as seeds ({})",
                us.len()
            )));
        }
        let resampled = first.n_resamples > 0;
        let level = first.level;
        type Point = fn(&Report) -> Option<f64>;
        type Reps = fn(&Replicates) -> &Vec<f64>;
        let interval = |point: Point, reps: Reps, range: Option<(f64, f64)>| {
            let points: Vec<f64> = reports.iter().map(|r| point(r).unwrap_or(f64::NAN)).collect();
            let w: Vec<f64> = us.iter().map(|u| replicate_variance(reps(&u.replicates))).collect();
            seeds_interval(&OverSeeds { points: &points, bootstrap_variances: resampled.then_some(&w[..]), range }, level)
        };
        let unit = Some((0.0, 1.0));
        let signed = Some((-1.0, 1.0));
        let k = reports.len();
        let mut lambdas = vec![0.0; k];
        perturbed.iter().for_each(|(l, _)| lambdas.extend(std::iter::repeat_n(*l, k)));
        // SIMEX of one hierarchy number: (its corrected interval, the report's entry).
        let simex = |point: Point, reps: Reps, range: Option<(f64, f64)>| {
            let mut values: Vec<f64> = reports.iter().map(|r| point(r).unwrap_or(f64::NAN)).collect();
            perturbed.iter().for_each(|(_, rs)| values.extend(rs.iter().map(|r| point(r).unwrap_or(f64::NAN))));
            let w = if resampled {
                us.iter().map(|u| replicate_variance(reps(&u.replicates))).sum::<f64>() / k as f64
            } else {
                0.0
            };
            let e = extrapolate(&lambdas, &values, DEGREE, w, level, range)?;
            let means = values.chunks(k).map(stats::mean).collect();
            Some((e.interval, SimexNumber { corrected: e.estimate, means }))
        };
        let hierarchy = |point: Point, reps: Reps, range: Option<(f64, f64)>| {
            if perturbed.is_empty() {
                (interval(point, reps, range), None)
            } else {
                simex(point, reps, range).map_or((None, None), |(i, n)| (Some(i), Some(n)))
            }
        };
        let (slope, slope_x) = hierarchy(|r| r.hierarchy.slope, |x| &x.slope, None);
        let (b0, b0_x) = hierarchy(|r| r.hierarchy.b0, |x| &x.b0, None);
        let (b1, b1_x) = hierarchy(|r| r.hierarchy.b1, |x| &x.b1, None);
        let (spearman, spearman_x) = hierarchy(|r| r.hierarchy.spearman, |x| &x.spearman, signed);
        let n_fits = k * (1 + perturbed.len());
        let summary = (!perturbed.is_empty()).then(|| SimexSummary {
            lambdas: std::iter::once(0.0).chain(perturbed.iter().map(|(l, _)| *l)).collect(),
            degree: DEGREE,
            fits_per_lambda: k,
            n_fits,
            slope: slope_x,
            b0: b0_x,
            b1: b1_x,
            spearman: spearman_x,
        });
        let nn_mean = interval(|r| r.noise_ceiling.map(|c| c.normalized.mean), |x| &x.normalized_mean, unit);
        Ok(Self {
            kind: if perturbed.is_empty() { IntervalKind::Seeds } else { IntervalKind::Simex },
            n_fits,
            level,
            n_resamples: us.iter().map(|u| u.n_resamples).sum(),
            seed: first.seed,
            n_images_resampled: first.n_images_resampled,
            n_voxels_resampled: first.n_voxels_resampled,
            slope,
            b0,
            b1,
            spearman,
            r2_mean: interval(|r| Some(r.r2.mean), |x| &x.r2_mean, Some((f64::NEG_INFINITY, 1.0))),
            r2_median: interval(|r| Some(r.r2.median), |x| &x.r2_median, Some((f64::NEG_INFINITY, 1.0))),
            pearson_mean: interval(|r| Some(r.pearson.mean), |x| &x.pearson_mean, signed),
            pearson_median: interval(|r| Some(r.pearson.median), |x| &x.pearson_median, signed),
            noise_normalized_mean: nn_mean,
            noise_normalized_median: interval(|r| r.noise_ceiling.map(|c| c.normalized.median), |x| &x.normalized_median, unit),
            algonauts_mean: nn_mean.map(|i| i.scaled(100.0)),
            n_undefined_lines: us.iter().map(|u| u.n_undefined_lines).sum(),
            permutation: first.permutation,
            simex: summary,
            replicates: first.replicates.clone(),
        })
    }
}
