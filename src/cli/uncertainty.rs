//! Flags of the uncertainty estimates, shared by `fit`, `score` and `rank`.

use clap::Args;

use crate::scores::{BootstrapConfig, PermutationConfig, UncertaintyConfig};

#[derive(Args, Debug, Clone)]
pub struct UncertaintyArgs {
    /// Bootstrap resamples behind every interval (held-out images and voxels within ROIs,
    /// resampled without refitting); 0 = no intervals.
    #[arg(long, value_name = "B", default_value_t = 1000)]
    pub bootstrap: usize,
    /// Confidence level of the intervals.
    #[arg(long, value_name = "LEVEL", default_value_t = 0.95)]
    pub confidence: f64,
    /// Random permutations of ROI levels for the hierarchy's p-values (all orderings are
    /// enumerated when there are fewer); 0 = no permutation test.
    #[arg(long, value_name = "P", default_value_t = 10_000)]
    pub permutations: usize,
    /// Seed of the bootstrap and permutation draws (independent of the fit's --seed).
    #[arg(long, value_name = "SEED", default_value_t = 0)]
    pub uncertainty_seed: u64,
}

impl UncertaintyArgs {
    pub fn config(&self) -> UncertaintyConfig {
        UncertaintyConfig {
            bootstrap: BootstrapConfig { n_resamples: self.bootstrap, level: self.confidence, seed: self.uncertainty_seed },
            permutation: PermutationConfig { n_permutations: self.permutations, seed: self.uncertainty_seed },
            bias_correction: Default::default(),
        }
    }
}
