//! Fits: a fitted and scored encoder, its report, its saved encoder and its predictions.

use crate::error::Error;
use std::ffi::c_char;
use std::path::Path;

use crate::engine::estimator::prediction_coords;
use crate::engine::{Device, Estimator, Method};
use crate::ffi::brain::ft_brain;
use crate::ffi::config::{config_arg, device_arg, ft_fit_config, Use};
use crate::ffi::features::ft_features;
use crate::ffi::{
    boxed, c_string, free_box, ft_status, guard, handle, out_arg, shared, str_arg, FfiError, FfiResult, Immutable,
};
use crate::model::encoder_file::{load_encoder, save_encoder, FitRecord};
use crate::model::{Encoder, FitConfig};
use crate::scores::Report;

/// A fitted and scored encoder. Immutable: safe to share between threads.
pub struct ft_fit {
    pub(crate) report: Report,
    pub(crate) encoder: Encoder,
    pub(crate) record: FitRecord,
}

impl Immutable for ft_fit {}

/// Headline numbers of a fit's report (DESIGN §4).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_fit_summary {
    pub n_images: usize,
    pub n_voxels: usize,
    pub n_layers: usize,
    /// Slope of the depth-vs-hierarchy line. `slope`, `b0`, `b1` and `spearman` are NaN when
    /// undefined (one ROI level, one voxel, or every voxel at one depth; the report's JSON has
    /// `null` and a `warning`).
    pub slope: f64,
    /// Depth early cortex reads from (smaller is better).
    pub b0: f64,
    /// Depth the top of the hierarchy reads from (larger is better).
    pub b1: f64,
    /// Spearman rank correlation of ROI position and voxel depth.
    pub spearman: f64,
    /// Held-out R² over voxels.
    pub r2_mean: f64,
    pub r2_median: f64,
    /// Held-out Pearson r over voxels.
    pub pearson_mean: f64,
}

/// Fits an encoder of `features` to `brain` and scores it, with the settings of `cfg` (NULL:
/// `ft_fit_config_new(NULL, 0)`'s, the default schedule for the brain's number of images).
/// Long: runs the whole fit on the calling thread (using the library's worker threads). A
/// device that cannot be used now is `FT_ERR_BACKEND` before any work; a setting a fit does not
/// use (the monitor's, the generator's, method `ridge`) is `FT_ERR_INVALID_ARGUMENT` naming it.
///
/// # Safety
/// `cfg` is NULL or a live config; `features` and `brain` are live handles; `out` is valid for
/// writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_with(
    cfg: *const ft_fit_config,
    features: *const ft_features,
    brain: *const ft_brain,
    out: *mut *mut ft_fit,
) -> ft_status {
    guard(|| {
        let s = config_arg(cfg, Use::Fit, "ft_fit_with")?;
        // SAFETY: forwarded caller's contract.
        unsafe { fit_new(features, brain, |n| Ok(s.estimator_for(n)), out) }
    })
}

/// Scores a saved encoder (`factortopy fit`'s encoder.safetensors) on `features` and `brain`, on
/// the held-out images it was validated on, with `cfg`'s device, weighting and uncertainty
/// settings (NULL: defaults). The encoder is trained already: a training setting in `cfg` is
/// `FT_ERR_INVALID_ARGUMENT` naming it.
///
/// # Safety
/// `cfg` is NULL or a live config; `encoder_path` is a NUL-terminated string; handles are live;
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_load_with(
    cfg: *const ft_fit_config,
    encoder_path: *const c_char,
    features: *const ft_features,
    brain: *const ft_brain,
    out: *mut *mut ft_fit,
) -> ft_status {
    guard(|| {
        let s = config_arg(cfg, Use::Score, "ft_fit_load_with")?;
        let est = Estimator { fit: FitConfig::default(), ..s.estimator.clone() };
        // SAFETY: forwarded caller's contract.
        unsafe { fit_load(encoder_path, features, brain, || Ok(est), out) }
    })
}

