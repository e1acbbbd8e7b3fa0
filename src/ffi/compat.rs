//! Earlier versions' entry points, so programs built against an older header keep working with
//! the same results: the frozen option structs and the `_on`, `_resampled` and `_rf` forms each
//! resolve their arguments as they always did and run the current form's body (`ft_fit_with`, ...).

use std::ffi::c_char;

use crate::engine::{Device, Estimator, Method};
use crate::ffi::brain::ft_brain;
use crate::ffi::config::{device_arg, fit_estimator, preparation_arg};
use crate::ffi::features::ft_features;
use crate::ffi::fit::{fit_load, fit_new, ft_fit};
use crate::ffi::monitor::{ft_monitor, monitor_from_encoder, monitor_new};
use crate::ffi::rank::{method_of, rank_grid, rank_networks, rank_pair, rank_plan};
use crate::ffi::synth::{ft_scenario, prf_arg, scenario_of, synth_plant, synth_write};
use crate::ffi::{ft_status, guard, out_arg, str_arg, FfiError, FfiResult};
use crate::model::{FitConfig, Preparation, Preset, Resample};
use crate::monitor::MonitorConfig;
use crate::synth::SynthConfig;

/// Settings of the synthetic data generator (fill with `ft_synth_options_default`).
///
/// Deprecated: use `ft_fit_config` and its `synth_*` setters.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_synth_options {
    /// An `ft_scenario` value.
    pub scenario: i32,
    pub n_images: usize,
    pub n_voxels: usize,
    pub n_layers: usize,
    /// Channels per layer.
    pub width: usize,
    /// Planting grid G (early layers 2G×2G, the rest G×G).
    pub grid: usize,
    /// Explainable fraction of a signal voxel's variance, in (0, 1].
    pub noise_ceiling: f64,
    /// Fraction of voxels carrying signal, in [0, 1].
    pub signal_fraction: f64,
    pub seed: u64,
}

/// Writes the generator's defaults into `*out`.
/// Deprecated: use `ft_fit_config_new`.
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_options_default(out: *mut ft_synth_options) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        let d = SynthConfig::default();
        *out = ft_synth_options {
            scenario: ft_scenario::FT_SCENARIO_HIERARCHICAL as i32,
            n_images: d.n_images,
            n_voxels: d.n_voxels,
            n_layers: d.n_layers,
            width: d.width,
            grid: d.grid,
            noise_ceiling: d.noise_ceiling,
            signal_fraction: d.signal_fraction,
            seed: d.seed,
        };
        Ok(())
    })
}

/// The generator's settings from C options (NULL: defaults).
///
/// # Safety
/// `options` is NULL or valid for reads.
pub(crate) unsafe fn synth_config(options: *const ft_synth_options) -> FfiResult<SynthConfig> {
    // SAFETY: forwarded contract.
    let Some(o) = (unsafe { options.as_ref() }) else {
        return Ok(SynthConfig::default());
    };
    let scenario = scenario_of(o.scenario)?;
    Ok(SynthConfig {
        scenario,
        n_images: o.n_images,
        n_voxels: o.n_voxels,
        n_layers: o.n_layers,
        width: o.width,
        grid: o.grid,
        noise_ceiling: o.noise_ceiling,
        seed: o.seed,
        signal_fraction: o.signal_fraction,
        // `ft_synth_options` is frozen: these entry points plant as they always did (point
        // sampling); `ft_synth_write_rf` and `ft_synth_plant_rf` take a receptive field.
        prf_size: Some(0.0),
    })
}

/// Generates planted-hierarchy data and writes `features.safetensors`, `brain.safetensors` and
/// `truth.safetensors` into `dir` (created if needed). `options` NULL: defaults.
/// Deprecated: use `ft_synth_write_with`.
/// # Safety
/// `dir` is a NUL-terminated string; `options` is NULL or valid for reads.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_write(dir: *const c_char, options: *const ft_synth_options) -> ft_status {
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { synth_write(dir, &synth_config(options)?) })
}

