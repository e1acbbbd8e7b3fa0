//! Synthetic data with a planted hierarchy (DESIGN §8): whole data sets, or brains planted on a
//! network's own features.

use std::ffi::c_char;
use std::path::Path;

use crate::ffi::brain::ft_brain;
use crate::ffi::config::{config_arg, ft_fit_config, Use};
use crate::ffi::features::ft_features;
use crate::ffi::{boxed, ft_status, guard, out_arg, shared, str_arg, FfiError, FfiResult};
use crate::synth::{Scenario, SynthConfig};

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

/// The generator's scenario for an `ft_scenario` value.
pub(crate) fn scenario_of(value: i32) -> FfiResult<Scenario> {
    Ok(match value {
        0 => Scenario::Hierarchical,
        1 => Scenario::Reversed,
        2 => Scenario::FlatEarly,
        3 => Scenario::FlatLate,
        4 => Scenario::Shuffled,
        s => return Err(FfiError::invalid(format!("unknown scenario {s} (expected 0..4)"))),
    })
}

/// Generates planted-hierarchy data with the settings of `cfg` (NULL: defaults; the images are
/// `ft_fit_config_new`'s `n_images`, the seed `ft_fit_config_set_seed`'s, the rest the
/// `synth_*`, `scenario`, `noise_ceiling`, `signal_fraction` and `prf_size` setters') and writes
/// `features.safetensors`, `brain.safetensors` and `truth.safetensors` into `dir` (created if
/// needed). A fit setting in `cfg` is `FT_ERR_INVALID_ARGUMENT` naming it.
///
/// # Safety
/// `cfg` is NULL or a live config; `dir` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_write_with(cfg: *const ft_fit_config, dir: *const c_char) -> ft_status {
    guard(|| {
        let s = config_arg(cfg, Use::Synth, "ft_synth_write_with")?;
        // SAFETY: forwarded caller's contract.
        unsafe { synth_write(dir, &s.synth_config()) }
    })
}

/// Plants a brain on a network's own features (the CLI's `synth --from-features`) with the
/// settings of `cfg` (as `ft_synth_write_with`; the features fix the images, layers and width,
/// so setting `synth_layers` or `synth_width` is refused): each ROI reads from the layer,
/// location and scale its scenario plants, with noise at the noise ceiling. The brain comes
/// back z-scored, as `ft_brain_load` would give it; `dir` non-NULL also writes
/// `brain.safetensors` and `truth.safetensors` there. `out` may be NULL when only the files are
/// wanted.
///
/// # Safety
/// `cfg` is NULL or a live config; `features` is a live handle; `dir` is NULL or a
/// NUL-terminated string; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_plant_with(
    cfg: *const ft_fit_config,
    features: *const ft_features,
    dir: *const c_char,
    out: *mut *mut ft_brain,
) -> ft_status {
    guard(|| {
        let s = config_arg(cfg, Use::Plant, "ft_synth_plant_with")?;
        // SAFETY: forwarded caller's contract.
        unsafe { synth_plant(features, s.synth_config(), dir, out) }
    })
}

/// The body of every entry point that writes a synthetic data set.
///
/// # Safety
/// `dir` is NULL or a NUL-terminated string.
pub(crate) unsafe fn synth_write(dir: *const c_char, cfg: &SynthConfig) -> FfiResult<()> {
    // SAFETY: caller's contract.
    let dir = unsafe { str_arg(dir, "dir") }?;
    let data = crate::synth::generate(cfg)?;
    crate::synth::write(Path::new(dir), &data)?;
    Ok(())
}

/// The receptive-field argument of the `_rf` entry points: a fraction of the image in [0, 1]
/// (0: point sampling), or any negative value for one grid cell (`1/grid`, the CLI's default).
pub(crate) fn prf_arg(prf_size: f64) -> Option<f64> {
    (prf_size.is_nan() || prf_size >= 0.0).then_some(prf_size)
}

/// The body of every entry point that plants a brain on given features.
///
/// # Safety
/// As `ft_synth_plant_with`.
pub(crate) unsafe fn synth_plant(
    features: *const ft_features,
    mut cfg: SynthConfig,
    dir: *const c_char,
    out: *mut *mut ft_brain,
) -> FfiResult<()> {
    let f = &shared(features, "features")?.to_features()?;
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
