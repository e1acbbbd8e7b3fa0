//! The forgetting monitor and its step reports.

use std::ffi::c_char;
use std::path::{Path, PathBuf};

use crate::ffi::brain::ft_brain;
use crate::ffi::config::{config_arg, device_arg, ft_fit_config, Use};
use crate::ffi::features::ft_features;
use crate::ffi::{
    boxed, c_string, exclusive, free_box, ft_status, guard, guard_value, handle, out_arg, shared, str_arg, Busy,
    FfiError, FfiResult, Immutable, Policed,
};
use crate::monitor::{Monitor, MonitorConfig, StepReport};

/// The forgetting monitor. Not thread-safe: calls on one monitor must not overlap (serialise
/// them, e.g. call from the training loop's thread); it may move between threads.
pub struct ft_monitor {
    busy: Busy,
    inner: Monitor,
}

impl ft_monitor {
    pub(crate) fn new(inner: Monitor) -> Self {
        Self { busy: Busy::default(), inner }
    }
}

impl Policed for ft_monitor {
    type Inner = Monitor;
    const SHARED_READS: bool = false;
    unsafe fn busy_of(p: *const Self) -> *const Busy {
        // SAFETY: `p` is live by the caller's contract; no reference to the handle is made.
        unsafe { std::ptr::addr_of!((*p).busy) }
    }
    unsafe fn inner_of(p: *mut Self) -> *mut Monitor {
        // SAFETY: as above.
        unsafe { std::ptr::addr_of_mut!((*p).inner) }
    }
}

impl Immutable for ft_step_report {}

/// One observation's report. Immutable: safe to share between threads.
pub struct ft_step_report {
    inner: StepReport,
}

/// Creates a monitor: fits the reference encoder on `reference` (the network before
/// fine-tuning) with the settings of `cfg` (NULL: defaults, the schedule for the brain's number
/// of images) and caches the reference statistics. The fit settings' held-out images are
/// `held_out_fraction`'s (setting `val_fraction` is refused, as are the bootstrap and
/// permutations: a monitor reports no intervals). The brain and features are copied; the
/// handles can be freed afterwards.
///
/// # Safety
/// `cfg` is NULL or a live config; handles are live; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_with(
    cfg: *const ft_fit_config,
    brain: *const ft_brain,
    reference: *const ft_features,
    out: *mut *mut ft_monitor,
) -> ft_status {
    guard(|| {
        let s = config_arg(cfg, Use::Monitor, "ft_monitor_with")?;
        // SAFETY: forwarded caller's contract.
        unsafe { monitor_new(brain, reference, |n| Ok(s.monitor_for(n)), out) }
    })
}

/// Creates a monitor around a saved reference encoder instead of fitting one, with the settings
/// of `cfg` (NULL: defaults) for its refits. Retention is measured on the images the encoder was
/// validated on; the encoder's own preparation is used (setting `resample` or `layer_units` is
/// refused).
///
/// # Safety
/// As `ft_monitor_with`; `encoder_path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_from_encoder_with(
    cfg: *const ft_fit_config,
    brain: *const ft_brain,
    reference: *const ft_features,
    encoder_path: *const c_char,
    out: *mut *mut ft_monitor,
) -> ft_status {
    guard(|| {
        let s = config_arg(cfg, Use::MonitorFromEncoder, "ft_monitor_from_encoder_with")?;
        // SAFETY: forwarded caller's contract.
        unsafe { monitor_from_encoder(brain, reference, encoder_path, |n| Ok(s.monitor_for(n)), out) }
    })
}

