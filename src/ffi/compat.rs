//! The entry points of earlier versions, kept for programs built against an older header.

use std::ffi::c_char;
use std::path::{Path, PathBuf};

use crate::data::BrainHeader;
use crate::engine::{Device, Estimator, Method};
use crate::ffi::brain::ft_brain;
use crate::ffi::config::{device_arg, fit_estimator, preparation_arg};
use crate::ffi::features::ft_features;
use crate::ffi::fit::ft_fit;
use crate::ffi::monitor::ft_monitor;
use crate::ffi::rank::{method_of, opt_path, path_list};
use crate::ffi::synth::{ft_scenario, prf_arg, synth_plant};
use crate::ffi::{boxed, c_string, ft_status, guard, handle, out_arg, shared, str_arg, FfiError, FfiResult};
use crate::model::encoder_file::load_encoder;
use crate::model::{FitConfig, Preparation, Preset, Resample};
use crate::monitor::{Monitor, MonitorConfig};
use crate::rank::grid::{Grid, Serial};
use crate::rank::pair::PairStore;
use crate::rank::subjects::combine;
use crate::rank::{rank_with_progress, RankConfig};
use crate::synth::{Scenario, SynthConfig};

/// Settings of the synthetic data generator (fill with `ft_synth_options_default`).
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
///
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

/// Generates planted-hierarchy data and writes `features.safetensors`, `brain.safetensors` and
/// `truth.safetensors` into `dir` (created if needed). `options` NULL: defaults.
///
/// # Safety
/// `dir` is a NUL-terminated string; `options` is NULL or valid for reads.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_write(dir: *const c_char, options: *const ft_synth_options) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let dir = unsafe { str_arg(dir, "dir") }?;
        // SAFETY: caller's contract.
        let cfg = unsafe { synth_config(options) }?;
        let data = crate::synth::generate(&cfg)?;
        crate::synth::write(Path::new(dir), &data)?;
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
    let scenario = match o.scenario {
        0 => Scenario::Hierarchical,
        1 => Scenario::Reversed,
        2 => Scenario::FlatEarly,
        3 => Scenario::FlatLate,
        4 => Scenario::Shuffled,
        s => return Err(FfiError::invalid(format!("unknown scenario {s} (expected 0..4)"))),
    };
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

/// `ft_synth_write` with receptive fields: every signal voxel reads its layer's map averaged
/// over a square window of side `prf_size` (a fraction of the image, in [0, 1]) at the layer's
/// own resolution; 0 is `ft_synth_write`'s point sampling, a negative value one grid cell (the
/// CLI's default). A value above 1 (or NaN) is `FT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// As `ft_synth_write`.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_write_rf(dir: *const c_char, options: *const ft_synth_options, prf_size: f64) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let dir = unsafe { str_arg(dir, "dir") }?;
        // SAFETY: caller's contract.
        let cfg = SynthConfig { prf_size: prf_arg(prf_size), ..unsafe { synth_config(options) }? };
        let data = crate::synth::generate(&cfg)?;
        crate::synth::write(Path::new(dir), &data)?;
        Ok(())
    })
}

/// `ft_synth_plant` with receptive fields (`prf_size` as in `ft_synth_write_rf`).
///
/// # Safety
/// As `ft_synth_plant`.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_plant_rf(
    features: *const ft_features,
    options: *const ft_synth_options,
    prf_size: f64,
    dir: *const c_char,
    out: *mut *mut ft_brain,
) -> ft_status {
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { synth_plant(features, options, Some(prf_arg(prf_size)), dir, out) })
}

/// Plants a brain on a network's own features (the CLI's `synth --from-features`): each ROI reads
/// from the layer, location and scale its scenario plants, with noise at the noise ceiling. The
/// brain comes back z-scored, as `ft_brain_load` would give it; `dir` non-NULL also writes
/// `brain.safetensors` and `truth.safetensors` there. The options' `n_images`, `n_layers` and
/// `width` are ignored (the features fix them). `options` NULL: defaults. `out` may be NULL when
/// only the files are wanted.
///
/// # Safety
/// `features` is a live handle; `options` is NULL or valid for reads; `dir` is NULL or a
/// NUL-terminated string; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_plant(
    features: *const ft_features,
    options: *const ft_synth_options,
    dir: *const c_char,
    out: *mut *mut ft_brain,
) -> ft_status {
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { synth_plant(features, options, None, dir, out) })
}