/// `ft_synth_write` with receptive fields of side `prf_size` (a fraction of the image in
/// [0, 1]; 0: point sampling; negative: one grid cell). Above 1 or NaN: `FT_ERR_INVALID_ARGUMENT`.
/// Deprecated: use `ft_synth_write_with` and `ft_fit_config_set_prf_size`.
/// # Safety
/// As `ft_synth_write`.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_write_rf(dir: *const c_char, options: *const ft_synth_options, prf_size: f64) -> ft_status {
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { synth_write(dir, &SynthConfig { prf_size: prf_arg(prf_size), ..synth_config(options)? }) })
}

/// `ft_synth_plant` with receptive fields (`prf_size` as in `ft_synth_write_rf`).
/// Deprecated: use `ft_synth_plant_with` and `ft_fit_config_set_prf_size`.
/// # Safety
/// As `ft_synth_plant`.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_plant_rf(
    features: *const ft_features, options: *const ft_synth_options, prf_size: f64, dir: *const c_char,
    out: *mut *mut ft_brain,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let cfg = SynthConfig { prf_size: prf_arg(prf_size), ..unsafe { synth_config(options) }? };
        // SAFETY: forwarded caller's contract.
        unsafe { synth_plant(features, cfg, dir, out) }
    })
}

/// Plants a brain on a network's own features (see `ft_synth_plant_with`); the options'
/// `n_images`, `n_layers` and `width` are ignored (the features fix them). `options` NULL:
/// defaults.
/// Deprecated: use `ft_synth_plant_with`.
/// # Safety
/// `features` is a live handle; `options` is NULL or valid for reads; `dir` is NULL or a
/// NUL-terminated string; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_plant(
    features: *const ft_features, options: *const ft_synth_options, dir: *const c_char, out: *mut *mut ft_brain,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let cfg = unsafe { synth_config(options) }?;
        // SAFETY: forwarded caller's contract.
        unsafe { synth_plant(features, cfg, dir, out) }
    })
}

/// Settings of a fit (DESIGN §3); fill with `ft_fit_options_default` and change what you need.
///
/// Deprecated: use `ft_fit_config` and its setters.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_fit_options {
    pub seed: u64,
    /// Fraction of images held out for validation, in (0, 1).
    pub val_fraction: f64,
    pub max_epochs: u32,
    pub batch_size: u32,
    pub lr: f64,
    pub weight_decay: f64,
    /// Bottleneck width D.
    pub d: u32,
    /// Local grid G.
    pub grid: u32,
    /// Epochs without improvement before stopping.
    pub patience: u32,
    /// Optimiser steps over which the warm-up regulariser fades.
    pub reg_steps: u32,
    /// Hard limit on optimiser steps (0: none).
    pub max_steps: u64,
    /// Hard limit on seconds (<= 0: none).
    pub max_seconds: f64,
    /// Non-zero: weight the hierarchy line by max(R², 0).
    pub weighted: i32,
}

/// The default schedule for a probe set of `n_images` images (what NULL options mean).
pub(crate) fn fit_options_for_images(n_images: usize) -> ft_fit_options {
    fit_options_of(&Preset::Auto.config(n_images))
}

fn fit_options_of(d: &FitConfig) -> ft_fit_options {
    ft_fit_options {
        seed: d.seed,
        val_fraction: d.val_fraction,
        max_epochs: d.max_epochs as u32,
        batch_size: d.batch_size as u32,
        lr: d.lr,
        weight_decay: d.weight_decay,
        d: d.d as u32,
        grid: d.grid as u32,
        patience: d.patience as u32,
        reg_steps: d.reg_steps as u32,
        max_steps: d.max_steps.unwrap_or(0) as u64,
        max_seconds: d.max_seconds.unwrap_or(0.0),
        weighted: 0,
    }
}