/// The body of every entry point that fits a monitor: `config` resolves the settings for the
/// brain's number of images once the handles are checked.
///
/// # Safety
/// As `ft_monitor_with`.
pub(crate) unsafe fn monitor_new(
    brain: *const ft_brain,
    reference: *const ft_features,
    config: impl FnOnce(usize) -> FfiResult<MonitorConfig>,
    out: *mut *mut ft_monitor,
) -> FfiResult<()> {
    let b = handle(brain, "brain")?;
    let f = shared(reference, "reference")?;
    let out = out_arg(out, "out")?;
    let cfg = config(b.inner.n_images())?;
    let m = Monitor::new(&b.inner, f.source(), cfg, None)?;
    *out = boxed(ft_monitor::new(m));
    Ok(())
}

/// The body of every entry point that makes a monitor from a saved encoder.
///
/// # Safety
/// As `ft_monitor_from_encoder_with`.
pub(crate) unsafe fn monitor_from_encoder(
    brain: *const ft_brain,
    reference: *const ft_features,
    encoder_path: *const c_char,
    config: impl FnOnce(usize) -> FfiResult<MonitorConfig>,
    out: *mut *mut ft_monitor,
) -> FfiResult<()> {
    let b = handle(brain, "brain")?;
    let f = shared(reference, "reference")?;
    // SAFETY: caller's contract.
    let path = unsafe { str_arg(encoder_path, "encoder_path") }?;
    let out = out_arg(out, "out")?;
    let cfg = config(b.inner.n_images())?;
    let m = Monitor::from_encoder_file(&b.inner, f.source(), Path::new(path), cfg)?;
    *out = boxed(ft_monitor::new(m));
    Ok(())
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

/// Observes the network at training step `step` through its probe-set features. On success
/// `*out` is a new report (free with `ft_step_report_free`); it is also appended to the
/// monitor's history (and history file). On error the history is unchanged.
///
/// # Safety
/// Handles are live; no other call uses `monitor` meanwhile; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_observe(
    monitor: *mut ft_monitor,
    step: u64,
    features: *const ft_features,
    out: *mut *mut ft_step_report,
) -> ft_status {
    guard(|| {
        let mut m = exclusive(monitor, "monitor")?;
        let f = shared(features, "features")?;
        let out = out_arg(out, "out")?;
        let r = m.observe(step, f.source())?;
        *out = boxed(ft_step_report { inner: r });
        Ok(())
    })
}

/// Saves the monitor's state (reference encoder and statistics, history, settings) to one
/// safetensors file, atomically.
///
/// # Safety
/// `monitor` is a live handle; `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_save(monitor: *const ft_monitor, path: *const c_char) -> ft_status {
    guard(|| {
        let m = shared(monitor, "monitor")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        m.save(Path::new(path))?;
        Ok(())
    })
}

/// Restores a monitor saved by `ft_monitor_save`, for the brain it was created with (checked).
/// The history continues; the history file is not part of the state (set it again).
///
/// # Safety
/// `path` is a NUL-terminated string; `brain` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_load(
    path: *const c_char,
    brain: *const ft_brain,
    out: *mut *mut ft_monitor,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        let b = handle(brain, "brain")?;
        let out = out_arg(out, "out")?;
        let m = Monitor::load(Path::new(path), &b.inner)?;
        *out = boxed(ft_monitor::new(m));
        Ok(())
    })
}

/// The monitor's state as bytes (the same bytes `ft_monitor_save` writes), for hosts that store
/// it inside their own checkpoints. Free `*data` with `ft_bytes_free(*data, *len)`.
///
/// # Safety
/// `monitor` is a live handle; `data` and `len` are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_save_bytes(monitor: *const ft_monitor, data: *mut *mut u8, len: *mut usize) -> ft_status {
    guard(|| {
        let m = shared(monitor, "monitor")?;
        let data = out_arg(data, "data")?;
        let len = out_arg(len, "len")?;
        let bytes = m.to_bytes()?.into_boxed_slice();
        *len = bytes.len();
        *data = Box::into_raw(bytes).cast::<u8>();
        Ok(())
    })
}