// ---------------------------------------------------------------------------------------------
// Fitting and scoring

/// Settings of a fit (DESIGN §3); fill with `ft_fit_options_default` and change what you need.
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

pub(crate) fn fit_options_default() -> ft_fit_options {
    fit_options_of(&FitConfig::default())
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

/// Writes DESIGN §3.5's fit settings into `*out` (lr 1e-3, batch 8, warm-up over 2000 steps,
/// patience 5, at most 40 epochs; the `"design"` preset), as every release has: a program that
/// fills its options with this keeps its results. The default schedule, which follows the
/// probe-set size and is what NULL options mean in `ft_fit_new`, `ft_rank` and `ft_monitor_new`,
/// is `ft_fit_options_for_images`.
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_options_default(out: *mut ft_fit_options) -> ft_status {
    guard(|| {
        *out_arg(out, "out")? = fit_options_default();
        Ok(())
    })
}

/// Writes the default fit settings for a probe set of `n_images` images into `*out` (the CLI's
/// `--preset auto`; what NULL options mean): lr 1e-2, batch 32, the warm-up over 150 optimiser
/// steps, patience about 60 steps (at least 2 epochs) and at most about 1200 steps (3 to 40
/// epochs). Pass the `n_images` of `ft_brain_shape`.
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_options_for_images(n_images: usize, out: *mut ft_fit_options) -> ft_status {
    guard(|| {
        *out_arg(out, "out")? = fit_options_for_images(n_images);
        Ok(())
    })
}

/// Writes a named preset of fit settings into `*out`: `"design"` (DESIGN §3.5: lr 1e-3, batch
/// 8; the same as `ft_fit_options_default`) or `"fast"` (lr 1e-2, batch 32, regulariser over 300
/// steps, patience 3: the CLI's `--preset fast`). The `"auto"` preset depends on the probe-set
/// size: `ft_fit_options_for_images`.
///
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

/// Writes the grid resampling of a named preset into `*out` (a static string, never freed):
/// `"bilinear"` for `"design"` (DESIGN §3.1), `"auto"` for `"fast"` and `"auto"`.
/// `ft_fit_options` has no field for it (the struct is frozen); pass it to
/// `ft_fit_new_resampled` and the other `_resampled` entry points.
///
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

/// Writes the layers' units of a named preset into `*out` (a static string, never freed):
/// `"raw"` for `"design"` (DESIGN §3), `"common"` for `"fast"` and `"auto"`. Append it to the
/// resampling, after a comma, in `ft_fit_new_resampled` and the other `_resampled` entry points.
///
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

// ---------------------------------------------------------------------------------------------
// Monitor

/// Settings of a monitor (DESIGN §5); fill with `ft_monitor_options_default`.
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

pub(crate) fn monitor_options_default() -> ft_monitor_options {
    monitor_options_with(fit_options_default())
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

/// Writes the default monitor settings into `*out`, with `ft_fit_options_default`'s fit settings
/// (DESIGN §3.5). NULL options in `ft_monitor_new` mean `ft_monitor_options_for_images` instead.
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_options_default(out: *mut ft_monitor_options) -> ft_status {
    guard(|| {
        *out_arg(out, "out")? = monitor_options_default();
        Ok(())
    })
}

/// Writes the default monitor settings for a probe set of `n_images` images into `*out`: the
/// reference fit and refits run `ft_fit_options_for_images`'s schedule (what NULL options mean).
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_options_for_images(n_images: usize, out: *mut ft_monitor_options) -> ft_status {
    guard(|| {
        *out_arg(out, "out")? = monitor_options_for_images(n_images);
        Ok(())
    })
}

/// The settings every fitting entry point resolves once its handles are checked: the device
/// (NULL: the CPU; checked for use now) and the options (NULL: the default schedule for the
/// brain's number of images, `for_images`). The one home of that preamble for `fit_new`, `rank`,
/// `monitor_new` and `ft_monitor_new_from_encoder_on`.
///
/// # Safety
/// `device` is NULL or a NUL-terminated string; `options` is NULL or valid for reads.
unsafe fn device_and_options<O: Copy>(
    brain: &ft_brain,
    options: *const O,
    device: *const c_char,
    for_images: fn(usize) -> O,
) -> FfiResult<(Device, O)> {
    // SAFETY: caller's contract.
    let device = unsafe { device_arg(device) }?;
    // SAFETY: NULL or valid for reads by the caller's contract.
    let o = unsafe { options.as_ref() }.copied().unwrap_or_else(|| for_images(brain.inner.n_images()));
    Ok((device, o))
}

/// `ft_fit_new` on a device: `device` is `"cpu"`, `"cuda"` or `"cuda:N"` (NULL: `"cpu"`). A
/// device that cannot be used now (a build without CUDA, no driver, NVRTC or cuBLAS, a bad
/// ordinal) is `FT_ERR_BACKEND` with the reason in `ft_last_error()`, before any work.
///
/// # Safety
/// Handles are live; `options` is NULL or valid for reads; `device` is NULL or a NUL-terminated
/// string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_new_on(
    features: *const ft_features,
    brain: *const ft_brain,
    options: *const ft_fit_options,
    device: *const c_char,
    out: *mut *mut ft_fit,
) -> ft_status {
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { fit_new(features, brain, options, device, Preparation::DESIGN, out) })
}

