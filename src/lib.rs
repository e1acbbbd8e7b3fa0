//! factortopy: how brain-like is a vision network's hierarchy, and how much of it does
//! fine-tuning destroy? See README.md and DESIGN §1.

pub mod baseline;
pub mod cluster;
pub mod cli;
pub mod data;
pub mod engine;
pub mod error;
pub mod ffi;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod model;
pub mod monitor;
pub mod pipeline;
pub mod plot;
pub mod rank;
pub mod rng;
pub mod scores;
pub mod stats;
pub mod synth;

pub use error::{Error, Result};
