//! The engine through the C ABI: fits, scores, monitors and rankings on a named device, and
//! predictions from a fitted encoder. The device-less entry points of `api.rs` and `rank.rs`
//! (`ft_fit_new`, `ft_monitor_new`, `ft_rank`, ...) are these with `device` NULL ("cpu").
//!
//! Versioning rule (repeated in the header's conventions): option structs are frozen once
//! released. A new setting never changes an existing struct's layout; it arrives as an argument
//! of a new entry point (here `_on`: "on a device"), so a program compiled against an older
//! header keeps calling the old functions with the old structs, unchanged.

use std::ffi::c_char;
use std::path::Path;

use crate::engine::estimator::prediction_coords;
use crate::engine::{Device, Estimator, Method};
use crate::ffi::api::{
    boxed, fit_config, fit_options_for_images, ft_brain, ft_features, ft_fit, ft_fit_options, ft_monitor,
    ft_monitor_options, monitor_config, monitor_options_for_images,
};
use crate::ffi::{c_string, exclusive, ft_status, guard, handle, out_arg, shared, str_arg, FfiError, FfiResult};
use crate::model::encoder_file::load_encoder;
use crate::model::{FitConfig, Preparation, Resample};
use crate::monitor::Monitor;
use crate::rank::{rank_with_progress, RankConfig};

/// `cpu` for NULL, otherwise the named device (`cpu`, `cuda`, `cuda:N`), checked for use now.
///
/// # Safety
/// `device` is NULL or a NUL-terminated string.
unsafe fn device_arg(device: *const c_char) -> FfiResult<Device> {
    if device.is_null() {
        return Ok(Device::Cpu);
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let name = unsafe { str_arg(device, "device") }?;
    let d = Device::parse_syntax(name)?;
    d.check_available()?;
    Ok(d)
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

/// The estimator of `ft_fit_options` (`weighted` honoured) with the grid resampling chosen, for
/// `fit_new` and `rank`.
pub(crate) fn fit_estimator(method: Method, device: Device, o: &ft_fit_options, prep: Preparation) -> FfiResult<Estimator> {
    let cfg = prep.apply(fit_config(o)?);
    Ok(Estimator { weighted: o.weighted != 0, ..Estimator::new(method, device, cfg) })
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

/// Predicted responses of the fit's voxels to the images of `features` (same network layers as
/// the fit), written row-major into `out[0 .. n_images·n_voxels)` as f32 (`n_voxels` from
/// `ft_fit_report_summary`, `n_images` from `ft_features_shape`). `capacity` is the number of
/// floats `out` holds; a smaller one is `FT_ERR_SHAPE` and nothing is written. `brain` may be
/// NULL when the fit carries its voxels' coordinates (fits made by this library do; encoders
/// converted from other implementations need the brain they were fitted to). `device` NULL:
/// `"cpu"`.
///
/// # Safety
/// `fit` and `features` are live handles; `brain` is NULL or live; `device` is NULL or a
/// NUL-terminated string; `out` is valid for `capacity` writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_predict(
    fit: *const ft_fit,
    features: *const ft_features,
    brain: *const ft_brain,
    device: *const c_char,
    out: *mut f32,
    capacity: usize,
) -> ft_status {
    guard(|| {
        let fit = handle(fit, "fit")?;
        let f = shared(features, "features")?;
        let brain = if brain.is_null() { None } else { Some(&handle(brain, "brain")?.inner) };
        // SAFETY: caller's contract.
        let device = unsafe { device_arg(device) }?;
        // SAFETY: caller's contract.
        unsafe { predict_into(&fit.encoder, &fit.record, f.source(), brain, device, out, capacity) }
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

/// Moves a monitor (e.g. one restored by `ft_monitor_load`, which starts on the CPU) to
/// `device`. On error the monitor is unchanged.
///
/// # Safety
/// `monitor` is a live handle not used by another call meanwhile; `device` is a NUL-terminated
/// string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_set_device(monitor: *mut ft_monitor, device: *const c_char) -> ft_status {
    guard(|| {
        let mut m = exclusive(monitor, "monitor")?;
        if device.is_null() {
            return Err(FfiError::null("device"));
        }
        // SAFETY: caller's contract.
        let device = unsafe { device_arg(device) }?;
        m.set_device(device)?;
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

/// Checks that `device` (`"cpu"`, `"cuda"`, `"cuda:N"`) can be used now: `FT_OK`, or
/// `FT_ERR_BACKEND` with the reason (no CUDA in this build, no driver, NVRTC or cuBLAS, a bad
/// ordinal) in `ft_last_error()`; a name that is not a device is `FT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `device` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_device_check(device: *const c_char) -> ft_status {
    guard(|| {
        if device.is_null() {
            return Err(FfiError::null("device"));
        }
        // SAFETY: caller's contract.
        unsafe { device_arg(device) }?;
        Ok(())
    })
}

/// The number of voxels a saved encoder predicts (the row length of `ft_predict_encoder`'s
/// output).
///
/// # Safety
/// `encoder_path` is a NUL-terminated string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_encoder_n_voxels(encoder_path: *const c_char, out: *mut usize) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(encoder_path, "encoder_path") }?;
        let out = out_arg(out, "out")?;
        let (enc, _) = load_encoder(Path::new(path))?;
        *out = enc.spec.n_voxels;
        Ok(())
    })
}

/// Predicted responses of a saved encoder (`factortopy fit`'s encoder.safetensors) to the images
/// of `features`, as `ft_fit_predict` (row-major f32 into `out[0 .. n_images·n_voxels)`,
/// `capacity` floats available; `brain` NULL unless the encoder carries no voxel coordinates;
/// `device` NULL: `"cpu"`).
///
/// # Safety
/// `encoder_path` is a NUL-terminated string; `features` is live; `brain` is NULL or live;
/// `device` is NULL or a NUL-terminated string; `out` is valid for `capacity` writes.
#[no_mangle]
pub unsafe extern "C" fn ft_predict_encoder(
    encoder_path: *const c_char,
    features: *const ft_features,
    brain: *const ft_brain,
    device: *const c_char,
    out: *mut f32,
    capacity: usize,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(encoder_path, "encoder_path") }?;
        let f = shared(features, "features")?;
        let brain = if brain.is_null() { None } else { Some(&handle(brain, "brain")?.inner) };
        // SAFETY: caller's contract.
        let device = unsafe { device_arg(device) }?;
        let (encoder, record) = load_encoder(Path::new(path))?;
        // SAFETY: caller's contract.
        unsafe { predict_into(&encoder, &record, f.source(), brain, device, out, capacity) }
    })
}

