//! factortopy: how brain-like is a vision network's hierarchy, and how much of it does
//! fine-tuning destroy?
//!
//! The crate fits the FactorTopy brain encoding model ("Brain Decodes Deep Nets", Yang, Gee &
//! Shi, CVPR 2024) to a network's per-layer features and fMRI responses to the same probe
//! images. Every voxel learns which layer, image location, scale (patch or global token) and
//! channels predict it; from those choices come hierarchy scores ([`Report`]), pictures
//! ([`plot`]) and a forgetting monitor for fine-tuning loops ([`Monitor`]).
//!
//! Citations of the form "DESIGN §3.4" in this crate's documentation and comments refer to the
//! numbered sections of `docs/design.md` in the repository, the method as this library
//! implements it. The command-line tool, the C ABI ([`ffi`], `include/factortopy.h`) and the
//! Python package are built on the same API.
//!
//! # The API in brief
//!
//! - Inputs: [`Features`] (one network's per-layer features for N probe images; or a
//!   [`FeatureFile`] read a block of images at a time) and [`Brain`] (responses `[N, V]`,
//!   voxel positions and ROIs). [`synth`] plants a known hierarchy to try things on.
//! - Fitting: an [`Estimator`] is method ([`Method`]) × device ([`Device`]) × settings
//!   ([`FitConfig`], starting from a [`Preset`]); [`Estimator::fit`], [`Estimator::score`] and
//!   [`Estimator::predict`] do the work, and [`write_fit_outputs`] writes what `factortopy fit`
//!   writes.
//! - Results: [`Report`] (serde; the `report.json` of every fit), the fitted [`Encoder`].
//! - Fine-tuning: [`Monitor`] with [`MonitorConfig`]; [`Monitor::observe`] returns a
//!   [`StepReport`].
//! - Ranking networks: [`rank::rank`] with [`RankConfig`].
//! - Errors: one [`Error`] type with a one-line message; [`Result`].
//!
//! # Example
//!
//! Plant a hierarchy on synthetic data, fit, and read the scores:
//!
//! ```
//! use factortopy::{synth, Device, Estimator, FitConfig, Method, Preset, SynthConfig};
//!
//! # fn main() -> factortopy::Result<()> {
//! let data = synth::generate(&SynthConfig {
//!     n_images: 200,
//!     n_voxels: 60,
//!     n_layers: 3,
//!     width: 8,
//!     grid: 4,
//!     noise_ceiling: 0.9,
//!     ..SynthConfig::default()
//! })?;
//!
//! // The default preset's settings for this many images, made smaller for a quick example.
//! let config = FitConfig { d: 16, grid: 4, max_epochs: 8, ..Preset::Auto.config(200) };
//! let estimator = Estimator::new(Method::Factortopy, Device::Cpu, config);
//! let fit = estimator.fit(&data.features, &data.brain, None)?.into_encoder_fit()?;
//!
//! let report = &fit.report;
//! println!("{}", report.headline());
//! assert_eq!(report.n_voxels, 60);
//! assert!(report.r2.mean.is_finite());
//!
//! // Predicted responses [N, V] for (here, the same) images' features.
//! let predicted = estimator.predict(&fit.outcome.encoder, &fit.coords, &data.features)?;
//! assert_eq!(predicted.shape, vec![200, 60]);
//! # Ok(())
//! # }
//! ```
//!
//! The same from files: [`Features::load`] and [`Brain::load`] read the safetensors files
//! described in `docs/formats.md`.

pub mod baseline;
pub mod cluster;
// The command line and the C ABI are interfaces of their own (docs/cli.md, docs/c-abi.md and
// include/factortopy.h); they are public for the `factortopy` binary and the tests, not as Rust API.
#[doc(hidden)]
pub mod cli;
pub mod data;
pub mod engine;
pub mod error;
#[doc(hidden)]
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

pub use data::{Brain, FeatureFile, FeatureSource, Features, Precision};
pub use engine::{Device, EncoderFit, Estimator, FitEvent, Fitted, Method};
pub use error::{Error, Result};
pub use model::{Encoder, FitConfig, Preset, Resample};
pub use monitor::{Monitor, MonitorConfig, StepReport};
pub use pipeline::write_fit_outputs;
pub use rank::subjects::GridRanking;
pub use rank::{RankConfig, RankRow, Ranking};
pub use scores::Report;
pub use synth::{Scenario, SynthConfig};
