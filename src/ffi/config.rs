//! The settings builder, `ft_fit_config`: one opaque handle holding the library's own
//! configuration (an [`Estimator`], a [`MonitorConfig`] and a [`SynthConfig`]), changed one
//! setting at a time by `ft_fit_config_set_<setting>` (config_set.rs) and read by every entry
//! point that fits, ranks, monitors or plants (`ft_fit_with`, `ft_rank_with`,
//! `ft_monitor_with`, `ft_synth_write_with`, ...). A new setting is one field of the library's
//! configuration and one setter here; no struct of the C ABI changes.
//!
//! A setting an entry point cannot honour is refused, not ignored: the handle remembers which
//! settings were set, and an entry point that would ignore one of them returns
//! `FT_ERR_INVALID_ARGUMENT` naming it (`Settings::check_for`).

use std::ffi::c_char;

use crate::engine::{Device, Estimator, Method};
use crate::ffi::compat::{fit_config, ft_fit_options};
use crate::ffi::{
    boxed, c_string, free_box, ft_status, guard, out_arg, shared, str_arg, Busy, FfiError, FfiResult, Policed, Shared,
};
use crate::model::{FitConfig, Preparation, Preset, Resample};
use crate::monitor::MonitorConfig;
use crate::synth::SynthConfig;

/// Settings of fits, rankings, monitors and synthetic data, built one setting at a time
/// (`ft_fit_config_new`, `ft_fit_config_set_*`, `ft_fit_config_free`). Setters need exclusive
/// access; entry points that read a config may share it (`FT_ERR_BUSY` otherwise).
pub struct ft_fit_config {
    busy: Busy,
    inner: Settings,
}

impl Policed for ft_fit_config {
    type Inner = Settings;
    const SHARED_READS: bool = true;
    unsafe fn busy_of(p: *const Self) -> *const Busy {
        // SAFETY: `p` is live by the caller's contract; no reference to the handle is made.
        unsafe { std::ptr::addr_of!((*p).busy) }
    }
    unsafe fn inner_of(p: *mut Self) -> *mut Settings {
        // SAFETY: as above.
        unsafe { std::ptr::addr_of_mut!((*p).inner) }
    }
}

/// The fields the `auto` preset derives from the number of probe images.
const SCHEDULE: [&str; 5] = ["max_epochs", "batch_size", "lr", "patience", "reg_steps"];
/// Settings of the FactorTopy trainer and its features' preparation (the ridge baseline has
/// none of them).
const TRAINING: [&str; 17] = [
    "max_epochs", "batch_size", "lr", "weight_decay", "d", "grid", "patience", "reg_steps", "max_steps", "max_seconds",
    "clip_norm", "beta", "reg_lambda", "min_delta", "resample", "layer_units", "store",
];
/// The split shared by both methods.
const SPLIT: [&str; 2] = ["seed", "val_fraction"];
/// How a fit is run and reported.
const ESTIMATE: [&str; 6] = ["method", "device", "weighted", "bootstrap", "bootstrap_level", "permutations"];
/// The monitor's own settings.
const MONITOR: [&str; 5] = ["held_out_fraction", "refit_every", "refit_max_steps", "refit_max_seconds", "forgetting_threshold"];
/// The synthetic generator's settings (its seed is `seed`).
const SYNTH: [&str; 8] =
    ["scenario", "synth_voxels", "synth_layers", "synth_width", "synth_grid", "noise_ceiling", "signal_fraction", "prf_size"];

/// What an entry point does with a config, which decides the settings it honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// `ft_fit_with`: a FactorTopy fit.
    Fit,
    /// `ft_fit_load_with`: scoring a saved encoder (trained already: no training settings).
    Score,
    /// `ft_rank_with`: fits of either method.
    Rank,
    /// `ft_rank_plan_with`, `ft_rank_pair_with`, `ft_rank_grid_with`.
    Grid,
    /// `ft_monitor_with`.
    Monitor,
    /// `ft_monitor_from_encoder_with` (the encoder brings its own preparation).
    MonitorFromEncoder,
    /// `ft_synth_write_with`.
    Synth,
    /// `ft_synth_plant_with` (the features fix the layers and their width).
    Plant,
}