pub(crate) fn fit_config(o: &ft_fit_options) -> FfiResult<FitConfig> {
    let cfg = FitConfig {
        seed: o.seed,
        val_fraction: o.val_fraction,
        max_epochs: o.max_epochs as usize,
        batch_size: o.batch_size as usize,
        lr: o.lr,
        weight_decay: o.weight_decay,
        d: o.d as usize,
        grid: o.grid as usize,
        patience: o.patience as usize,
        reg_steps: o.reg_steps as usize,
        max_steps: (o.max_steps > 0).then_some(o.max_steps as usize),
        max_seconds: (o.max_seconds > 0.0).then_some(o.max_seconds),
        // `ft_fit_options` has no resampling field (it is frozen): the entry points that take
        // one set it; the older ones resample as they always did (DESIGN §3.1, bilinear).
        ..FitConfig::design()
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Writes DESIGN §3.5's fit settings (the `"design"` preset) into `*out`, as every release has.
/// Deprecated: use `ft_fit_config_new("design", 0)`.
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_options_default(out: *mut ft_fit_options) -> ft_status {
    guard(|| {
        *out_arg(out, "out")? = fit_options_of(&FitConfig::default());
        Ok(())
    })
}

/// Writes the default schedule for `n_images` probe images (what NULL options mean) into `*out`.
/// Deprecated: use `ft_fit_config_new("auto", n_images)`.
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_options_for_images(n_images: usize, out: *mut ft_fit_options) -> ft_status {
    guard(|| {
        *out_arg(out, "out")? = fit_options_for_images(n_images);
        Ok(())
    })
}

/// Writes the `"design"` or `"fast"` preset's fit settings into `*out`.
/// Deprecated: use `ft_fit_config_new`.
/// # Safety
/// `name` is a NUL-terminated string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_options_preset(name: *const c_char, out: *mut ft_fit_options) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let name = unsafe { str_arg(name, "name") }?;
        let out = out_arg(out, "out")?;
        *out = fit_options_of(&preset(name)?);
        Ok(())
    })
}

/// A preset by name (`model::Preset`: "auto", "design" or "fast").
fn named_preset(name: &str) -> FfiResult<Preset> {
    name.parse::<Preset>().map_err(|_| {
        FfiError::invalid(format!("unknown preset `{name}` (expected \"design\" or \"fast\")"))
    })
}

/// The settings of a named preset; "auto" depends on the probe-set size
/// (`ft_fit_options_for_images`).
fn preset(name: &str) -> FfiResult<FitConfig> {
    match named_preset(name)? {
        Preset::Auto => Err(FfiError::invalid(
            "the \"auto\" preset follows the probe-set size: use ft_fit_options_for_images",
        )),
        p => Ok(p.config(0)),
    }
}

/// Writes a named preset's grid resampling into `*out` (a static string, never freed).
/// Deprecated: use `ft_fit_config_new` (a config holds its preset's resampling).
/// # Safety
/// `name` is a NUL-terminated string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_options_preset_resample(name: *const c_char, out: *mut *const c_char) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let name = unsafe { str_arg(name, "name") }?;
        let out = out_arg(out, "out")?;
        // The resampling of a preset does not depend on the probe-set size.
        *out = match named_preset(name)?.config(0).resample {
            Resample::Bilinear => c"bilinear".as_ptr(),
            Resample::Area => c"area".as_ptr(),
            Resample::Auto => c"auto".as_ptr(),
        };
        Ok(())
    })
}

/// Writes a named preset's layer units into `*out` (a static string, never freed).
/// Deprecated: use `ft_fit_config_new` (a config holds its preset's layer units).
/// # Safety
/// `name` is a NUL-terminated string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_options_preset_layer_units(name: *const c_char, out: *mut *const c_char) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let name = unsafe { str_arg(name, "name") }?;
        let out = out_arg(out, "out")?;
        *out = if named_preset(name)?.config(0).normalise_layers { c"common".as_ptr() } else { c"raw".as_ptr() };
        Ok(())
    })
}