/// The body of both predict entry points: checks the output's size before any work.
///
/// # Safety
/// `out` is NULL or valid for `capacity` writes.
unsafe fn predict_into(
    encoder: &crate::model::Encoder,
    record: &crate::model::encoder_file::FitRecord,
    features: &dyn crate::data::FeatureSource,
    brain: Option<&crate::data::Brain>,
    device: Device,
    out: *mut f32,
    capacity: usize,
) -> FfiResult<()> {
    if out.is_null() {
        return Err(FfiError::null("out"));
    }
    let n = features.n_images();
    let v = encoder.spec.n_voxels;
    let need = n.checked_mul(v).ok_or_else(|| FfiError::invalid(format!("{n} images × {v} voxels overflow")))?;
    if capacity < need {
        return Err(FfiError::new(
            ft_status::FT_ERR_SHAPE,
            format!("out holds {capacity} floats; {n} images × {v} voxels need {need}"),
        ));
    }
    let est = Estimator::new(Method::Factortopy, device, FitConfig::default());
    let coords = prediction_coords(encoder, record, brain)?;
    let pred = est.predict(encoder, coords, features)?;
    // SAFETY: `out` is non-NULL and valid for `capacity` ≥ `need` = pred.data.len() writes.
    let dst = unsafe { std::slice::from_raw_parts_mut(out, need) };
    dst.copy_from_slice(&pred.data);
    Ok(())
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

// ---------------------------------------------------------------------------------------------
// Grid resampling (`ft_fit_options` is frozen, so the setting arrives as an argument)

/// The resampling named by `resample`: `"bilinear"` (DESIGN §3.1; what `ft_fit_new`,
/// `ft_fit_new_on`, `ft_rank*` and `ft_monitor_new*` use), `"area"` (each grid cell the exact
/// average of the pixels it covers) or `"auto"` (area where a map shrinks, bilinear where it
/// grows); NULL: `"auto"`.
///
/// # Safety
/// `resample` is NULL or a NUL-terminated string.
pub(crate) unsafe fn resample_arg(resample: *const c_char) -> FfiResult<Resample> {
    if resample.is_null() {
        return Ok(Resample::Auto);
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let name = unsafe { str_arg(resample, "resample") }?;
    Ok(Resample::parse(name)?)
}

/// The preparation named by `resample` in the `_resampled` entry points: `METHOD[,UNITS]`, the
/// resampling as [`resample_arg`] reads it, then optionally the layers' units, `common` (every
/// layer scaled to a root mean square of 1 over the probe set, saved with the encoder; the
/// default) or `raw` (the features as they come, DESIGN §3). NULL: `"auto,common"`.
///
/// # Safety
/// `resample` is NULL or a NUL-terminated string.
pub(crate) unsafe fn preparation_arg(resample: *const c_char) -> FfiResult<Preparation> {
    if resample.is_null() {
        return Ok(Preparation { resample: Resample::Auto, normalise_layers: true });
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let name = unsafe { str_arg(resample, "resample") }?;
    Ok(Preparation::parse(name)?)
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
    let method = crate::ffi::rank::method_of(method)?;
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