/// The settings an [`ft_fit_config`] holds: the library's configuration types, the preset they
/// started from and the settings set since.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    preset: Preset,
    /// The probe-set size the preset was resolved for; 0: for the data of each entry point.
    n_images: usize,
    pub(crate) estimator: Estimator,
    /// The monitor's own settings; its `fit`, `weighted` and `device` come from `estimator`.
    pub(crate) monitor: MonitorConfig,
    /// The generator's settings; its `seed` comes from `estimator.fit.seed`.
    pub(crate) synth: SynthConfig,
    /// Grids also score every layer with the ridge baseline.
    pub(crate) score_layers: bool,
    /// The settings changed by a setter, by name.
    explicit: Vec<&'static str>,
}

impl Settings {
    /// A preset's settings for a probe set of `n_images` images (0: each entry point's data).
    pub(crate) fn new(preset: Preset, n_images: usize) -> FfiResult<Self> {
        let mut synth = SynthConfig::default();
        if n_images > 0 {
            synth.n_images = n_images;
        }
        let s = Settings {
            preset,
            n_images,
            estimator: Estimator::new(Method::Factortopy, Device::Cpu, preset.config(n_images)),
            monitor: MonitorConfig::default(),
            synth,
            score_layers: false,
            explicit: Vec::new(),
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks every setting: the one validation of each lives with its library type.
    pub(crate) fn validate(&self) -> crate::error::Result<()> {
        self.estimator.fit.validate()?;
        self.estimator.uncertainty.validate()?;
        // The monitor's checks without the device (a device is checked where it is used).
        MonitorConfig { fit: self.estimator.fit.clone(), device: Device::Cpu, ..self.monitor.clone() }.validate()?;
        // A probe-set size of one image is a fine config for a fit (which refuses it with its
        // data); the generator refuses it when it runs.
        let synth = self.synth_config();
        SynthConfig { n_images: synth.n_images.max(2), ..synth }.validate()
    }

    pub(crate) fn is_set(&self, name: &str) -> bool {
        self.explicit.contains(&name)
    }

    pub(crate) fn mark(&mut self, name: &'static str) {
        if !self.is_set(name) {
            self.explicit.push(name);
        }
    }

    /// The fit settings for a probe set of `n_images` images: the `auto` preset's schedule is
    /// resolved for it unless the config was made for a size, or the field was set.
    pub(crate) fn fit_for(&self, n_images: usize) -> FitConfig {
        let mut fit = self.estimator.fit.clone();
        if self.preset == Preset::Auto && self.n_images == 0 {
            let base = Preset::Auto.config(n_images);
            let keep = |name: &str| self.is_set(name);
            if !keep(SCHEDULE[0]) {
                fit.max_epochs = base.max_epochs;
            }
            if !keep(SCHEDULE[1]) {
                fit.batch_size = base.batch_size;
            }
            if !keep(SCHEDULE[2]) {
                fit.lr = base.lr;
            }
            if !keep(SCHEDULE[3]) {
                fit.patience = base.patience;
            }
            if !keep(SCHEDULE[4]) {
                fit.reg_steps = base.reg_steps;
            }
        }
        fit
    }

    /// The estimator for a probe set of `n_images` images.
    pub(crate) fn estimator_for(&self, n_images: usize) -> Estimator {
        Estimator { fit: self.fit_for(n_images), ..self.estimator.clone() }
    }

    /// The monitor settings for a probe set of `n_images` images: the fit settings with the
    /// monitor's held-out fraction, on the config's device.
    pub(crate) fn monitor_for(&self, n_images: usize) -> MonitorConfig {
        let fit = FitConfig { val_fraction: self.monitor.held_out_fraction, ..self.fit_for(n_images) };
        MonitorConfig { fit, weighted: self.estimator.weighted, device: self.estimator.device, ..self.monitor.clone() }
    }

    /// The generator's settings.
    pub(crate) fn synth_config(&self) -> SynthConfig {
        SynthConfig { seed: self.estimator.fit.seed, ..self.synth.clone() }
    }

    /// Refuses a config with a setting that `entry` (used as `what`) would ignore, naming it.
    pub(crate) fn check_for(&self, what: Use, entry: &str) -> FfiResult<()> {
        let ridge = self.estimator.method == Method::Ridge;
        let needs_factortopy = !matches!(what, Use::Rank | Use::Grid | Use::Synth | Use::Plant);
        if ridge && needs_factortopy {
            return Err(FfiError::invalid(format!(
                "{entry}: method `ridge` is not available here (it fits the FactorTopy encoder); rankings take ridge (ft_rank_with)"
            )));
        }
        let honours = |name: &str| -> bool {
            let training = TRAINING.contains(&name);
            match what {
                Use::Fit => training || SPLIT.contains(&name) || ESTIMATE.contains(&name),
                Use::Score => ["method", "device", "weighted", "bootstrap", "bootstrap_level", "permutations"].contains(&name),
                Use::Rank => (training && !ridge) || SPLIT.contains(&name) || ESTIMATE.contains(&name),
                Use::Grid => {
                    (training && !ridge) || SPLIT.contains(&name) || ESTIMATE.contains(&name) || name == "score_layers"
                }
                Use::Monitor => training || ["seed", "method", "device", "weighted"].contains(&name) || MONITOR.contains(&name),
                Use::MonitorFromEncoder => {
                    (training && name != "resample" && name != "layer_units")
                        || ["seed", "method", "device", "weighted"].contains(&name)
                        || MONITOR.contains(&name)
                }
                Use::Synth => name == "seed" || SYNTH.contains(&name),
                Use::Plant => name == "seed" || (SYNTH.contains(&name) && name != "synth_layers" && name != "synth_width"),
            }
        };
        match self.explicit.iter().find(|n| !honours(n)) {
            None => Ok(()),
            Some(n) => Err(FfiError::invalid(format!(
                "{entry}: setting `{n}` does not apply here{}; make a config without it",
                if ridge && TRAINING.contains(n) { " (the ridge baseline has no such setting)" } else { "" }
            ))),
        }
    }

    /// Every setting as JSON (`ft_fit_config_json`).
    fn to_json(&self) -> String {
        let f = &self.estimator.fit;
        let u = &self.estimator.uncertainty;
        let m = &self.monitor;
        let s = &self.synth;
        let finite = |x: f64| if x.is_finite() { serde_json::json!(x) } else { serde_json::Value::Null };
        let head = serde_json::json!({
            "preset": self.preset.name(),
            "n_images": self.n_images,
            "set": self.explicit,
            "method": self.estimator.method.name(),
            "device": self.estimator.device.to_string(),
            "weighted": self.estimator.weighted,
            "bootstrap": u.bootstrap.n_resamples,
            "bootstrap_level": u.bootstrap.level,
            "permutations": u.permutation.n_permutations,
        });
        let fit = serde_json::json!({
            "seed": f.seed,
            "val_fraction": f.val_fraction,
            "max_epochs": f.max_epochs,
            "batch_size": f.batch_size,
            "lr": f.lr,
            "weight_decay": f.weight_decay,
            "d": f.d,
            "grid": f.grid,
            "patience": f.patience,
            "reg_steps": f.reg_steps,
            "max_steps": f.max_steps.unwrap_or(0),
            "max_seconds": f.max_seconds.unwrap_or(0.0),
            "clip_norm": f.clip_norm,
            "beta": f.beta,
            "reg_lambda": f.reg_lambda,
            "min_delta": f.min_delta,
            "resample": f.resample.name(),
            "layer_units": Preparation::of(f).units(),
            "store": f.store.map(|p| p.name()),
        });
        let rest = serde_json::json!({
            "held_out_fraction": m.held_out_fraction,
            "refit_every": m.refit_every,
            "refit_max_steps": m.refit_max_steps,
            "refit_max_seconds": m.refit_max_seconds.unwrap_or(0.0),
            "forgetting_threshold": finite(m.forgetting_threshold),
            "scenario": s.scenario.name(),
            "synth_voxels": s.n_voxels,
            "synth_layers": s.n_layers,
            "synth_width": s.width,
            "synth_grid": s.grid,
            "noise_ceiling": s.noise_ceiling,
            "signal_fraction": s.signal_fraction,
            "prf_size": s.prf_size,
            "score_layers": self.score_layers,
        });
        let mut all = serde_json::Map::new();
        for part in [head, fit, rest] {
            if let serde_json::Value::Object(m) = part {
                all.extend(m);
            }
        }
        serde_json::Value::Object(all).to_string()
    }
}

/// A config argument: the handle's settings, or the defaults (`ft_fit_config_new(NULL, 0)`)
/// for NULL.
pub(crate) enum SettingsArg<'a> {
    Handle(Shared<'a, ft_fit_config>),
    Default(Box<Settings>),
}

impl std::ops::Deref for SettingsArg<'_> {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        match self {
            SettingsArg::Handle(h) => h,
            SettingsArg::Default(s) => s,
        }
    }
}

