//! `factortopy predict`: predicted brain responses `[N, V]` for the features of new images, from a
//! fitted encoder ("predict the brain's response to any image").

use crate::cli::train_args::DeviceArgs;
use crate::data::safetensors_io::{write_tensors, OutTensor};
use crate::data::{Brain, FeatureSource};
use crate::engine::estimator::prediction_coords;
use crate::engine::{Estimator, Method};
use crate::error::Result;
use crate::model::encoder_file::load_encoder;
use crate::model::FitConfig;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Predict the responses of the encoder's voxels to new images.
///
/// Writes a safetensors file with `predictions` `[N, V]` (f32, in the z-scored units the encoder
/// was fitted in) and metadata `model`, `stimulus_ids` (when the features have them) and
/// `encoder`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A saved encoder (`encoder.safetensors` from `factortopy fit`).
    #[arg(long)]
    pub encoder: PathBuf,
    /// Features of the images to predict (same network and layers as the fit).
    #[arg(long)]
    pub features: PathBuf,
    /// Output file (safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// The brain the encoder was fitted to; needed only when the encoder file carries no voxel
    /// coordinates (encoders converted from other implementations).
    #[arg(long)]
    pub brain: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(a: PredictArgs) -> Result<i32> {
    let est = Estimator::new(Method::Factortopy, a.device.device, FitConfig { store: a.device.store, ..FitConfig::default() });
    est.validate()?;
    let (enc, record) = load_encoder(&a.encoder)?;
    let brain = a.brain.as_deref().map(Brain::load).transpose()?;
    let features = crate::data::FeatureFile::open(&a.features)?;
    let coords = prediction_coords(&enc, &record, brain.as_ref())?;
    let pred = est.predict(&enc, coords, &features)?;
    let mut meta = BTreeMap::new();
    meta.insert("model".to_string(), features.model().to_string());
    meta.insert("encoder".to_string(), a.encoder.display().to_string());
    if let Some(ids) = features.stimulus_ids() {
        meta.insert("stimulus_ids".to_string(), serde_json::to_string(ids).expect("strings serialise"));
    }
    write_tensors(&a.out, &[("predictions".to_string(), OutTensor::from_array(&pred))], &meta)?;
    eprintln!(
        "predicted {} voxels on {} images ({}) on {}",
        pred.shape[1],
        pred.shape[0],
        features.model(),
        est.device
    );
    println!("predictions: {}", a.out.display());
    crate::cli::report_peak_memory(&[&a.features]);
    Ok(0)
}
