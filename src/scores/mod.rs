//! Hierarchy scores and prediction quality (DESIGN §4), and the serde `Report`.

pub mod hierarchy;
pub mod report;
pub mod stats;

pub use hierarchy::HierarchyScores;
pub use report::{FitSummary, Report, RoiSummary, Summary};
