//! The fit engine: one estimator (method × device × settings), one training loop and one
//! prediction path that every entry point (CLI, C ABI, Python, monitor, rank) goes through.
//!
//! - [`device`]: device names (`cpu`, `cuda:N`) and whether one can be used now.
//! - [`estimator`]: [`Estimator`] (`fit`, `train`, `score`, `predictor`) and [`Method`].
//! - [`trainer`]: the [`Trainer`] interface and [`train_loop`], the one training loop.
//! - [`epochs`]: the loop's epoch bookkeeping (best epoch, patience, budgets, progress).
//! - [`fast_cpu`]: the CPU trainer and predictor with an explicit forward and backward (the
//!   default on the CPU).
//! - [`candle_cpu`]: the CPU trainer written as the plain formula on candle (the oracle).
//! - [`predict`]: [`Predictor`], fixed-encoder predictions on any device.
//! - [`prepare`]: where a feature set is prepared (the host, or the CUDA device holding it).
//!
//! The CUDA trainer is `crate::cuda::trainer` (feature `cuda`).

#![warn(missing_docs)]

pub mod candle_cpu;
pub mod device;
pub mod epochs;
pub mod estimator;
pub mod fast_cpu;
pub mod memory;
pub mod outcome;
pub mod predict;
pub mod prepare;
pub mod trainer;

pub use device::Device;
pub use estimator::{check_encoder_inputs, CpuTrainer, EncoderFit, Estimator, FitEvent, Fitted, Method, OnEvent, OnSeedDone, Scored};
pub use outcome::FitOutcome;
pub use predict::Predictor;
pub use trainer::{train_loop, Trainer};