/// `ft_fit_load` on a device (see `ft_fit_new_on`).
///
/// # Safety
/// As `ft_fit_load`; `device` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_load_on(
    encoder_path: *const c_char,
    features: *const ft_features,
    brain: *const ft_brain,
    weighted: i32,
    device: *const c_char,
    out: *mut *mut ft_fit,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(encoder_path, "encoder_path") }?;
        let f = shared(features, "features")?;
        let b = handle(brain, "brain")?;
        let out = out_arg(out, "out")?;
        // SAFETY: caller's contract.
        let device = unsafe { device_arg(device) }?;
        let est = Estimator { weighted: weighted != 0, ..Estimator::new(Method::Factortopy, device, FitConfig::default()) };
        f.source().check_images("features", None)?;
        let (encoder, record) = load_encoder(Path::new(path))?;
        let report = est.score(&encoder, &record, f.source(), &b.inner)?.report;
        *out = boxed(ft_fit { report, encoder, record });
        Ok(())
    })
}

/// `ft_monitor_new` on a device: the reference fit, retention and refits run there.
///
/// # Safety
/// As `ft_monitor_new`; `device` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_new_on(
    brain: *const ft_brain,
    reference: *const ft_features,
    options: *const ft_monitor_options,
    device: *const c_char,
    out: *mut *mut ft_monitor,
) -> ft_status {
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { monitor_new(brain, reference, options, device, Preparation::DESIGN, out) })
}

/// `ft_monitor_new_from_encoder` on a device.
///
/// # Safety
/// As `ft_monitor_new_from_encoder`; `device` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_new_from_encoder_on(
    brain: *const ft_brain,
    reference: *const ft_features,
    encoder_path: *const c_char,
    options: *const ft_monitor_options,
    device: *const c_char,
    out: *mut *mut ft_monitor,
) -> ft_status {
    guard(|| {
        let b = handle(brain, "brain")?;
        let f = shared(reference, "reference")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(encoder_path, "encoder_path") }?;
        let out = out_arg(out, "out")?;
        // SAFETY: caller's contract.
        let (device, o) = unsafe { device_and_options(b, options, device, monitor_options_for_images) }?;
        let cfg = monitor_config(&o, device)?;
        let m = Monitor::from_encoder_file(&b.inner, f.source(), Path::new(path), cfg)?;
        *out = boxed(ft_monitor::new(m));
        Ok(())
    })
}

/// `ft_rank` on a device (the ridge method runs on the CPU only).
///
/// # Safety
/// As `ft_rank`; `device` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_on(
    networks: *const *const ft_features,
    n_networks: usize,
    brain: *const ft_brain,
    options: *const ft_fit_options,
    method: i32,
    device: *const c_char,
    out: *mut *mut c_char,
) -> ft_status {
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { rank(networks, n_networks, brain, options, method, device, Preparation::DESIGN, out) })
}

// The device-less entry points of earlier versions: the `_on` variants on the CPU.

/// Fits an encoder of `features` to `brain` and scores it. `options` NULL: the default schedule
/// for the brain's number of images (`ft_fit_options_for_images`). Long: runs
/// the whole fit on the calling thread (using the library's worker threads).
///
/// Runs on the CPU: the `_on` variant with `device` NULL.
///
/// # Safety
/// Handles are live; `options` is NULL or valid for reads; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_new(
    features: *const ft_features,
    brain: *const ft_brain,
    options: *const ft_fit_options,
    out: *mut *mut ft_fit,
) -> ft_status {
    // SAFETY: the caller's contract is the `_on` variant's with a NULL device.
    unsafe { ft_fit_new_on(features, brain, options, std::ptr::null(), out) }
}