/// Settings of a monitor (DESIGN §5); fill with `ft_monitor_options_default`.
///
/// Deprecated: use `ft_fit_config` and its monitor setters.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_monitor_options {
    /// Settings of the reference fit and of refits. `fit.val_fraction` is ignored:
    /// `held_out_fraction` sets the held-out images.
    pub fit: ft_fit_options,
    /// Fraction of probe images held out of the reference fit; retention is measured on them.
    pub held_out_fraction: f64,
    /// Refit every this many observations (0: never).
    pub refit_every: u32,
    /// Optimiser steps of one refit.
    pub refit_max_steps: u32,
    /// Seconds of one refit (<= 0: no time limit).
    pub refit_max_seconds: f64,
    /// `should_stop` is set when forgetting exceeds this (INFINITY: never).
    pub forgetting_threshold: f64,
}

/// The default monitor settings for a probe set of `n_images` images (what NULL options mean):
/// the reference fit runs the default schedule for that size.
pub(crate) fn monitor_options_for_images(n_images: usize) -> ft_monitor_options {
    monitor_options_with(fit_options_for_images(n_images))
}

fn monitor_options_with(fit: ft_fit_options) -> ft_monitor_options {
    let d = MonitorConfig::default();
    ft_monitor_options {
        fit,
        held_out_fraction: d.held_out_fraction,
        refit_every: d.refit_every as u32,
        refit_max_steps: d.refit_max_steps as u32,
        refit_max_seconds: d.refit_max_seconds.unwrap_or(0.0),
        forgetting_threshold: d.forgetting_threshold,
    }
}

/// The monitor settings of `o` on `device`.
pub(crate) fn monitor_config(o: &ft_monitor_options, device: Device) -> FfiResult<MonitorConfig> {
    let fit = fit_config(&ft_fit_options { val_fraction: o.held_out_fraction, ..o.fit })?;
    let cfg = MonitorConfig {
        fit,
        held_out_fraction: o.held_out_fraction,
        refit_every: o.refit_every as usize,
        refit_max_steps: o.refit_max_steps as usize,
        refit_max_seconds: (o.refit_max_seconds > 0.0).then_some(o.refit_max_seconds),
        forgetting_threshold: o.forgetting_threshold,
        weighted: o.fit.weighted != 0,
        device,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Writes the default monitor settings, with `ft_fit_options_default`'s fit, into `*out`.
/// Deprecated: use `ft_fit_config_new("design", 0)`.
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_options_default(out: *mut ft_monitor_options) -> ft_status {
    guard(|| {
        *out_arg(out, "out")? = monitor_options_with(fit_options_of(&FitConfig::default()));
        Ok(())
    })
}

/// Writes the default monitor settings for `n_images` probe images into `*out`.
/// Deprecated: use `ft_fit_config_new("auto", n_images)`.
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_options_for_images(n_images: usize, out: *mut ft_monitor_options) -> ft_status {
    guard(|| {
        *out_arg(out, "out")? = monitor_options_for_images(n_images);
        Ok(())
    })
}

/// The estimator an older fitting entry point resolves: `options` (NULL: the default schedule
/// for the brain's `n_images`), `device` (NULL: the CPU; checked for use now) and `prep`.
///
/// # Safety
/// `options` is NULL or valid for reads; `device` is NULL or NUL-terminated.
unsafe fn old_estimator(
    options: *const ft_fit_options, device: *const c_char, method: Method, prep: Preparation, n_images: usize,
) -> FfiResult<Estimator> {
    // SAFETY: caller's contract.
    let device = unsafe { device_arg(device) }?;
    // SAFETY: NULL or valid for reads by the caller's contract.
    let o = unsafe { options.as_ref() }.copied().unwrap_or_else(|| fit_options_for_images(n_images));
    fit_estimator(method, device, &o, prep)
}

/// The monitor settings an older monitor entry point resolves. Safety: as `old_estimator`.
unsafe fn old_monitor(
    options: *const ft_monitor_options, device: *const c_char, prep: Preparation, n_images: usize,
) -> FfiResult<MonitorConfig> {
    // SAFETY: caller's contract.
    let device = unsafe { device_arg(device) }?;
    // SAFETY: NULL or valid for reads by the caller's contract.
    let o = unsafe { options.as_ref() }.copied().unwrap_or_else(|| monitor_options_for_images(n_images));
    let mut cfg = monitor_config(&o, device)?;
    cfg.fit = prep.apply(cfg.fit);
    Ok(cfg)
}

/// The estimator of the older grid entry points: the device is checked by name only (a grid
/// can be planned where its pairs will not run).
///
/// # Safety
/// As `old_estimator`; `resample` is NULL or NUL-terminated.
unsafe fn old_grid_estimator(
    options: *const ft_fit_options, method: i32, device: *const c_char, resample: *const c_char, n: usize,
) -> FfiResult<Estimator> {
    // SAFETY: caller's contract.
    let (prep, name) = unsafe { (preparation_arg(resample)?, (!device.is_null()).then(|| str_arg(device, "device"))) };
    let device = name.transpose()?.map(Device::parse_syntax).transpose()?.unwrap_or(Device::Cpu);
    // SAFETY: NULL or valid for reads by the caller's contract.
    let o = unsafe { options.as_ref() }.copied().unwrap_or_else(|| fit_options_for_images(n));
    fit_estimator(method_of(method)?, device, &o, prep)
}

/// A fit on the CPU with DESIGN §3's preparation. Deprecated: use `ft_fit_with`.
///
/// # Safety
/// Handles are live; `options` is NULL or valid for reads; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_new(
    features: *const ft_features, brain: *const ft_brain, options: *const ft_fit_options, out: *mut *mut ft_fit,
) -> ft_status {
    // SAFETY: the caller's contract is the `_on` variant's with a NULL device.
    unsafe { ft_fit_new_on(features, brain, options, std::ptr::null(), out) }
}

/// `ft_fit_new` on `device` (NULL: the CPU). Deprecated: use `ft_fit_with` and
/// `ft_fit_config_set_device`.
///
/// # Safety
/// As `ft_fit_new`; `device` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_new_on(
    features: *const ft_features, brain: *const ft_brain, options: *const ft_fit_options, device: *const c_char,
    out: *mut *mut ft_fit,
) -> ft_status {
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { fit_new(features, brain, |n| old_estimator(options, device, Method::Factortopy, Preparation::DESIGN, n), out) })
}

