//! The fit's own randomness: the spread of every headline number over refits with
//! several seeds (`fit --seeds K`). A seed sets the encoder's initialisation, the batch order and
//! the train/validation split, so the spread covers all three.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::scores::stats;
use crate::scores::Report;

/// Spread of one number over the seeds' fits.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Spread {
    /// Mean over the fits.
    pub mean: f64,
    /// Sample standard deviation (divides by K − 1).
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// One value per seed, in the order of `SeedSpread::seeds`.
    pub values: Vec<f64>,
}

impl Spread {
    /// `None` unless every value is finite (a number undefined for one seed has no spread).
    pub fn of(values: Vec<f64>) -> Option<Self> {
        if values.len() < 2 || values.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let k = values.len() as f64;
        let mean = stats::mean(&values);
        let ss: f64 = values.iter().map(|x| (x - mean) * (x - mean)).sum();
        Some(Self {
            mean,
            std: (ss / (k - 1.0)).sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            values,
        })
    }
}

/// Spread of the headline numbers over K refits.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SeedSpread {
    /// The fits' seeds, in fitting order.
    pub seeds: Vec<u64>,
    /// Spread of the hierarchy slope.
    pub slope: Option<Spread>,
    /// Spread of b0.
    pub b0: Option<Spread>,
    /// Spread of b1.
    pub b1: Option<Spread>,
    /// Spread of Spearman ρ.
    pub spearman: Option<Spread>,
    /// Spread of the mean held-out R².
    pub r2_mean: Option<Spread>,
    /// Spread of the median held-out R².
    pub r2_median: Option<Spread>,
    /// Spread of the mean Pearson r.
    pub pearson_mean: Option<Spread>,
    /// Spread of the mean noise-normalised accuracy.
    pub noise_normalized_mean: Option<Spread>,
}

impl SeedSpread {
    /// From the reports of the same features and brain fitted with `seeds` (same order).
    pub fn from_reports(seeds: &[u64], reports: &[Report]) -> Result<Self> {
        if seeds.len() != reports.len() || seeds.len() < 2 {
            return Err(Error::invalid(format!(
                "a spread over seeds needs at least 2 fits, one per seed ({} seeds, {} reports)",
                seeds.len(),
                reports.len()
            )));
        }
        let get = |f: &dyn Fn(&Report) -> Option<f64>| Spread::of(reports.iter().map(|r| f(r).unwrap_or(f64::NAN)).collect());
        Ok(Self {
            seeds: seeds.to_vec(),
            slope: get(&|r| r.hierarchy.slope),
            b0: get(&|r| r.hierarchy.b0),
            b1: get(&|r| r.hierarchy.b1),
            spearman: get(&|r| r.hierarchy.spearman),
            r2_mean: get(&|r| Some(r.r2.mean)),
            r2_median: get(&|r| Some(r.r2.median)),
            pearson_mean: get(&|r| Some(r.pearson.mean)),
            noise_normalized_mean: get(&|r| r.noise_ceiling.map(|c| c.normalized.mean)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_by_hand() {
        // mean 2, squared deviations 1 + 0 + 1 = 2, sample variance 2/2 = 1.
        let s = Spread::of(vec![1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.mean, s.std, s.min, s.max), (2.0, 1.0, 1.0, 3.0));
        assert!(Spread::of(vec![1.0, f64::NAN]).is_none());
        assert!(Spread::of(vec![1.0]).is_none());
    }
}