/// Scores a saved encoder (`factortopy fit`'s encoder.safetensors) on `features` and `brain`,
/// on the held-out images it was validated on.
///
/// Runs on the CPU: the `_on` variant with `device` NULL.
///
/// # Safety
/// `encoder_path` is a NUL-terminated string; handles are live; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_load(
    encoder_path: *const c_char,
    features: *const ft_features,
    brain: *const ft_brain,
    weighted: i32,
    out: *mut *mut ft_fit,
) -> ft_status {
    // SAFETY: the caller's contract is the `_on` variant's with a NULL device.
    unsafe { ft_fit_load_on(encoder_path, features, brain, weighted, std::ptr::null(), out) }
}

/// Creates a monitor: fits the reference encoder on `reference` (the network before
/// fine-tuning) and caches the reference statistics. `options` NULL: the defaults for the
/// brain's number of images (`ft_monitor_options_for_images`). The brain and
/// features are copied; the handles can be freed afterwards.
///
/// Runs on the CPU: the `_on` variant with `device` NULL.
///
/// # Safety
/// Handles are live; `options` is NULL or valid for reads; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_new(
    brain: *const ft_brain,
    reference: *const ft_features,
    options: *const ft_monitor_options,
    out: *mut *mut ft_monitor,
) -> ft_status {
    // SAFETY: the caller's contract is the `_on` variant's with a NULL device.
    unsafe { ft_monitor_new_on(brain, reference, options, std::ptr::null(), out) }
}

/// Creates a monitor around a saved reference encoder instead of fitting one. Retention is
/// measured on the images the encoder was validated on.
///
/// Runs on the CPU: the `_on` variant with `device` NULL.
///
/// # Safety
/// As `ft_monitor_new`; `encoder_path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_new_from_encoder(
    brain: *const ft_brain,
    reference: *const ft_features,
    encoder_path: *const c_char,
    options: *const ft_monitor_options,
    out: *mut *mut ft_monitor,
) -> ft_status {
    // SAFETY: the caller's contract is the `_on` variant's with a NULL device.
    unsafe { ft_monitor_new_from_encoder_on(brain, reference, encoder_path, options, std::ptr::null(), out) }
}

/// Fits every network in `networks[0 .. n_networks)` against `brain` with the same split and
/// seed and ranks them by hierarchy slope (ties: Spearman ρ, then input order). `*out` is the
/// ranking as JSON: `method`, `level`, `n_resamples`, `subject`, `roi_names` and `rows` (best
/// first; each with `rank`, `index` into `networks`, `name`, `slope`, `b0`, `b1`, `spearman`,
/// `r2_mean`, `r2_median`, `fit_seconds`, `roi_depth`, `slope_interval` (95 % bootstrap
/// interval, 1000 resamples), `p_slope` (permutation p-value) and `vs_next` (paired bootstrap
/// test of the slope difference with the next row)); `slope`, `b0`, `b1` and `spearman` are
/// `null` when undefined, and such rows rank last. Free it with `ft_string_free`. `options`
/// NULL: the default schedule for the brain's number of images (`ft_fit_options_for_images`);
/// `weighted` is honoured; `method` is an `ft_rank_method` value.
///
/// Runs on the CPU: the `_on` variant with `device` NULL.
///
/// # Safety
/// `networks` is valid for `n_networks` reads of live handles; `brain` is live; `options` is
/// NULL or valid for reads; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_rank(
    networks: *const *const ft_features,
    n_networks: usize,
    brain: *const ft_brain,
    options: *const ft_fit_options,
    method: i32,
    out: *mut *mut c_char,
) -> ft_status {
    // SAFETY: the caller's contract is the `_on` variant's with a NULL device.
    unsafe { ft_rank_on(networks, n_networks, brain, options, method, std::ptr::null(), out) }
}