/// `ft_fit_new_on` with the features' preparation `resample`, `METHOD[,UNITS]` (NULL:
/// `"auto,common"`). Deprecated: use `ft_fit_with` and `ft_fit_config_set_resample` /
/// `ft_fit_config_set_layer_units`.
///
/// # Safety
/// As `ft_fit_new_on`; `resample` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_new_resampled(
    features: *const ft_features, brain: *const ft_brain, options: *const ft_fit_options, device: *const c_char,
    resample: *const c_char, out: *mut *mut ft_fit,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let prep = unsafe { preparation_arg(resample) }?;
        // SAFETY: forwarded caller's contract.
        unsafe { fit_new(features, brain, |n| old_estimator(options, device, Method::Factortopy, prep, n), out) }
    })
}

/// Scores a saved encoder on the CPU. Deprecated: use `ft_fit_load_with`.
///
/// # Safety
/// `encoder_path` is a NUL-terminated string; handles are live; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_load(
    encoder_path: *const c_char, features: *const ft_features, brain: *const ft_brain, weighted: i32,
    out: *mut *mut ft_fit,
) -> ft_status {
    // SAFETY: the caller's contract is the `_on` variant's with a NULL device.
    unsafe { ft_fit_load_on(encoder_path, features, brain, weighted, std::ptr::null(), out) }
}

