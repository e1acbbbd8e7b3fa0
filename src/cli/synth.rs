//! `factortopy synth`: write planted-hierarchy synthetic data (DESIGN §8).

use std::path::PathBuf;

use clap::Args;

use crate::data::Features;
use crate::error::{Error, Result};
use crate::synth::{self, Scenario, SynthConfig};

fn parse_scenario(s: &str) -> std::result::Result<Scenario, String> {
    s.parse::<Scenario>().map_err(|e| match e {
        Error::InvalidArgument { msg, .. } => msg,
        other => other.to_string(),
    })
}

/// Generate synthetic features and a brain with a known (planted) layer hierarchy, plus the
/// truth to check a fit against.
///
/// Writes DIR/features.safetensors, DIR/brain.safetensors and DIR/truth.safetensors. With
/// --from-features the brain is planted on the given network's features instead of the built-in
/// random network; the features file is not copied (fit against the original), and --images,
/// --layers and --width are rejected because the file fixes them.
#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output directory (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Planted pattern: hierarchical, reversed, flat-early, flat-late or shuffled.
    #[arg(long, value_name = "NAME", default_value = "hierarchical", value_parser = parse_scenario)]
    pub scenario: Scenario,
    /// Number of probe images [default: 1500].
    #[arg(long, value_name = "N")]
    pub images: Option<usize>,
    /// Number of voxels.
    #[arg(long, value_name = "V", default_value_t = SynthConfig::default().n_voxels)]
    pub voxels: usize,
    /// Number of network layers [default: 6].
    #[arg(long, value_name = "L")]
    pub layers: Option<usize>,
    /// Channels per layer [default: 64].
    #[arg(long, value_name = "C")]
    pub width: Option<usize>,
    /// Planting grid G (early layers of the built-in network are 2G×2G, the rest G×G; the default
    /// receptive field is one grid cell).
    #[arg(long, value_name = "G", default_value_t = SynthConfig::default().grid)]
    pub grid: usize,
    /// Fraction of a signal voxel's variance that is explainable, in (0, 1].
    #[arg(long, value_name = "X", default_value_t = SynthConfig::default().noise_ceiling)]
    pub noise_ceiling: f64,
    /// Random seed; the same seed and settings give byte-identical files.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Fraction of voxels that carry planted signal, in [0, 1]; the rest are pure noise.
    #[arg(long, value_name = "F", default_value_t = SynthConfig::default().signal_fraction)]
    pub signal_fraction: f64,
    /// Side of each signal voxel's receptive field, as a fraction of the image: the voxel reads
    /// its layer's map averaged over a square window of that side at the layer's own resolution.
    /// Default: one grid cell (1/G). 0: point sampling of the maps resampled bilinearly to G×G
    /// (earlier versions' data, byte for byte).
    #[arg(long, value_name = "F")]
    pub prf_size: Option<f64>,
    /// Plant on this features file (your own network) instead of the built-in random network.
    #[arg(long, value_name = "FILE")]
    pub from_features: Option<PathBuf>,
}

pub fn run(a: SynthArgs) -> Result<i32> {
    let defaults = SynthConfig::default();
    let mut cfg = SynthConfig {
        scenario: a.scenario,
        n_images: a.images.unwrap_or(defaults.n_images),
        n_voxels: a.voxels,
        n_layers: a.layers.unwrap_or(defaults.n_layers),
        width: a.width.unwrap_or(defaults.width),
        grid: a.grid,
        noise_ceiling: a.noise_ceiling,
        seed: a.seed,
        signal_fraction: a.signal_fraction,
        prf_size: a.prf_size,
    };
    // Sizes first (nothing is created for settings that cannot work), then the destination, so
    // an unwritable output directory fails before the work, not after it.
    if a.from_features.is_none() {
        cfg.validate()?;
    } else {
        cfg.validate_planting()?;
    }
    let out_dir = crate::data::OutputDir::prepare(&a.out)?;
    match &a.from_features {
        None => {
            let data = synth::generate(&cfg)?;
            synth::write(&a.out, &data)?;
            println!(
                "wrote {} scenario ({} images, {} voxels, {} layers of width {}, seed {}) to {}",
                cfg.scenario,
                cfg.n_images,
                cfg.n_voxels,
                cfg.n_layers,
                cfg.width,
                cfg.seed,
                a.out.display()
            );
        }
        Some(path) => {
            // Silently ignoring a shape flag would leave the user believing it took effect.
            let fixed: Vec<&str> = [
                ("--images", a.images.is_some()),
                ("--layers", a.layers.is_some()),
                ("--width", a.width.is_some()),
            ]
            .iter()
            .filter(|(_, given)| *given)
            .map(|(flag, _)| *flag)
            .collect();
            if !fixed.is_empty() {
                return Err(Error::invalid(format!(
                    "{} cannot be combined with --from-features: the features file fixes them",
                    fixed.join(", ")
                )));
            }
            let features = Features::load(path)?;
            cfg.n_layers = features.layers.len();
            cfg.n_images = features.layers.first().map_or(0, |l| l.local.shape[0]);
            let (brain, truth) = synth::plant(&features, &cfg)?;
            synth::write_planted(&a.out, &brain, &truth)?;
            println!(
                "wrote {} scenario planted on {} ({} images, {} voxels, {} layers, seed {}) to {}",
                cfg.scenario,
                path.display(),
                cfg.n_images,
                cfg.n_voxels,
                cfg.n_layers,
                cfg.seed,
                a.out.display()
            );
        }
    }
    out_dir.keep();
    Ok(0)
}