/// `ft_fit_new_on` with the features' preparation chosen: `resample` is `"bilinear"`, `"area"`
/// or `"auto"` (NULL: `"auto"`, area averaging where a layer's map is larger than the grid and
/// bilinear where it is smaller), optionally followed by the layers' units, `",common"` (every
/// layer scaled to a root mean square of 1 over the probe set, so a layer's units cannot decide
/// the fit; the default) or `",raw"` (as they come, DESIGN §3): `"bilinear,raw"` is DESIGN §3.
/// The choice is saved with the encoder (`ft_fit_save_encoder`) and used again wherever that
/// encoder reads features. `ft_fit_new` and `ft_fit_new_on` prepare features as DESIGN §3
/// does, as they did before this entry point existed.
///
/// # Safety
/// As `ft_fit_new_on`; `resample` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_new_resampled(
    features: *const ft_features,
    brain: *const ft_brain,
    options: *const ft_fit_options,
    device: *const c_char,
    resample: *const c_char,
    out: *mut *mut ft_fit,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let r = unsafe { preparation_arg(resample) }?;
        // SAFETY: forwarded caller's contract.
        unsafe { fit_new(features, brain, options, device, r, out) }
    })
}

/// `ft_rank_on` with the grid resampling chosen (see `ft_fit_new_resampled`).
///
/// # Safety
/// As `ft_rank_on`; `resample` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_resampled(
    networks: *const *const ft_features,
    n_networks: usize,
    brain: *const ft_brain,
    options: *const ft_fit_options,
    method: i32,
    device: *const c_char,
    resample: *const c_char,
    out: *mut *mut c_char,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let r = unsafe { preparation_arg(resample) }?;
        // SAFETY: forwarded caller's contract.
        unsafe { rank(networks, n_networks, brain, options, method, device, r, out) }
    })
}

/// `ft_monitor_new_on` with the reference fit's grid resampling chosen (see
/// `ft_fit_new_resampled`). A monitor made from a saved encoder uses the encoder's.
///
/// # Safety
/// As `ft_monitor_new_on`; `resample` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_new_resampled(
    brain: *const ft_brain,
    reference: *const ft_features,
    options: *const ft_monitor_options,
    device: *const c_char,
    resample: *const c_char,
    out: *mut *mut ft_monitor,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let r = unsafe { preparation_arg(resample) }?;
        // SAFETY: forwarded caller's contract.
        unsafe { monitor_new(brain, reference, options, device, r, out) }
    })
}

/// The body of `ft_fit_new_on` and `ft_fit_new_resampled`.
///
/// # Safety
/// As `ft_fit_new_on`.
unsafe fn fit_new(
    features: *const ft_features,
    brain: *const ft_brain,
    options: *const ft_fit_options,
    device: *const c_char,
    prep: Preparation,
    out: *mut *mut ft_fit,
) -> FfiResult<()> {
    let f = shared(features, "features")?;
    let b = handle(brain, "brain")?;
    let out = out_arg(out, "out")?;
    // SAFETY: caller's contract.
    let (device, o) = unsafe { device_and_options(b, options, device, fit_options_for_images) }?;
    let est = fit_estimator(Method::Factortopy, device, &o, prep)?;
    f.source().check_images("features", None)?;
    let job = est.fit(f.source(), &b.inner, None)?.into_encoder_fit()?;
    let record = job.record();
    *out = boxed(ft_fit { report: job.report, encoder: job.outcome.encoder, record });
    Ok(())
}

/// The body of `ft_rank_on` and `ft_rank_resampled`.
///
/// # Safety
/// As `ft_rank_on`.
#[allow(clippy::too_many_arguments)]
unsafe fn rank(
    networks: *const *const ft_features,
    n_networks: usize,
    brain: *const ft_brain,
    options: *const ft_fit_options,
    method: i32,
    device: *const c_char,
    prep: Preparation,
    out: *mut *mut c_char,
) -> FfiResult<()> {
    let b = handle(brain, "brain")?;
    let out = out_arg(out, "out")?;
    if networks.is_null() {
        return Err(FfiError::null("networks"));
    }
    if n_networks == 0 {
        return Err(FfiError::invalid("rank needs at least one network (n_networks is 0)"));
    }
    // SAFETY: caller's contract.
    let (device, o) = unsafe { device_and_options(b, options, device, fit_options_for_images) }?;
    // SAFETY: non-NULL and valid for `n_networks` reads by the caller's contract.
    let ptrs = unsafe { crate::ffi::copy_arg(networks, n_networks, "networks (n_networks)", crate::data::limits::MAX_ELEMENTS) }?;
    // Every network stays borrowed (its flag held) until the ranking is done.
    let mut held = crate::data::limits::try_with_capacity("networks", n_networks)?;
    for (i, &p) in ptrs.iter().enumerate() {
        held.push(shared(p, &format!("networks[{i}]"))?);
    }
    let nets: Vec<&dyn crate::data::FeatureSource> = held.iter().map(|f| f.source()).collect();
    let method = method_of(method)?;
    let cfg = RankConfig { estimator: fit_estimator(method, device, &o, prep)? };
    for (i, f) in nets.iter().enumerate() {
        f.check_images(&format!("networks[{i}]"), None)?;
    }
    let ranking = rank_with_progress(&b.inner, &nets, &cfg, None, None)?;
    *out = c_string(ranking.to_json());
    Ok(())
}