/// The config of an entry point (NULL: the defaults), checked for settings `what` would ignore.
pub(crate) fn config_arg<'a>(cfg: *const ft_fit_config, what: Use, entry: &str) -> FfiResult<SettingsArg<'a>> {
    let s = if cfg.is_null() {
        SettingsArg::Default(Box::new(Settings::new(Preset::Auto, 0)?))
    } else {
        SettingsArg::Handle(shared(cfg, "cfg")?)
    };
    s.check_for(what, entry)?;
    Ok(s)
}

/// Makes a config with the settings of the preset `preset` (`"auto"`, `"design"` or `"fast"`;
/// NULL: `"auto"`) for a probe set of `n_images` images. With `"auto"` and `n_images` 0 the
/// schedule (max_epochs, batch_size, lr, patience, reg_steps) follows the number of images of
/// the data each entry point receives, as NULL options did; fields set explicitly are kept.
/// Change settings with `ft_fit_config_set_*`; free with `ft_fit_config_free`.
///
/// # Safety
/// `preset` is NULL or a NUL-terminated string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_new(preset: *const c_char, n_images: usize, out: *mut *mut ft_fit_config) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        let preset = if preset.is_null() {
            Preset::Auto
        } else {
            // SAFETY: caller's contract.
            let name = unsafe { str_arg(preset, "preset") }?;
            name.parse::<Preset>().map_err(|_| {
                FfiError::invalid(format!("unknown preset `{name}` (expected \"auto\", \"design\" or \"fast\")"))
            })?
        };
        let s = Settings::new(preset, n_images)?;
        *out = boxed(ft_fit_config { busy: Busy::default(), inner: s });
        Ok(())
    })
}