/// Restores a monitor from `ft_monitor_save_bytes`' bytes (copied during the call), for the
/// brain it was created with (checked), as `ft_monitor_load`.
///
/// # Safety
/// `data` is valid for reads of `len` bytes; `brain` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_load_bytes(
    data: *const u8,
    len: usize,
    brain: *const ft_brain,
    out: *mut *mut ft_monitor,
) -> ft_status {
    guard(|| {
        if data.is_null() {
            return Err(FfiError::null("data"));
        }
        let b = handle(brain, "brain")?;
        let out = out_arg(out, "out")?;
        let max = usize::try_from(crate::data::limits::MAX_FILE_BYTES).unwrap_or(usize::MAX);
        // SAFETY: non-NULL and valid for `len` reads by the caller's contract.
        let bytes = unsafe { crate::ffi::copy_arg(data, len, "monitor state bytes (len)", max) }?;
        let m = Monitor::from_bytes(Path::new("monitor state bytes"), bytes, &b.inner)?;
        *out = boxed(ft_monitor::new(m));
        Ok(())
    })
}

/// Frees bytes returned by the library (`ft_monitor_save_bytes`); `len` is the length it
/// returned with them. Accepts NULL.
///
/// # Safety
/// `data` is NULL or bytes from this library, with their length, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn ft_bytes_free(data: *mut u8, len: usize) {
    guard_value((), || {
        if !data.is_null() {
            // SAFETY: `data` and `len` came from `Box::<[u8]>::into_raw` in
            // `ft_monitor_save_bytes` and are freed once.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)) });
        }
    })
}

/// Appends every later observation to `path` as one JSON line (created if missing, existing
/// lines kept). `path` NULL: stop appending.
///
/// # Safety
/// `monitor` is a live handle not used by another call meanwhile; `path` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_set_history_file(monitor: *mut ft_monitor, path: *const c_char) -> ft_status {
    guard(|| {
        let mut m = exclusive(monitor, "monitor")?;
        let p = match path.is_null() {
            true => None,
            // SAFETY: non-NULL, caller's contract.
            false => Some(PathBuf::from(unsafe { str_arg(path, "path") }?)),
        };
        m.set_history_file(p);
        Ok(())
    })
}

/// The whole history as a JSON list of step reports. Free `*out` with `ft_string_free`.
///
/// # Safety
/// `monitor` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_history_json(monitor: *const ft_monitor, out: *mut *mut c_char) -> ft_status {
    guard(|| {
        let m = shared(monitor, "monitor")?;
        let out = out_arg(out, "out")?;
        let s = serde_json::to_string(m.history()).expect("step reports serialise");
        *out = c_string(s);
        Ok(())
    })
}

/// Draws the monitor's history as PNG charts into `dir` (created if needed): `forgetting.png`
/// (overall and per ROI) and `cka.png` (per layer), over training steps, as `factortopy monitor`
/// does.
///
/// # Safety
/// `monitor` is a live handle; `dir` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_write_curves(monitor: *const ft_monitor, dir: *const c_char) -> ft_status {
    guard(|| {
        let m = shared(monitor, "monitor")?;
        // SAFETY: caller's contract.
        let dir = Path::new(unsafe { str_arg(dir, "dir") }?);
        if m.history().is_empty() {
            return Err(FfiError::invalid("the monitor has no observations to draw yet"));
        }
        crate::monitor::write_curves(dir, &m)?;
        Ok(())
    })
}

/// Frees a monitor (NULL is a no-op).
///
/// # Safety
/// `monitor` is NULL or a live handle; it is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_free(monitor: *mut ft_monitor) {
    // SAFETY: caller's contract.
    unsafe { free_box(monitor) }
}

// ---------------------------------------------------------------------------------------------
// Step reports

