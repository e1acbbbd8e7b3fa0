//! The FactorTopy encoding model of DESIGN §3.

#![warn(missing_docs)]

pub mod encoder;
pub mod encoder_file;
pub mod fit;
pub mod fixtures;
pub mod loss;
pub mod posenc;
pub mod preparation;
pub mod prepared;
pub mod readout;
pub mod resample;
pub mod schedule;
pub mod selections;

pub use encoder::{Encoder, EncoderSpec, Readout};
pub use resample::Resample;
pub use fit::{BrainTensors, FieldNames, FitConfig, FitStart, FitSummary, Progress, Split};
pub use preparation::Preparation;
pub use prepared::PreparedFeatures;
pub use schedule::Preset;
pub use selections::Selections;
