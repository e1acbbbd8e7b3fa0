//! Uncertainty of every headline number (DESIGN §4: bootstrap intervals
//! ([`crate::scores::bootstrap`]) and the hierarchy's permutation null
//! ([`crate::scores::permutation`]), as one block of the report.

use serde::{Deserialize, Serialize};

use crate::data::Brain;
use crate::error::{Error, Result};
use crate::scores::bootstrap::{
    accuracy_of, bootstrap, centred_interval, BootstrapConfig, BootstrapInputs, HeldOut, Interval, Replicates,
};
use crate::scores::hierarchy::HierarchyScores;
use crate::scores::permutation::{permutation_test, PermutationConfig, PermutationTest};
use crate::scores::simex::{BiasCorrection, SimexSummary};

/// Which variability an interval measures.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IntervalKind {
    /// Percentile bootstrap (centred on the point estimates) of one fitted encoder over its held-out images and the voxels within
    /// ROIs, without refitting: the sampling of images and voxels, not the optimisation's own
    /// variability.
    #[default]
    RefitFree,
    /// Prediction interval over K fits with different seeds (`fit --seeds K`), widened by their
    /// mean refit-free bootstrap variance ([`crate::scores::seed_interval`]): where another fit
    /// of the same pipeline lands, including fit-to-fit variability.
    Seeds,
    /// `fit --seeds K --bias-correct simex`: slope, b0, b1 and Spearman get a prediction interval
    /// of a fit to noise-free data, extrapolated from refits with added noise
    /// ([`crate::scores::simex`]); the other numbers keep their interval of kind `seeds`.
    Simex,
}

impl IntervalKind {
    /// The name written in reports.
    pub fn name(self) -> &'static str {
        match self {
            IntervalKind::RefitFree => "refit-free",
            IntervalKind::Seeds => "seeds",
            IntervalKind::Simex => "simex",
        }
    }
}

/// Settings of the uncertainty estimates.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct UncertaintyConfig {
    /// The bootstrap behind every interval.
    pub bootstrap: BootstrapConfig,
    /// The permutation test of the hierarchy line.
    pub permutation: PermutationConfig,
    /// Correction of the noise's bias in the hierarchy numbers (needs refits over seeds).
    #[serde(default)]
    pub bias_correction: BiasCorrection,
}

impl UncertaintyConfig {
    /// Checks the bootstrap settings.
    pub fn validate(&self) -> Result<()> {
        self.bootstrap.validate()?;
        crate::data::limits::at_most(
            "permutations (--permutations)",
            self.permutation.n_permutations,
            crate::data::limits::MAX_PERMUTATIONS,
        )?;
        Ok(())
    }

    /// The same settings with no bootstrap resamples and no permutations (the refits of a
    /// spread over seeds need only their headline numbers).
    pub fn without_resampling(&self) -> Self {
        UncertaintyConfig {
            bootstrap: BootstrapConfig { n_resamples: 0, ..self.bootstrap },
            permutation: PermutationConfig { n_permutations: 0, ..self.permutation },
            bias_correction: self.bias_correction,
        }
    }
}

/// Intervals (percentile bootstrap centred on the point estimates, at `level`) of the headline numbers and the hierarchy's
/// permutation p-values. An interval is `null` when its number is undefined (no noise ceiling,
/// no held-out predictions to resample, no bootstrap requested).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Uncertainty {
    /// What the intervals measure (`refit-free`, `seeds` or `simex`).
    pub kind: IntervalKind,
    /// Fits behind the intervals: 1 for `refit-free`, K for `seeds`, K·(1 + added-noise levels)
    /// for `simex`.
    pub n_fits: usize,
    /// Confidence level of every interval.
    pub level: f64,
    /// Bootstrap resamples B (with `seeds`: over all K fits together, split evenly).
    pub n_resamples: usize,
    /// Seed of the bootstrap draws.
    pub seed: u64,
    /// Held-out images drawn with replacement in each resample (0 when the images were not
    /// resampled: no held-out predictions, so the accuracy numbers have no interval).
    pub n_images_resampled: usize,
    /// Voxels drawn with replacement within their ROI in each resample.
    pub n_voxels_resampled: usize,
    /// Interval of the hierarchy slope.
    pub slope: Option<Interval>,
    /// Interval of b0.
    pub b0: Option<Interval>,
    /// Interval of b1.
    pub b1: Option<Interval>,
    /// Interval of Spearman ρ.
    pub spearman: Option<Interval>,
    /// Interval of the mean held-out R².
    pub r2_mean: Option<Interval>,
    /// Interval of the median held-out R².
    pub r2_median: Option<Interval>,
    /// Interval of the mean Pearson r.
    pub pearson_mean: Option<Interval>,
    /// Interval of the median Pearson r.
    pub pearson_median: Option<Interval>,
    /// Interval of the mean noise-normalised accuracy.
    pub noise_normalized_mean: Option<Interval>,
    /// Interval of the median noise-normalised accuracy.
    pub noise_normalized_median: Option<Interval>,
    /// `noise_normalized_mean` × 100 (the Algonauts challenge form).
    pub algonauts_mean: Option<Interval>,
    /// Resamples in which the hierarchy line was undefined (every drawn voxel had weight 0),
    /// left out of the line's intervals.
    pub n_undefined_lines: usize,
    /// ROI levels shuffled across whole ROIs (`null` when there is no line to test); with
    /// `seeds`, the first fit's.
    pub permutation: Option<PermutationTest>,
    /// With kind `simex`: the λ grid, the fits and the corrected numbers (`null` otherwise).
    #[serde(default)]
    pub simex: Option<SimexSummary>,
    /// Every resample's values, for paired comparisons between networks (with `seeds`, the
    /// first fit's); not serialised.
    #[serde(skip)]
    pub replicates: Replicates,
}