/// Headline numbers of one observation. Refit fields are NaN unless `refitted`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_step_summary {
    pub step: u64,
    /// Index of the observation since the monitor was created (0 for the first).
    pub observation: u64,
    /// Held-out R² of the reference encoder on these features / on the reference features.
    pub retention: f64,
    /// 1 - retention.
    pub forgetting: f64,
    /// Mean held-out R² of the reference encoder on these features.
    pub r2: f64,
    /// The same on the reference features.
    pub reference_r2: f64,
    /// Number of layers (the length of the CKA list).
    pub n_layers: usize,
    /// Smallest and mean linear CKA over layers.
    pub min_cka: f64,
    pub mean_cka: f64,
    /// Forgetting is above the configured threshold.
    pub should_stop: bool,
    /// This observation refitted the encoder.
    pub refitted: bool,
    /// mean_v |d_v(t) - d_v(0)| of the refit.
    pub layer_shift: f64,
    /// Fraction of voxels whose argmax layer moved.
    pub argmax_moved: f64,
    /// Hierarchy scores of the refit (NaN when not refitted, or when undefined).
    pub slope: f64,
    pub b0: f64,
    pub b1: f64,
    pub spearman: f64,
    /// Held-out R² of the refitted encoder.
    pub refit_r2: f64,
}

/// The headline numbers of a report.
///
/// # Safety
/// `report` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_step_report_summary(report: *const ft_step_report, out: *mut ft_step_summary) -> ft_status {
    guard(|| {
        let r = &handle(report, "report")?.inner;
        let out = out_arg(out, "out")?;
        let nan = f64::NAN;
        let n = r.cka.len();
        let mut s = ft_step_summary {
            step: r.step,
            observation: r.observation as u64,
            retention: r.retention,
            forgetting: r.forgetting,
            r2: r.r2,
            reference_r2: r.reference_r2,
            n_layers: n,
            min_cka: r.min_cka(),
            mean_cka: if n == 0 { nan } else { r.cka.iter().sum::<f64>() / n as f64 },
            should_stop: r.should_stop,
            refitted: r.refit.is_some(),
            layer_shift: nan,
            argmax_moved: nan,
            slope: nan,
            b0: nan,
            b1: nan,
            spearman: nan,
            refit_r2: nan,
        };
        if let Some(f) = &r.refit {
            s.layer_shift = f.layer_shift;
            s.argmax_moved = f.argmax_moved;
            (s.slope, s.b0, s.b1, s.spearman) = f.hierarchy.as_nan_tuple();
            s.refit_r2 = f.r2;
        }
        *out = s;
        Ok(())
    })
}

/// Copies the per-layer CKA values into `out[0 .. n_layers)`; `capacity` is the length of
/// `out` and must be at least `n_layers` (see `ft_step_summary`).
///
/// # Safety
/// `report` is a live handle; `out` is valid for writes of `capacity` doubles.
#[no_mangle]
pub unsafe extern "C" fn ft_step_report_cka(report: *const ft_step_report, out: *mut f64, capacity: usize) -> ft_status {
    guard(|| {
        let r = &handle(report, "report")?.inner;
        if out.is_null() {
            return Err(FfiError::null("out"));
        }
        let n = r.cka.len();
        if capacity < n {
            return Err(FfiError::invalid(format!("`out` holds {capacity} values; the report has {n} layers")));
        }
        // SAFETY: non-NULL and valid for `capacity >= n` writes by the caller's contract.
        let dst = unsafe { std::slice::from_raw_parts_mut(out, n) };
        dst.copy_from_slice(&r.cka);
        Ok(())
    })
}

/// The full report as JSON (the same object as a line of the history file, pretty-printed).
/// Free `*out` with `ft_string_free`.
///
/// # Safety
/// `report` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_step_report_json(report: *const ft_step_report, out: *mut *mut c_char) -> ft_status {
    guard(|| {
        let r = &handle(report, "report")?.inner;
        let out = out_arg(out, "out")?;
        *out = c_string(r.to_json());
        Ok(())
    })
}

/// Frees a report (NULL is a no-op).
///
/// # Safety
/// `report` is NULL or a live handle; it is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ft_step_report_free(report: *mut ft_step_report) {
    // SAFETY: caller's contract.
    unsafe { free_box(report) }
}
