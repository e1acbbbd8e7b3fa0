//! Synthetic data with a planted hierarchy (DESIGN §8).
//!
//! A fixed random multi-layer network ([`network`]) provides features; voxels on a 2-D cortical
//! sheet ([`cortex`]) are grouped into ROIs, and each ROI reads from a layer chosen by the
//! [`Scenario`], at a retinotopic image location and a level-dependent scale ([`plant()`]). By
//! default a voxel pools its layer's map over a receptive field of one grid cell at the layer's
//! own resolution (as a voxel in cortex does); with `prf_size` 0 it point-samples the G×G
//! resampled map with exactly the model's rules ([`sample`]), which the model of DESIGN §3 can
//! represent exactly. Either way a good fit must recover the truth written alongside the data.
//!
//! ```no_run
//! use factortopy::synth::{generate, write, Scenario, SynthConfig};
//! let cfg = SynthConfig { scenario: Scenario::Reversed, n_images: 500, ..SynthConfig::default() };
//! let data = generate(&cfg)?;
//! write(std::path::Path::new("out"), &data)?;
//! # Ok::<(), factortopy::Error>(())
//! ```

#![warn(missing_docs)]

pub mod cortex;
pub mod network;
pub mod plant;
pub mod sample;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::data::{Brain, Features};
use crate::error::{Error, Result};

pub use cortex::{ROI_LEVELS, ROI_NAMES};
pub use plant::{plant, plant_detailed, planted_layers, planted_scale, Planted, Truth};

/// Which layer each ROI reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scenario {
    /// ROI level k reads from layer `round(k·(L−1)/4)`: a brain-like hierarchy.
    #[default]
    Hierarchical,
    /// The hierarchy upside down: level k reads from `L−1−round(k·(L−1)/4)`.
    Reversed,
    /// Every ROI reads from a random layer in the first third of the network.
    FlatEarly,
    /// Every ROI reads from a random layer in the last third of the network.
    FlatLate,
    /// Every ROI reads from a uniformly random layer.
    Shuffled,
}

impl Scenario {
    /// Every scenario, in the order the CLI lists them.
    pub const ALL: [Scenario; 5] = [
        Scenario::Hierarchical,
        Scenario::Reversed,
        Scenario::FlatEarly,
        Scenario::FlatLate,
        Scenario::Shuffled,
    ];

    /// The kebab-case name used on the command line and in file metadata.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Hierarchical => "hierarchical",
            Scenario::Reversed => "reversed",
            Scenario::FlatEarly => "flat-early",
            Scenario::FlatLate => "flat-late",
            Scenario::Shuffled => "shuffled",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Scenario::ALL
            .iter()
            .copied()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let valid: Vec<&str> = Scenario::ALL.iter().map(|sc| sc.name()).collect();
                Error::invalid(format!(
                    "unknown scenario `{s}`; valid scenarios: {}",
                    valid.join(", ")
                ))
            })
    }
}

/// Settings of the generator. `n_layers`, `width` and `n_images` only shape the built-in
/// network; when planting on given features they come from those features instead.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Which layer each ROI reads from.
    pub scenario: Scenario,
    /// Number of probe images N.
    pub n_images: usize,
    /// Number of voxels V (at least one per ROI).
    pub n_voxels: usize,
    /// Number of network layers L.
    pub n_layers: usize,
    /// Channels per layer C.
    pub width: usize,
    /// Planting grid G: late layers of the built-in network are G×G, early ones 2G×2G. It sets
    /// the default receptive field (one grid cell) and, with `prf_size` 0, the G×G maps voxels
    /// point-sample.
    pub grid: usize,
    /// Fraction of a signal voxel's variance that the planted signal explains (R² units).
    pub noise_ceiling: f64,
    /// Seed of everything random: the same seed and settings give byte-identical data.
    pub seed: u64,
    /// Fraction of voxels that carry planted signal; the rest are pure noise.
    pub signal_fraction: f64,
    /// Side of a signal voxel's receptive field, as a fraction of the image side: the voxel
    /// reads its layer's map averaged over a square box window of that side centred on its
    /// planted location, at the layer's own resolution. `None`: one grid cell (`1/grid`).
    /// `Some(0.0)`: no receptive field, the voxel point-samples the map resampled bilinearly to
    /// G×G (the generator before receptive fields, byte for byte).
    pub prf_size: Option<f64>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            scenario: Scenario::Hierarchical,
            n_images: 1500,
            n_voxels: 2000,
            n_layers: 6,
            width: 64,
            grid: 8,
            noise_ceiling: 0.6,
            seed: 0,
            signal_fraction: 0.85,
            prf_size: None,
        }
    }
}

impl SynthConfig {
    /// The receptive-field side in use (see `prf_size`).
    pub fn prf(&self) -> f64 {
        self.prf_size.unwrap_or(1.0 / self.grid.max(1) as f64)
    }