/// `ft_fit_load` on `device`. Deprecated: use `ft_fit_load_with`.
///
/// # Safety
/// As `ft_fit_load`; `device` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_load_on(
    encoder_path: *const c_char, features: *const ft_features, brain: *const ft_brain, weighted: i32,
    device: *const c_char, out: *mut *mut ft_fit,
) -> ft_status {
    let estimator = || {
        // SAFETY: caller's contract.
        let device = unsafe { device_arg(device) }?;
        Ok(Estimator { weighted: weighted != 0, ..Estimator::new(Method::Factortopy, device, FitConfig::default()) })
    };
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { fit_load(encoder_path, features, brain, estimator, out) })
}

/// A monitor on the CPU. Deprecated: use `ft_monitor_with`.
///
/// # Safety
/// Handles are live; `options` is NULL or valid for reads; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_new(
    brain: *const ft_brain, reference: *const ft_features, options: *const ft_monitor_options,
    out: *mut *mut ft_monitor,
) -> ft_status {
    // SAFETY: the caller's contract is the `_on` variant's with a NULL device.
    unsafe { ft_monitor_new_on(brain, reference, options, std::ptr::null(), out) }
}

/// `ft_monitor_new` on `device`. Deprecated: use `ft_monitor_with`.
///
/// # Safety
/// As `ft_monitor_new`; `device` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_new_on(
    brain: *const ft_brain, reference: *const ft_features, options: *const ft_monitor_options,
    device: *const c_char, out: *mut *mut ft_monitor,
) -> ft_status {
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { monitor_new(brain, reference, |n| old_monitor(options, device, Preparation::DESIGN, n), out) })
}

/// `ft_monitor_new_on` with the reference fit's preparation (as `ft_fit_new_resampled`).
/// Deprecated: use `ft_monitor_with`.
///
/// # Safety
/// As `ft_monitor_new_on`; `resample` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_new_resampled(
    brain: *const ft_brain, reference: *const ft_features, options: *const ft_monitor_options,
    device: *const c_char, resample: *const c_char, out: *mut *mut ft_monitor,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let prep = unsafe { preparation_arg(resample) }?;
        // SAFETY: forwarded caller's contract.
        unsafe { monitor_new(brain, reference, |n| old_monitor(options, device, prep, n), out) }
    })
}

/// A monitor around a saved encoder, on the CPU. Deprecated: use `ft_monitor_from_encoder_with`.
///
/// # Safety
/// As `ft_monitor_new`; `encoder_path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_new_from_encoder(
    brain: *const ft_brain, reference: *const ft_features, encoder_path: *const c_char,
    options: *const ft_monitor_options, out: *mut *mut ft_monitor,
) -> ft_status {
    // SAFETY: the caller's contract is the `_on` variant's with a NULL device.
    unsafe { ft_monitor_new_from_encoder_on(brain, reference, encoder_path, options, std::ptr::null(), out) }
}

/// `ft_monitor_new_from_encoder` on `device`. Deprecated: use `ft_monitor_from_encoder_with`.
///
/// # Safety
/// As `ft_monitor_new_from_encoder`; `device` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_new_from_encoder_on(
    brain: *const ft_brain, reference: *const ft_features, encoder_path: *const c_char,
    options: *const ft_monitor_options, device: *const c_char, out: *mut *mut ft_monitor,
) -> ft_status {
    let config = |n| {
        // SAFETY: caller's contract.
        unsafe { old_monitor(options, device, Preparation::DESIGN, n) }
    };
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { monitor_from_encoder(brain, reference, encoder_path, config, out) })
}

/// A ranking on the CPU; `method` is an `ft_rank_method` value. Deprecated: use `ft_rank_with`.
///
/// # Safety
/// `networks` is valid for `n_networks` reads of live handles; `brain` is live; `options` is
/// NULL or valid for reads; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_rank(
    networks: *const *const ft_features, n_networks: usize, brain: *const ft_brain, options: *const ft_fit_options,
    method: i32, out: *mut *mut c_char,
) -> ft_status {
    // SAFETY: the caller's contract is the `_on` variant's with a NULL device.
    unsafe { ft_rank_on(networks, n_networks, brain, options, method, std::ptr::null(), out) }
}