impl Uncertainty {
    /// Estimates from per-voxel depths, the brain's ROIs and noise ceiling, the held-out
    /// predictions (when the caller has them) and the point R² (the line's weights when
    /// `weighted`).
    pub fn estimate(
        depth: &[f64],
        brain: &Brain,
        heldout: Option<HeldOut>,
        r2: &[f32],
        weighted: bool,
        cfg: &UncertaintyConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        let v = brain.n_voxels();
        if depth.len() != v || r2.len() != v {
            return Err(Error::mismatch(format!("{} depths and {} R² values for {v} voxels", depth.len(), r2.len())));
        }
        let nc = brain.noise_ceiling.as_deref();
        let inputs = BootstrapInputs {
            depth,
            roi: &brain.roi,
            roi_levels: &brain.roi_levels,
            noise_ceiling: nc,
            heldout,
            r2,
            weighted,
        };
        let bc = &cfg.bootstrap;
        let rep = if bc.n_resamples > 0 { bootstrap(&inputs, bc)? } else { Replicates::default() };
        // Percentile intervals centred on the point estimates (`centred_interval`: resampled
        // held-out R² comes out low).
        let iv = |point: f64, x: &[f64]| centred_interval(point, x, bc.level);
        let line = HierarchyScores::from_depth(depth, &brain.roi, &brain.roi_levels, weighted.then_some(r2)).ok();
        let at = |f: fn(&HierarchyScores) -> Option<f64>| line.as_ref().and_then(f).unwrap_or(f64::NAN);
        let acc = heldout.map(|h| {
            let (r2, r) = h.scores();
            accuracy_of(&r2, &r, nc)
        });
        let acc_at = |f: fn(&crate::scores::bootstrap::AccuracyPoint) -> f64| acc.as_ref().map_or(f64::NAN, f);
        let permutation =
            permutation_test(depth, &brain.roi, &brain.roi_levels, weighted.then_some(r2), &cfg.permutation)?;
        let nn_mean = iv(acc_at(|a| a.normalized_mean), &rep.normalized_mean);
        Ok(Self {
            kind: IntervalKind::RefitFree,
            n_fits: 1,
            level: bc.level,
            n_resamples: bc.n_resamples,
            seed: bc.seed,
            n_images_resampled: heldout.filter(|_| bc.n_resamples > 0).map_or(0, |h| h.n),
            n_voxels_resampled: if bc.n_resamples > 0 { brain.roi.iter().filter(|&&r| r >= 0).count() } else { 0 },
            slope: iv(at(|s| s.slope), &rep.slope),
            b0: iv(at(|s| s.b0), &rep.b0),
            b1: iv(at(|s| s.b1), &rep.b1),
            spearman: iv(at(|s| s.spearman), &rep.spearman),
            r2_mean: iv(acc_at(|a| a.r2_mean), &rep.r2_mean),
            r2_median: iv(acc_at(|a| a.r2_median), &rep.r2_median),
            pearson_mean: iv(acc_at(|a| a.pearson_mean), &rep.pearson_mean),
            pearson_median: iv(acc_at(|a| a.pearson_median), &rep.pearson_median),
            noise_normalized_mean: nn_mean,
            noise_normalized_median: iv(acc_at(|a| a.normalized_median), &rep.normalized_median),
            algonauts_mean: nn_mean.map(|i| i.scaled(100.0)),
            n_undefined_lines: rep.slope.iter().filter(|x| !x.is_finite()).count(),
            permutation,
            simex: None,
            replicates: rep,
        })
    }
}