    /// Checks the settings that planting uses (everything but the network's shape).
    pub fn validate_planting(&self) -> Result<()> {
        use crate::data::limits;
        limits::positive_at_most("grid", self.grid, limits::MAX_GRID)?;
        // Every voxel gets coordinates, a layer, a cell and weights: V is bounded like an array.
        limits::elements("voxels", &[self.n_voxels, 3])?;
        // The noise of a signal voxel has standard deviation √((1 − nc)/nc): a tiny (or
        // subnormal) ceiling would make it, and the f32 responses, infinite.
        if !(self.noise_ceiling >= limits::MIN_NOISE_CEILING && self.noise_ceiling <= 1.0) {
            return Err(Error::invalid(format!(
                "noise ceiling must be in [{:?}, 1], got {:?}",
                limits::MIN_NOISE_CEILING,
                self.noise_ceiling
            )));
        }
        if !(0.0..=1.0).contains(&self.signal_fraction) {
            return Err(Error::invalid(format!(
                "signal fraction must be in [0, 1], got {}",
                self.signal_fraction
            )));
        }
        if let Some(f) = self.prf_size {
            if !(0.0..=1.0).contains(&f) {
                return Err(Error::invalid(format!(
                    "receptive-field size must be a fraction of the image in [0, 1], got {f}"
                )));
            }
        }
        if self.n_voxels < ROI_NAMES.len() {
            return Err(Error::invalid(format!(
                "need at least {} voxels (one per ROI), got {}",
                ROI_NAMES.len(),
                self.n_voxels
            )));
        }
        Ok(())
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        use crate::data::limits;
        limits::positive_at_most("layers", self.n_layers, limits::MAX_LAYERS)?;
        if self.width < 1 {
            return Err(Error::invalid("width must be at least 1 channel"));
        }
        if self.n_images < 2 {
            return Err(Error::invalid(format!(
                "need at least 2 images, got {}",
                self.n_images
            )));
        }
        self.validate_planting()?;
        // The largest arrays generated: the early layers' 2G×2G maps and the responses. Checked
        // (with the limits) before the network allocates anything.
        let side = 2 * self.grid;
        limits::elements("synthetic features [layers, images, width, 2G, 2G]", &[
            self.n_layers,
            self.n_images,
            self.width,
            side,
            side,
        ])?;
        limits::elements("synthetic responses [images, voxels]", &[self.n_images, self.n_voxels])?;
        Ok(())
    }
}

/// A generated data set: the network's features, the brain planted on them, and the truth.
#[derive(Debug, Clone)]
pub struct Synthetic {
    /// The built-in network's features of the probe images.
    pub features: Features,
    /// The brain planted on them (responses z-scored per voxel).
    pub brain: Brain,
    /// Every voxel's planted layer, location and scale.
    pub truth: Truth,
}

/// The features file's name inside an output directory.
pub const FEATURES_FILE: &str = "features.safetensors";
/// The brain file's name inside an output directory.
pub const BRAIN_FILE: &str = "brain.safetensors";
/// The truth file's name inside an output directory.
pub const TRUTH_FILE: &str = "truth.safetensors";

/// Generates features from the built-in random network and plants a brain on them.
pub fn generate(cfg: &SynthConfig) -> Result<Synthetic> {
    cfg.validate()?;
    let mut features =
        network::random_network(cfg.n_images, cfg.n_layers, cfg.width, cfg.grid, cfg.seed)?;
    features.model = format!("synthetic-{}", cfg.scenario);
    let (brain, truth) = plant(&features, cfg)?;
    Ok(Synthetic {
        features,
        brain,
        truth,
    })
}

/// Writes `features.safetensors`, `brain.safetensors` and `truth.safetensors` into `dir`
/// (created if needed), each atomically.
pub fn write(dir: &Path, data: &Synthetic) -> Result<()> {
    crate::data::write_into(dir, |stage| {
        data.features.save(&stage.join(FEATURES_FILE))?;
        data.brain.save(&stage.join(BRAIN_FILE))?;
        data.truth.save(&stage.join(TRUTH_FILE))
    })
}

/// Writes only the brain and the truth, for data planted on a network the user already has
/// features of (`--from-features`).
pub fn write_planted(dir: &Path, brain: &Brain, truth: &Truth) -> Result<()> {
    crate::data::write_into(dir, |stage| {
        brain.save(&stage.join(BRAIN_FILE))?;
        truth.save(&stage.join(TRUTH_FILE))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip() {
        for sc in Scenario::ALL {
            assert_eq!(sc.to_string().parse::<Scenario>().unwrap(), sc);
        }
        let err = "diagonal".parse::<Scenario>().unwrap_err().to_string();
        assert!(
            err.contains("diagonal") && err.contains("flat-early") && err.contains("shuffled"),
            "{err}"
        );
    }

    #[test]
    fn validation_rejects_bad_settings() {
        let ok = SynthConfig::default();
        assert!(ok.validate().is_ok());
        for bad in [
            SynthConfig {
                n_layers: 0,
                ..ok.clone()
            },
            SynthConfig {
                grid: 0,
                ..ok.clone()
            },
            SynthConfig {
                width: 0,
                ..ok.clone()
            },
            SynthConfig {
                n_images: 1,
                ..ok.clone()
            },
            SynthConfig {
                n_voxels: 6,
                ..ok.clone()
            },
            SynthConfig {
                noise_ceiling: 0.0,
                ..ok.clone()
            },
            SynthConfig {
                noise_ceiling: 1.5,
                ..ok.clone()
            },
            SynthConfig {
                noise_ceiling: f64::NAN,
                ..ok.clone()
            },
            SynthConfig {
                signal_fraction: -0.1,
                ..ok.clone()
            },
            SynthConfig {
                prf_size: Some(-0.1),
                ..ok.clone()
            },
            SynthConfig {
                prf_size: Some(f64::NAN),
                ..ok.clone()
            },
            SynthConfig {
                prf_size: Some(1.5),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
