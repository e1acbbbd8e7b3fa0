//! Hierarchy scores and prediction quality (DESIGN §4), their uncertainty (bootstrap intervals,
//! the hierarchy's permutation null, spread over seeds), and the serde `Report`.

#![warn(missing_docs)]

pub mod bootstrap;
pub mod hierarchy;
pub mod layer_margin;
pub mod over_seeds;
pub mod permutation;
pub mod report;
pub mod seed_interval;
pub mod seeds;
pub mod simex;
/// Per-voxel statistics live in the leaf module `crate::stats` (shared with the engine).
pub use crate::stats;
pub mod uncertainty;

pub use hierarchy::HierarchyScores;
pub use bootstrap::{BootstrapConfig, HeldOut, Interval, PairedDifference};
pub use permutation::{PermutationConfig, PermutationTest};
pub use report::{CeilingAccuracy, FitSettings, FitSummary, Report, RidgeSettings, RoiSummary, Settings, Summary, SCHEMA_VERSION};
pub use seeds::{SeedSpread, Spread};
pub use simex::{BiasCorrection, SimexNumber, SimexSummary};
pub use uncertainty::{IntervalKind, Uncertainty, UncertaintyConfig};
