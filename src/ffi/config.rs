//! Settings as the C ABI receives them: the device, the grid resampling and the features'
//! preparation, and the estimator they make.

use std::ffi::c_char;

use crate::engine::{Device, Estimator, Method};
use crate::ffi::compat::{fit_config, ft_fit_options};
use crate::ffi::{ft_status, guard, str_arg, FfiError, FfiResult};
use crate::model::{Preparation, Resample};

/// `cpu` for NULL, otherwise the named device (`cpu`, `cuda`, `cuda:N`), checked for use now.
///
/// # Safety
/// `device` is NULL or a NUL-terminated string.
pub(crate) unsafe fn device_arg(device: *const c_char) -> FfiResult<Device> {
    if device.is_null() {
        return Ok(Device::Cpu);
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let name = unsafe { str_arg(device, "device") }?;
    let d = Device::parse_syntax(name)?;
    d.check_available()?;
    Ok(d)
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

/// The estimator of `ft_fit_options` (`weighted` honoured) with the grid resampling chosen, for
/// `fit_new` and `rank`.
pub(crate) fn fit_estimator(method: Method, device: Device, o: &ft_fit_options, prep: Preparation) -> FfiResult<Estimator> {
    let cfg = prep.apply(fit_config(o)?);
    Ok(Estimator { weighted: o.weighted != 0, ..Estimator::new(method, device, cfg) })
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