/// Frees a config (NULL is a no-op). Handles made with it do not keep it.
///
/// # Safety
/// `cfg` is NULL or a live handle; it is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_free(cfg: *mut ft_fit_config) {
    // SAFETY: caller's contract.
    unsafe { free_box(cfg) }
}

/// Every setting of a config as a JSON object (one member per setter, named as the setter,
/// plus `preset`, `n_images` and `set`, the settings changed by a setter); free `*out` with
/// `ft_string_free`. Before a schedule that follows the data is resolved, its fields hold the
/// schedule for `n_images`.
///
/// # Safety
/// `cfg` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_config_json(cfg: *const ft_fit_config, out: *mut *mut c_char) -> ft_status {
    guard(|| {
        let c = shared(cfg, "cfg")?;
        *out_arg(out, "out")? = c_string(c.to_json());
        Ok(())
    })
}

/// Changes one setting of `cfg`: `change` edits a copy, which is validated as a whole; on error
/// the config is unchanged and the message names the setter.
pub(crate) fn set(
    cfg: *mut ft_fit_config,
    name: &'static str,
    change: impl FnOnce(&mut Settings) -> FfiResult<()>,
) -> ft_status {
    guard(|| {
        let mut c = crate::ffi::exclusive(cfg, "cfg")?;
        let mut next = c.clone();
        change(&mut next)
            .and_then(|()| next.validate().map_err(FfiError::from))
            .map_err(|e| FfiError::new(e.status, format!("ft_fit_config_set_{name}: {}", e.msg)))?;
        next.mark(name);
        *c = next;
        Ok(())
    })
}

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

/// The estimator of `ft_fit_options` (`weighted` honoured) with the features' preparation
/// chosen, as the entry points taking that struct resolve it.
pub(crate) fn fit_estimator(method: Method, device: Device, o: &ft_fit_options, prep: Preparation) -> FfiResult<Estimator> {
    let cfg = prep.apply(fit_config(o)?);
    Ok(Estimator { weighted: o.weighted != 0, ..Estimator::new(method, device, cfg) })
}

/// The resampling named by `resample`: `"bilinear"` (DESIGN §3.1), `"area"` (each grid cell
/// the exact average of the pixels it covers) or `"auto"` (area where a map shrinks, bilinear
/// where it grows); NULL: `"auto"`.
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

/// The preparation named by `resample` in the older `_resampled` entry points: `METHOD[,UNITS]`,
/// the resampling as [`resample_arg`] reads it, then optionally the layers' units, `common` or
/// `raw`. NULL: `"auto,common"`.
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
