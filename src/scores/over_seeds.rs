//! Intervals over seeds from the reports of K fits (issue 14): the one place that reads whole
//! reports to build an [`Uncertainty`], so `uncertainty` (which `report` embeds) does not depend
//! on `report`.

use crate::error::{Error, Result};
use crate::scores::bootstrap::Replicates;
use crate::scores::report::Report;
use crate::scores::seed_interval::{replicate_variance, seeds_interval, OverSeeds};
use crate::scores::uncertainty::{IntervalKind, Uncertainty};

impl Uncertainty {
    /// The intervals of kind [`IntervalKind::Seeds`] from the reports of K ≥ 2 fits of the same
    /// data with different seeds, each carrying its refit-free uncertainty (with its
    /// replicates, as computed in this process). The permutation test, the replicates and the
    /// held-out image count are the first report's; `n_resamples` is the sum over the fits.
    pub fn over_seeds(reports: &[Report]) -> Result<Self> {
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
        let nn_mean = interval(|r| r.noise_ceiling.map(|c| c.normalized.mean), |x| &x.normalized_mean, unit);
        Ok(Self {
            kind: IntervalKind::Seeds,
            n_fits: us.len(),
            level,
            n_resamples: us.iter().map(|u| u.n_resamples).sum(),
            seed: first.seed,
            n_images_resampled: first.n_images_resampled,
            n_voxels_resampled: first.n_voxels_resampled,
            slope: interval(|r| r.hierarchy.slope, |x| &x.slope, None),
            b0: interval(|r| r.hierarchy.b0, |x| &x.b0, None),
            b1: interval(|r| r.hierarchy.b1, |x| &x.b1, None),
            spearman: interval(|r| r.hierarchy.spearman, |x| &x.spearman, signed),
            r2_mean: interval(|r| Some(r.r2.mean), |x| &x.r2_mean, Some((f64::NEG_INFINITY, 1.0))),
            r2_median: interval(|r| Some(r.r2.median), |x| &x.r2_median, Some((f64::NEG_INFINITY, 1.0))),
            pearson_mean: interval(|r| Some(r.pearson.mean), |x| &x.pearson_mean, signed),
            pearson_median: interval(|r| Some(r.pearson.median), |x| &x.pearson_median, signed),
            noise_normalized_mean: nn_mean,
            noise_normalized_median: interval(|r| r.noise_ceiling.map(|c| c.normalized.median), |x| &x.normalized_median, unit),
            algonauts_mean: nn_mean.map(|i| i.scaled(100.0)),
            n_undefined_lines: us.iter().map(|u| u.n_undefined_lines).sum(),
            permutation: first.permutation,
            replicates: first.replicates.clone(),
        })
    }
}