/// The body of `ft_monitor_new_on` and `ft_monitor_new_resampled`.
///
/// # Safety
/// As `ft_monitor_new_on`.
unsafe fn monitor_new(
    brain: *const ft_brain,
    reference: *const ft_features,
    options: *const ft_monitor_options,
    device: *const c_char,
    prep: Preparation,
    out: *mut *mut ft_monitor,
) -> FfiResult<()> {
    let b = handle(brain, "brain")?;
    let f = shared(reference, "reference")?;
    let out = out_arg(out, "out")?;
    // SAFETY: caller's contract.
    let (device, o) = unsafe { device_and_options(b, options, device, monitor_options_for_images) }?;
    let mut cfg = monitor_config(&o, device)?;
    cfg.fit = prep.apply(cfg.fit);
    let m = Monitor::new(&b.inner, f.source(), cfg, None)?;
    *out = boxed(ft_monitor::new(m));
    Ok(())
}

/// The grid's settings: `options` (NULL: the default schedule for the first brain's number of
/// images), the method, the device (checked for its syntax only: a grid can be planned where
/// its pairs will not run) and the preparation.
///
/// # Safety
/// `options` NULL or valid for reads; `device`, `resample` NULL or NUL-terminated.
#[allow(clippy::too_many_arguments)]
unsafe fn grid_of(
    networks: Vec<PathBuf>,
    brains: Vec<PathBuf>,
    options: *const ft_fit_options,
    method: i32,
    device: *const c_char,
    resample: *const c_char,
    with_layers: i32,
) -> FfiResult<Grid> {
    let method = method_of(method)?;
    // SAFETY: caller's contract.
    let prep = unsafe { preparation_arg(resample) }?;
    let device = if device.is_null() {
        Device::Cpu
    } else {
        // SAFETY: caller's contract.
        Device::parse_syntax(unsafe { str_arg(device, "device") }?)?
    };
    let first = brains.first().ok_or_else(|| FfiError::invalid("a ranking needs at least one brain"))?;
    let n_images = BrainHeader::read(first)?.n_images;
    // SAFETY: NULL or valid for reads by the caller's contract.
    let o = unsafe { options.as_ref() }.copied().unwrap_or_else(|| fit_options_for_images(n_images));
    let estimator = fit_estimator(method, device, &o, prep)?;
    crate::data::limits::held_out("val_fraction", n_images, estimator.fit.val_fraction)?;
    Ok(Grid { networks, brains, estimator, with_layers: with_layers != 0 })
}

/// The grid of `ft_rank_plan` and `ft_rank_grid`, and the store of `out_dir` (NULL: none).
///
/// # Safety
/// As `ft_rank_plan`.
#[allow(clippy::too_many_arguments)]
unsafe fn grid_and_store(
    networks: *const *const c_char,
    n_networks: usize,
    brains: *const *const c_char,
    n_brains: usize,
    options: *const ft_fit_options,
    method: i32,
    device: *const c_char,
    resample: *const c_char,
    with_layers: i32,
    out_dir: *const c_char,
) -> FfiResult<(Grid, Option<PairStore>)> {
    // SAFETY: forwarded caller's contract.
    let grid = unsafe {
        grid_of(
            path_list(networks, n_networks, "networks")?,
            path_list(brains, n_brains, "brains")?,
            options,
            method,
            device,
            resample,
            with_layers,
        )
    }?;
    // SAFETY: caller's contract.
    let store = unsafe { opt_path(out_dir, "out_dir") }?.map(|d| PairStore::new(&d));
    Ok((grid, store))
}