/// The body of every fitting entry point: `estimator` resolves the settings for the brain's
/// number of images once the handles are checked.
///
/// # Safety
/// As `ft_fit_with`.
pub(crate) unsafe fn fit_new(
    features: *const ft_features,
    brain: *const ft_brain,
    estimator: impl FnOnce(usize) -> FfiResult<Estimator>,
    out: *mut *mut ft_fit,
) -> FfiResult<()> {
    let f = shared(features, "features")?;
    let b = handle(brain, "brain")?;
    let out = out_arg(out, "out")?;
    let est = estimator(b.inner.n_images())?;
    if est.method != Method::Factortopy {
        return Err(FfiError::invalid("a fit handle holds a FactorTopy encoder; rank with the ridge baseline instead"));
    }
    f.source().check_images("features", None)?;
    let job = est.fit(f.source(), &b.inner, None)?.into_encoder_fit()?;
    let record = job.record();
    *out = boxed(ft_fit { report: job.report, encoder: job.outcome.encoder, record });
    Ok(())
}

/// The body of every entry point that scores a saved encoder.
///
/// # Safety
/// As `ft_fit_load_with`.
pub(crate) unsafe fn fit_load(
    encoder_path: *const c_char,
    features: *const ft_features,
    brain: *const ft_brain,
    estimator: impl FnOnce() -> FfiResult<Estimator>,
    out: *mut *mut ft_fit,
) -> FfiResult<()> {
    // SAFETY: caller's contract.
    let path = unsafe { str_arg(encoder_path, "encoder_path") }?;
    let f = shared(features, "features")?;
    let b = handle(brain, "brain")?;
    let out = out_arg(out, "out")?;
    let est = estimator()?;
    est.validate()?;
    f.source().check_images("features", None)?;
    let (encoder, record) = load_encoder(Path::new(path))?;
    let report = est.score(&encoder, &record, f.source(), &b.inner)?.report;
    *out = boxed(ft_fit { report, encoder, record });
    Ok(())
}

/// Frees a fit (NULL is a no-op).
///
/// # Safety
/// `fit` is NULL or a live handle; it is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_free(fit: *mut ft_fit) {
    // SAFETY: caller's contract.
    unsafe { free_box(fit) }
}

/// The headline numbers of a fit.
///
/// # Safety
/// `fit` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_report_summary(fit: *const ft_fit, out: *mut ft_fit_summary) -> ft_status {
    guard(|| {
        let r = &handle(fit, "fit")?.report;
        let out = out_arg(out, "out")?;
        let (slope, b0, b1, spearman) = r.hierarchy.as_nan_tuple();
        *out = ft_fit_summary {
            n_images: r.n_images,
            n_voxels: r.n_voxels,
            n_layers: r.n_layers,
            slope,
            b0,
            b1,
            spearman,
            r2_mean: r.r2.mean,
            r2_median: r.r2.median,
            pearson_mean: r.pearson.mean,
        };
        Ok(())
    })
}

/// The full report of a fit as JSON (the `report.json` of `factortopy fit`). Free `*out` with
/// `ft_string_free`.
///
/// # Safety
/// `fit` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_report_json(fit: *const ft_fit, out: *mut *mut c_char) -> ft_status {
    guard(|| {
        let f = handle(fit, "fit")?;
        let out = out_arg(out, "out")?;
        *out = c_string(f.report.to_json());
        Ok(())
    })
}

/// Saves the fitted encoder (DESIGN §3.7 tensor names), e.g. to create a monitor from later.
///
/// # Safety
/// `fit` is a live handle; `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_save_encoder(fit: *const ft_fit, path: *const c_char) -> ft_status {
    guard(|| {
        let f = handle(fit, "fit")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        save_encoder(Path::new(path), &f.encoder, &f.record)?;
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
        return Err(Error::shape("out", format!("out holds {capacity} floats; {n} images × {v} voxels need {need}")).into());
    }
    let est = Estimator::new(Method::Factortopy, device, FitConfig::default());
    let coords = prediction_coords(encoder, record, brain)?;
    let pred = est.predict(encoder, coords, features)?;
    // SAFETY: `out` is non-NULL and valid for `capacity` ≥ `need` = pred.data.len() writes.
    let dst = unsafe { std::slice::from_raw_parts_mut(out, need) };
    dst.copy_from_slice(&pred.data);
    Ok(())
}
