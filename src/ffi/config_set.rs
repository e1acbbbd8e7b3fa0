//! One setter per setting of `ft_fit_config`. Each validates through the library's own check
//! of that setting (`FitConfig::validate`, `Device::parse_syntax`, the `FromStr` of `Method`,
//! `Resample`, `Precision`, ...); a refused value leaves the config unchanged and the message
//! names the setter. A new setting is one more function here.

use std::ffi::c_char;

use crate::data::Precision;
use crate::engine::{Device, Method};
use crate::ffi::config::{ft_fit_config, set};
use crate::ffi::synth::{prf_arg, scenario_of};
use crate::ffi::{ft_status, str_arg};
use crate::model::{Preparation, Resample};

/// Seed of the split, the initialisation, the batches' order and the synthetic generator.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_seed(cfg: *mut ft_fit_config, value: u64) -> ft_status {
    set(cfg, "seed", |s| {
        s.estimator.fit.seed = value;
        Ok(())
    })
}

/// Fraction of images held out for validation, in (0, 1).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_val_fraction(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "val_fraction", |s| {
        s.estimator.fit.val_fraction = value;
        Ok(())
    })
}

/// Maximum number of epochs.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_max_epochs(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "max_epochs", |s| {
        s.estimator.fit.max_epochs = value;
        Ok(())
    })
}

/// Images per optimiser step.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_batch_size(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "batch_size", |s| {
        s.estimator.fit.batch_size = value;
        Ok(())
    })
}

/// AdamW learning rate (positive).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_lr(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "lr", |s| {
        s.estimator.fit.lr = value;
        Ok(())
    })
}

/// AdamW weight decay (non-negative).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_weight_decay(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "weight_decay", |s| {
        s.estimator.fit.weight_decay = value;
        Ok(())
    })
}

/// Bottleneck width D.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_d(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "d", |s| {
        s.estimator.fit.d = value;
        Ok(())
    })
}

/// Local grid G of the encoder.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_grid(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "grid", |s| {
        s.estimator.fit.grid = value;
        Ok(())
    })
}

/// Epochs without improvement before stopping.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_patience(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "patience", |s| {
        s.estimator.fit.patience = value;
        Ok(())
    })
}

/// Optimiser steps over which the warm-up regulariser fades.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_reg_steps(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "reg_steps", |s| {
        s.estimator.fit.reg_steps = value;
        Ok(())
    })
}

/// Hard limit on optimiser steps (0: none).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_max_steps(cfg: *mut ft_fit_config, value: u64) -> ft_status {
    set(cfg, "max_steps", |s| {
        s.estimator.fit.max_steps = if value == 0 { None } else { Some(usize::try_from(value).unwrap_or(usize::MAX)) };
        Ok(())
    })
}

/// Hard limit on seconds (0: none; makes a fit depend on the machine's speed).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_max_seconds(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "max_seconds", |s| {
        s.estimator.fit.max_seconds = (value != 0.0).then_some(value);
        Ok(())
    })
}

/// Global gradient-norm clip (positive).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_clip_norm(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "clip_norm", |s| {
        s.estimator.fit.clip_norm = value;
        Ok(())
    })
}

/// Smooth-L1 threshold β (positive).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_beta(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "beta", |s| {
        s.estimator.fit.beta = value;
        Ok(())
    })
}

/// Weight λ of the warm-up regulariser (non-negative).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_reg_lambda(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "reg_lambda", |s| {
        s.estimator.fit.reg_lambda = value;
        Ok(())
    })
}

/// Smallest improvement of mean validation R² that counts.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_min_delta(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "min_delta", |s| {
        s.estimator.fit.min_delta = value;
        Ok(())
    })
}

/// How each layer's map is resized to the grid: `"bilinear"` (DESIGN §3.1), `"area"` (each cell the exact average of the pixels it covers) or `"auto"` (area where a map shrinks, bilinear where it grows). Saved with the encoder.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile; `value` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_resample(cfg: *mut ft_fit_config, value: *const c_char) -> ft_status {
    set(cfg, "resample", |s| {
        // SAFETY: caller's contract.
        let value = unsafe { str_arg(value, "value") }?;
        s.estimator.fit.resample = Resample::parse(value)?;
        Ok(())
    })
}

/// The layers' units: `"common"` (every layer scaled to a root mean square of 1 over the probe set, so a layer's units cannot decide the fit) or `"raw"` (as they come, DESIGN §3). Saved with the encoder.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile; `value` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_layer_units(cfg: *mut ft_fit_config, value: *const c_char) -> ft_status {
    set(cfg, "layer_units", |s| {
        // SAFETY: caller's contract.
        let value = unsafe { str_arg(value, "value") }?;
        s.estimator.fit.normalise_layers = Preparation::parse(&format!("auto,{value}"))?.normalise_layers;
        Ok(())
    })
}

/// The precision the resampled features are kept in while fitting: `"f32"`, `"f16"` or `"bf16"`; NULL: the precision they arrive in.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile; `value` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_store(cfg: *mut ft_fit_config, value: *const c_char) -> ft_status {
    set(cfg, "store", |s| {
        // SAFETY: caller's contract.
        let value = if value.is_null() { None } else { Some(unsafe { str_arg(value, "value") }?) };
        s.estimator.fit.store = value.map(str::parse::<Precision>).transpose()?;
        Ok(())
    })
}