/// Plans a grid of `networks` (features files) × `brains` (brain files, one per subject, the
/// same images): checks the files' headers and returns, as JSON in `*out` (free with
/// `ft_string_free`), `subjects` (names) and `jobs`, one per pair: `network` and `subject`
/// (indices into the lists), `digest` (of both files' contents and the settings) and `done`
/// (whether `out_dir`, NULL for none, already holds that pair's outcome). Settings as
/// `ft_rank_resampled`; `with_layers` non-zero also scores every layer with the ridge baseline.
///
/// # Safety
/// `networks` and `brains` are valid for `n_networks` / `n_brains` reads of NUL-terminated
/// strings; `options` is NULL or valid for reads; `device`, `resample`, `out_dir` are NULL or
/// NUL-terminated; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_plan(
    networks: *const *const c_char,
    n_networks: usize,
    brains: *const *const c_char,
    n_brains: usize,
    options: *const ft_fit_options,
    method: i32,
    device: *const c_char,
    resample: *const c_char,
    with_layers: i32,
    out_dir: *const c_char,
    out: *mut *mut c_char,
) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        // SAFETY: forwarded caller's contract.
        let (grid, store) = unsafe {
            grid_and_store(networks, n_networks, brains, n_brains, options, method, device, resample, with_layers, out_dir)
        }?;
        let plan = grid.plan()?;
        let jobs: Vec<serde_json::Value> = plan
            .jobs
            .iter()
            .map(|j| {
                serde_json::json!({
                    "network": j.network,
                    "subject": j.subject,
                    "digest": j.digest,
                    "done": store.as_ref().is_some_and(|s| s.load(&j.digest).is_some()),
                })
            })
            .collect();
        *out = c_string(serde_json::json!({ "subjects": plan.subjects, "jobs": jobs }).to_string());
        Ok(())
    })
}

/// Fits one pair of a grid: the features file `network_path` against the brain file
/// `brain_path`, recorded as network `network` × subject `subject` of the grid. `*out` is the
/// pair's outcome as JSON (free with `ft_string_free`), for `ft_rank_store` and
/// `ft_rank_combine`. Settings as `ft_rank_plan` (the same settings give the same digest).
///
/// # Safety
/// `network_path`, `brain_path` are NUL-terminated; `options` NULL or valid for reads; `device`,
/// `resample` NULL or NUL-terminated; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_pair(
    network_path: *const c_char,
    brain_path: *const c_char,
    network: usize,
    subject: usize,
    options: *const ft_fit_options,
    method: i32,
    device: *const c_char,
    resample: *const c_char,
    with_layers: i32,
    out: *mut *mut c_char,
) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        // SAFETY: caller's contract.
        let (f, b) = unsafe { (str_arg(network_path, "network_path")?, str_arg(brain_path, "brain_path")?) };
        // SAFETY: forwarded caller's contract.
        let grid =
            unsafe { grid_of(vec![f.into()], vec![b.into()], options, method, device, resample, with_layers) }?;
        grid.estimator.device.check_available()?;
        let plan = grid.plan()?;
        let mut outcome = grid.fit_one(&plan, &plan.jobs[0], None)?;
        outcome.network = network;
        outcome.subject = subject;
        *out = c_string(outcome.to_json());
        Ok(())
    })
}

/// Runs a whole grid in this process (pairs one after another, each brain loaded once) and
/// returns the ranking as `ft_rank_combine` does. With `out_dir` (NULL: none), each finished
/// pair is stored there as it finishes and pairs already stored are not fitted again. When
/// pairs fail, the others still run (and are stored); the status is the failure's and
/// `ft_last_error()` names every failed pair.
///
/// # Safety
/// As `ft_rank_plan`; `device` must name a usable device.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_grid(
    networks: *const *const c_char,
    n_networks: usize,
    brains: *const *const c_char,
    n_brains: usize,
    options: *const ft_fit_options,
    method: i32,
    device: *const c_char,
    resample: *const c_char,
    with_layers: i32,
    out_dir: *const c_char,
    out: *mut *mut c_char,
) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        // SAFETY: forwarded caller's contract.
        let (grid, store) = unsafe {
            grid_and_store(networks, n_networks, brains, n_brains, options, method, device, resample, with_layers, out_dir)
        }?;
        grid.estimator.device.check_available()?;
        let plan = grid.plan()?;
        let mut exec = Serial { on_start: None, on_event: None };
        let outcomes = grid.run(&plan, store.as_ref(), &mut exec, &mut |_| {})?;
        *out = c_string(combine(&outcomes)?.to_json());
        Ok(())
    })
}
