//! Synthetic data with a planted hierarchy (DESIGN §8): whole data sets, or brains planted on a
//! network's own features.

use std::ffi::c_char;
use std::path::Path;

use crate::ffi::brain::ft_brain;
use crate::ffi::compat::{ft_synth_options, synth_config};
use crate::ffi::features::ft_features;
use crate::ffi::{boxed, out_arg, shared, str_arg, FfiError, FfiResult};

// ---------------------------------------------------------------------------------------------
// Synthetic data

/// Planted patterns of the synthetic generator (DESIGN §8).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ft_scenario {
    FT_SCENARIO_HIERARCHICAL = 0,
    FT_SCENARIO_REVERSED = 1,
    FT_SCENARIO_FLAT_EARLY = 2,
    FT_SCENARIO_FLAT_LATE = 3,
    FT_SCENARIO_SHUFFLED = 4,
}

/// The receptive-field argument of the `_rf` entry points: a fraction of the image in [0, 1]
/// (0: point sampling), or any negative value for one grid cell (`1/grid`, the CLI's default).
pub(crate) fn prf_arg(prf_size: f64) -> Option<f64> {
    (prf_size.is_nan() || prf_size >= 0.0).then_some(prf_size)
}

/// The body of `ft_synth_plant` (`prf_size` None: its point sampling) and `ft_synth_plant_rf`.
///
/// # Safety
/// As `ft_synth_plant`.
pub(crate) unsafe fn synth_plant(
    features: *const ft_features,
    options: *const ft_synth_options,
    prf_size: Option<Option<f64>>,
    dir: *const c_char,
    out: *mut *mut ft_brain,
) -> FfiResult<()> {
    let f = &shared(features, "features")?.to_features()?;
    // SAFETY: caller's contract.
    let mut cfg = unsafe { synth_config(options) }?;
    if let Some(prf_size) = prf_size {
        cfg.prf_size = prf_size;
    }
    // SAFETY: NULL or a NUL-terminated string by the caller's contract.
    let dir = match dir.is_null() {
        true => None,
        false => Some(unsafe { str_arg(dir, "dir") }?),
    };
    if dir.is_none() && out.is_null() {
        return Err(FfiError::null("dir and out (at least one is needed)"));
    }
    f.validate("features")?;
    cfg.n_layers = f.n_layers();
    cfg.n_images = f.n_images();
    let (brain, truth) = crate::synth::plant(f, &cfg)?;
    if let Some(dir) = dir {
        crate::synth::write_planted(Path::new(dir), &brain, &truth)?;
    }
    if !out.is_null() {
        let mut brain = brain;
        brain.zscore("planted brain")?;
        *out_arg(out, "out")? = boxed(ft_brain { inner: brain });
    }
    Ok(())
}
