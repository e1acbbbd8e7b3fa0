//! Drawing a saved fit's pictures (the `plot` command's job) through the C ABI.

use std::ffi::c_char;
use std::path::Path;

use crate::cluster::DEFAULT_K;
use crate::ffi::brain::ft_brain;
use crate::ffi::{c_string, ft_status, guard, handle, out_arg, shared, str_arg, FfiError};
use crate::plot::figures::{plot_fit_dir, Picture, PlotOptions};

/// An optional string argument: NULL or "" is `None`.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn opt_str<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, FfiError> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, NUL-terminated by the caller's contract.
    let s = unsafe { str_arg(p, name) }?;
    Ok((!s.is_empty()).then_some(s))
}

/// Draws the pictures of a fit saved by `factortopy fit` in `fit_dir` (report.json,
/// selectors.safetensors, and encoder.safetensors for the channel map) on `brain`, the brain
/// it was fitted on. `maps`: comma-separated names among layer, space, scale, r2, channels,
/// profile, overview, or all; NULL or "" for every picture the fit has. `out_dir`: NULL for
/// `fit_dir`. `width`, `height`: size of each picture (0, 0 for 800×600; the overview's panels
/// are three quarters of it). `groups`: number of channel groups (0 for 20). `*out` is a JSON
/// list of `{"map": name, "path": file}` in drawing order; free it with `ft_string_free`.
///
/// # Safety
/// `fit_dir` is a NUL-terminated string; `maps` and `out_dir` are NULL or NUL-terminated
/// strings; `brain` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_plot(
    fit_dir: *const c_char,
    brain: *const ft_brain,
    maps: *const c_char,
    out_dir: *const c_char,
    width: u32,
    height: u32,
    groups: u32,
    out: *mut *mut c_char,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let fit_dir = unsafe { str_arg(fit_dir, "fit_dir") }?;
        let b = handle(brain, "brain")?;
        // SAFETY: caller's contract.
        let maps = unsafe { opt_str(maps, "maps") }?;
        // SAFETY: caller's contract.
        let out_dir = unsafe { opt_str(out_dir, "out_dir") }?;
        let out = out_arg(out, "out")?;
        let defaults = PlotOptions::default();
        let size = match (width, height) {
            (0, 0) => defaults.size,
            (0, _) | (_, 0) => {
                return Err(FfiError::invalid(format!("picture size {width}x{height}: give both sides, or 0 and 0 for the default")))
            }
            (w, h) => (w as usize, h as usize),
        };
        let opts = PlotOptions {
            pictures: maps.map(Picture::parse_list).transpose()?,
            size,
            groups: if groups == 0 { DEFAULT_K } else { groups as usize },
            ..defaults
        };
        let written = plot_fit_dir(Path::new(fit_dir), &b.inner, out_dir.map(Path::new), &opts)?;
        let list: Vec<serde_json::Value> = written
            .iter()
            .map(|(p, path)| serde_json::json!({ "map": p.name(), "path": path.display().to_string() }))
            .collect();
        *out = c_string(serde_json::Value::Array(list).to_string());
        Ok(())
    })
}

/// Scores the encoder saved at `encoder_path` (a `factortopy fit` encoder or a converted PyTorch
/// checkpoint) on `features` and `brain` and writes the directory `factortopy fit` writes into
/// `out_dir`: report.json, encoder.safetensors, selectors.safetensors and, when `plots` is
/// non-zero, every picture. `ft_plot` can redraw from it later.
///
/// # Safety
/// `encoder_path` and `out_dir` are NUL-terminated strings; handles are live.
#[no_mangle]
pub unsafe extern "C" fn ft_score_write_dir(
    encoder_path: *const c_char,
    features: *const crate::ffi::features::ft_features,
    brain: *const ft_brain,
    weighted: i32,
    plots: i32,
    out_dir: *const c_char,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let enc_path = unsafe { str_arg(encoder_path, "encoder_path") }?;
        let f = shared(features, "features")?;
        let b = handle(brain, "brain")?;
        // SAFETY: caller's contract.
        let dir = unsafe { str_arg(out_dir, "out_dir") }?;
        f.source().check_images("features", None)?;
        let (enc, record) = crate::model::encoder_file::load_encoder(Path::new(enc_path))?;
        let opts = PlotOptions::default();
        let est = crate::engine::Estimator { weighted: weighted != 0, ..crate::engine::Estimator::default() };
        crate::pipeline::write_score_outputs(Path::new(dir), &est, &enc, &record, f.source(), &b.inner, (plots != 0).then_some(&opts))?;
        Ok(())
    })
}