/// The method: `"factortopy"` (the encoder, DESIGN §3) or `"ridge"` (the layer-wise ridge baseline; rankings only, on the CPU).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile; `value` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_method(cfg: *mut ft_fit_config, value: *const c_char) -> ft_status {
    set(cfg, "method", |s| {
        // SAFETY: caller's contract.
        let value = unsafe { str_arg(value, "value") }?;
        s.estimator.method = value.parse::<Method>()?;
        Ok(())
    })
}

/// Where computations run: `"cpu"`, `"cuda"` or `"cuda:N"`. The name is checked here; whether the device can be used is checked by each entry point before any work (`FT_ERR_BACKEND`; `ft_device_check` asks in advance).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile; `value` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_device(cfg: *mut ft_fit_config, value: *const c_char) -> ft_status {
    set(cfg, "device", |s| {
        // SAFETY: caller's contract.
        let value = unsafe { str_arg(value, "value") }?;
        s.estimator.device = Device::parse_syntax(value)?;
        Ok(())
    })
}

/// Weight the hierarchy line by max(R², 0).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_weighted(cfg: *mut ft_fit_config, value: bool) -> ft_status {
    set(cfg, "weighted", |s| {
        s.estimator.weighted = value;
        Ok(())
    })
}

/// Bootstrap resamples behind every interval of a report or ranking (0: none).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_bootstrap(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "bootstrap", |s| {
        s.estimator.uncertainty.bootstrap.n_resamples = value;
        Ok(())
    })
}

/// Confidence level of the bootstrap intervals, in (0, 1).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_bootstrap_level(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "bootstrap_level", |s| {
        s.estimator.uncertainty.bootstrap.level = value;
        Ok(())
    })
}

/// Random permutations of the hierarchy's permutation test (0: no test).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_permutations(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "permutations", |s| {
        s.estimator.uncertainty.permutation.n_permutations = value;
        Ok(())
    })
}

/// Monitors: fraction of probe images held out of the reference fit; retention is measured on them.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_held_out_fraction(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "held_out_fraction", |s| {
        s.monitor.held_out_fraction = value;
        Ok(())
    })
}

/// Monitors: refit every this many observations (0: never).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_refit_every(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "refit_every", |s| {
        s.monitor.refit_every = value;
        Ok(())
    })
}

/// Monitors: optimiser steps of one refit.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_refit_max_steps(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "refit_max_steps", |s| {
        s.monitor.refit_max_steps = value;
        Ok(())
    })
}

/// Monitors: seconds of one refit (0: no time limit).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_refit_max_seconds(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "refit_max_seconds", |s| {
        s.monitor.refit_max_seconds = (value != 0.0).then_some(value);
        Ok(())
    })
}

/// Monitors: `should_stop` is set when forgetting exceeds this (INFINITY: never).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_forgetting_threshold(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "forgetting_threshold", |s| {
        s.monitor.forgetting_threshold = value;
        Ok(())
    })
}

/// Synthetic data: the planted pattern, an `ft_scenario` value.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_scenario(cfg: *mut ft_fit_config, value: i32) -> ft_status {
    set(cfg, "scenario", |s| {
        s.synth.scenario = scenario_of(value)?;
        Ok(())
    })
}

/// Synthetic data: number of voxels.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_synth_voxels(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "synth_voxels", |s| {
        s.synth.n_voxels = value;
        Ok(())
    })
}

/// Synthetic data: number of network layers.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_synth_layers(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "synth_layers", |s| {
        s.synth.n_layers = value;
        Ok(())
    })
}

/// Synthetic data: channels per layer.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_synth_width(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "synth_width", |s| {
        s.synth.width = value;
        Ok(())
    })
}

/// Synthetic data: planting grid G (early layers 2G×2G, the rest G×G).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_synth_grid(cfg: *mut ft_fit_config, value: usize) -> ft_status {
    set(cfg, "synth_grid", |s| {
        s.synth.grid = value;
        Ok(())
    })
}

/// Synthetic data: explainable fraction of a signal voxel's variance, in (0, 1].
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_noise_ceiling(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "noise_ceiling", |s| {
        s.synth.noise_ceiling = value;
        Ok(())
    })
}

/// Synthetic data: fraction of voxels carrying signal, in [0, 1].
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_signal_fraction(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "signal_fraction", |s| {
        s.synth.signal_fraction = value;
        Ok(())
    })
}

/// Synthetic data: side of a signal voxel's receptive field as a fraction of the image, in [0, 1] (0: point sampling); any negative value: one grid cell (the default).
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_prf_size(cfg: *mut ft_fit_config, value: f64) -> ft_status {
    set(cfg, "prf_size", |s| {
        s.synth.prf_size = prf_arg(value);
        Ok(())
    })
}

/// Grids: also score every layer with the ridge baseline.
///
/// # Safety
/// `cfg` is a live handle not used by another call meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_set_score_layers(cfg: *mut ft_fit_config, value: bool) -> ft_status {
    set(cfg, "score_layers", |s| {
        s.score_layers = value;
        Ok(())
    })
}