/// `ft_rank` on `device`. Deprecated: use `ft_rank_with`.
///
/// # Safety
/// As `ft_rank`; `device` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_on(
    networks: *const *const ft_features, n_networks: usize, brain: *const ft_brain, options: *const ft_fit_options,
    method: i32, device: *const c_char, out: *mut *mut c_char,
) -> ft_status {
    // SAFETY: the caller's contract is `ft_rank_resampled`'s with DESIGN §3's preparation.
    unsafe { ft_rank_resampled(networks, n_networks, brain, options, method, device, c"bilinear,raw".as_ptr(), out) }
}

/// `ft_rank_on` with the features' preparation (as `ft_fit_new_resampled`). Deprecated: use
/// `ft_rank_with`.
///
/// # Safety
/// As `ft_rank_on`; `resample` is NULL or a NUL-terminated string.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ft_rank_resampled(
    networks: *const *const ft_features, n_networks: usize, brain: *const ft_brain, options: *const ft_fit_options,
    method: i32, device: *const c_char, resample: *const c_char, out: *mut *mut c_char,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let prep = unsafe { preparation_arg(resample) }?;
        let estimator = |n| {
            // SAFETY: caller's contract.
            unsafe { old_estimator(options, device, method_of(method)?, prep, n) }
        };
        // SAFETY: forwarded caller's contract.
        unsafe { rank_networks(networks, n_networks, brain, estimator, out) }
    })
}

/// Plans a grid; settings as `ft_rank_resampled`. Deprecated: use `ft_rank_plan_with`.
///
/// # Safety
/// `networks` and `brains` are valid for `n_networks` / `n_brains` reads of NUL-terminated
/// strings; `options` is NULL or valid for reads; `device`, `resample`, `out_dir` are NULL or
/// NUL-terminated; `out` is valid for writes.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ft_rank_plan(
    networks: *const *const c_char, n_networks: usize, brains: *const *const c_char, n_brains: usize,
    options: *const ft_fit_options, method: i32, device: *const c_char, resample: *const c_char, with_layers: i32,
    out_dir: *const c_char, out: *mut *mut c_char,
) -> ft_status {
    // SAFETY: caller's contract.
    let est = |n| unsafe { old_grid_estimator(options, method, device, resample, n) };
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { rank_plan(networks, n_networks, brains, n_brains, &est, with_layers != 0, out_dir, out) })
}

/// Fits one pair of a grid; settings as `ft_rank_plan`. Deprecated: use `ft_rank_pair_with`.
///
/// # Safety
/// `network_path`, `brain_path` are NUL-terminated; `options` NULL or valid for reads; `device`,
/// `resample` NULL or NUL-terminated; `out` valid for writes.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ft_rank_pair(
    network_path: *const c_char, brain_path: *const c_char, network: usize, subject: usize,
    options: *const ft_fit_options, method: i32, device: *const c_char, resample: *const c_char, with_layers: i32,
    out: *mut *mut c_char,
) -> ft_status {
    // SAFETY: caller's contract.
    let est = |n| unsafe { old_grid_estimator(options, method, device, resample, n) };
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { rank_pair(network_path, brain_path, network, subject, &est, with_layers != 0, out) })
}

/// Runs a whole grid; settings as `ft_rank_plan`. Deprecated: use `ft_rank_grid_with`.
///
/// # Safety
/// As `ft_rank_plan`; `device` must name a usable device.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ft_rank_grid(
    networks: *const *const c_char, n_networks: usize, brains: *const *const c_char, n_brains: usize,
    options: *const ft_fit_options, method: i32, device: *const c_char, resample: *const c_char, with_layers: i32,
    out_dir: *const c_char, out: *mut *mut c_char,
) -> ft_status {
    // SAFETY: caller's contract.
    let est = |n| unsafe { old_grid_estimator(options, method, device, resample, n) };
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { rank_grid(networks, n_networks, brains, n_brains, &est, with_layers != 0, out_dir, out) })
}
