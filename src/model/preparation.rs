//! How a fit prepares features before it learns: the grid resampling (§3.1 or the area rule)
//! and the layers' units (as they come, or common units). The C ABI's frozen option struct has
//! no field for either, so its `_resampled` entry points take both as one string,
//! `METHOD[,UNITS]`; this is where that string is read and written.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{FitConfig, Resample};

/// One layer's common units: its resampled values become `(x − mean[c])·scale`, channel `c` by
/// channel, the local maps and the global tokens each with their own means and scale.
/// Centring matters as much as scaling: post-ReLU features carry a mean of the order of their
/// spread, the same in every image and cell, and a fit fed that constant learns slowly or not
/// at all (measured on a small CNN at its default initialisation: held-out R² 0.03 scaled only,
/// 0.42 centred and scaled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerUnits {
    /// Each channel's mean over the probe set's images and grid cells, subtracted first.
    pub local_mean: Vec<f32>,
    /// Multiplier that brings the centred local maps to a root mean square of 1.
    pub local_scale: f32,
    /// Each channel's mean over the probe set's global tokens.
    pub global_mean: Vec<f32>,
    /// Multiplier that brings the centred global tokens to a root mean square of 1.
    pub global_scale: f32,
}

impl LayerUnits {
    /// The units that change nothing, for a layer of `c` channels.
    pub fn identity(c: usize) -> Self {
        Self { local_mean: vec![0.0; c], local_scale: 1.0, global_mean: vec![0.0; c], global_scale: 1.0 }
    }

    /// Whether these units change nothing (every mean 0, both scales 1).
    pub fn is_identity(&self) -> bool {
        self.local_scale == 1.0
            && self.global_scale == 1.0
            && self.local_mean.iter().chain(&self.global_mean).all(|&m| m == 0.0)
    }

    /// Checks these units against a layer of `c` channels: `c` means each, all finite, scales
    /// positive. `what` names the layer for the message.
    pub fn check(&self, c: usize, what: &str) -> Result<()> {
        if self.local_mean.len() != c || self.global_mean.len() != c {
            return Err(Error::mismatch(format!(
                "{what}: the units have {} and {} channel means, the layer has {c} channels",
                self.local_mean.len(),
                self.global_mean.len()
            )));
        }
        self.check_values(what)
    }

    /// Checks the numbers alone: means finite, scales positive and finite.
    pub fn check_values(&self, what: &str) -> Result<()> {
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        let scale_ok = |k: f32| k.is_finite() && k > 0.0;
        if !finite(&self.local_mean) || !finite(&self.global_mean) || !scale_ok(self.local_scale) || !scale_ok(self.global_scale) {
            return Err(Error::invalid(format!("{what}: the units' means must be finite and their scales positive and finite")));
        }
        Ok(())
    }
}

/// The features' preparation a fit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preparation {
    /// How each layer's map is resized to the grid.
    pub resample: Resample,
    /// Put every layer in common units (see [`crate::model::PreparedFeatures::normalise`]).
    pub normalise_layers: bool,
}

/// The names of the layers' units: common (the default) and raw (DESIGN §3).
pub const UNITS: [&str; 2] = ["common", "raw"];

impl Preparation {
    /// DESIGN §3: bilinear resampling, features as they come.
    pub const DESIGN: Preparation = Preparation { resample: Resample::Bilinear, normalise_layers: false };

    /// The preparation `cfg` asks for.
    pub fn of(cfg: &FitConfig) -> Self {
        Self { resample: cfg.resample, normalise_layers: cfg.normalise_layers }
    }

    /// `cfg` with this preparation.
    pub fn apply(self, cfg: FitConfig) -> FitConfig {
        FitConfig { resample: self.resample, normalise_layers: self.normalise_layers, ..cfg }
    }

    /// The name of the layers' units.
    pub fn units(self) -> &'static str {
        if self.normalise_layers {
            UNITS[0]
        } else {
            UNITS[1]
        }
    }

    /// `METHOD,UNITS`, as [`Preparation::parse`] reads it.
    pub fn name(self) -> String {
        format!("{},{}", self.resample.name(), self.units())
    }

    /// Parses `METHOD` or `METHOD,UNITS` (`bilinear`, `area` or `auto`; `common` or `raw`). A
    /// method alone is in common units, the default.
    pub fn parse(s: &str) -> Result<Self> {
        let (method, units) = match s.split_once(',') {
            Some((m, u)) => (m.trim(), u.trim()),
            None => (s.trim(), UNITS[0]),
        };
        let normalise_layers = match units {
            "common" => true,
            "raw" => false,
            other => return Err(Error::invalid(format!("unknown layer units `{other}` in `{s}` (expected common or raw)"))),
        };
        Ok(Self { resample: Resample::parse(method)?, normalise_layers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_a_method_alone_is_in_common_units() {
        for r in Resample::ALL {
            for n in [true, false] {
                let p = Preparation { resample: r, normalise_layers: n };
                assert_eq!(Preparation::parse(&p.name()).unwrap(), p);
            }
            assert!(Preparation::parse(r.name()).unwrap().normalise_layers);
        }
        assert_eq!(Preparation::parse("bilinear, raw").unwrap(), Preparation::DESIGN);
        assert_eq!(Preparation::of(&FitConfig::design()), Preparation::DESIGN);
        for bad in ["cubic", "auto,metres", "auto,", ",raw"] {
            assert!(Preparation::parse(bad).is_err(), "{bad}");
        }
    }
}
