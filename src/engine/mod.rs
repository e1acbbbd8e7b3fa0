//! The fit engine (issue 10): one estimator (method × device × settings), one training loop and
//! one prediction path that every entry point (CLI, C ABI, Python, monitor, rank) goes through.

pub mod fast_cpu;
pub mod trainer;

pub use trainer::Trainer;
