//! Rankings through the C ABI: the ranking method as the C ABI names it (`ft_rank` and
//! `ft_rank_on` are in `engine.rs`), and grids of networks × subjects by file.

use std::ffi::c_char;
use std::path::PathBuf;

use crate::data::BrainHeader;
use crate::engine::{Device, Method};
use crate::ffi::api::{fit_options_for_images, ft_fit_options};
use crate::ffi::engine::{fit_estimator, preparation_arg};
use crate::ffi::{c_string, ft_status, guard, out_arg, str_arg, FfiError, FfiResult};
use crate::rank::grid::{Grid, Serial, MAX_GRID_SIDE};
use crate::rank::pair::{PairOutcome, PairStore};
use crate::rank::subjects::combine;

/// How `ft_rank` fits each network.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ft_rank_method {
    /// The FactorTopy encoder (DESIGN §3).
    FT_RANK_FACTORTOPY = 0,
    /// The layer-wise ridge baseline: a fast estimate with a one-hot layer choice.
    FT_RANK_RIDGE = 1,
}

/// The engine's method for an `ft_rank_method` value.
pub(crate) fn method_of(method: i32) -> FfiResult<Method> {
    match method {
        m if m == ft_rank_method::FT_RANK_FACTORTOPY as i32 => Ok(Method::Factortopy),
        m if m == ft_rank_method::FT_RANK_RIDGE as i32 => Ok(Method::Ridge),
        m => Err(FfiError::invalid(format!("unknown rank method {m} (expected 0 factortopy or 1 ridge)"))),
    }
}


// ----- Grids of networks × subjects, by file --------------------------------------------------
//
// A ranking over several subjects works on files, not handles: each pair of a grid can then be
// fitted in another process or on another machine (`ft_rank_pair` there, on shared storage),
// and the outcomes combined here (`ft_rank_combine`). `ft_rank_grid` runs a whole grid in this
// process.

/// A list of `n` NUL-terminated paths.
///
/// # Safety
/// `paths` is NULL or valid for `n` reads of NUL-terminated strings.
unsafe fn path_list(paths: *const *const c_char, n: usize, name: &str) -> FfiResult<Vec<PathBuf>> {
    if paths.is_null() {
        return Err(FfiError::null(name));
    }
    if n == 0 || n > MAX_GRID_SIDE {
        return Err(FfiError::invalid(format!("`{name}` lists {n} files; expected 1 to {MAX_GRID_SIDE}")));
    }
    // SAFETY: non-NULL and valid for `n` reads by the caller's contract.
    let ptrs = unsafe { std::slice::from_raw_parts(paths, n) };
    ptrs.iter()
        .enumerate()
        // SAFETY: each entry is NULL or NUL-terminated by the caller's contract.
        .map(|(i, &p)| unsafe { str_arg(p, &format!("{name}[{i}]")) }.map(PathBuf::from))
        .collect()
}

/// An optional NUL-terminated path (NULL: none).
///
/// # Safety
/// `p` is NULL or NUL-terminated.
unsafe fn opt_path(p: *const c_char, name: &str) -> FfiResult<Option<PathBuf>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: caller's contract.
    Ok(Some(PathBuf::from(unsafe { str_arg(p, name) }?)))
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

/// Saves a pair's outcome (JSON from `ft_rank_pair`) into `out_dir`'s store, atomically, so a
/// later `ft_rank_plan` with the same `out_dir` marks the pair done.
///
/// # Safety
/// `out_dir` and `outcome` are NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_store(out_dir: *const c_char, outcome: *const c_char) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let (dir, text) = unsafe { (str_arg(out_dir, "out_dir")?, str_arg(outcome, "outcome")?) };
        let p = PairOutcome::from_json(text, "outcome")?;
        PairStore::new(std::path::Path::new(dir)).save(&p)?;
        Ok(())
    })
}

/// The stored outcome with `digest` from `out_dir`'s store, recorded as network `network` ×
/// subject `subject` (identical inputs share one stored outcome). `*out` is its JSON (free with
/// `ft_string_free`); `FT_ERR_IO` when the store has no readable outcome with that digest.
///
/// # Safety
/// `out_dir` and `digest` are NUL-terminated; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_load(
    out_dir: *const c_char,
    digest: *const c_char,
    network: usize,
    subject: usize,
    out: *mut *mut c_char,
) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        // SAFETY: caller's contract.
        let (dir, digest) = unsafe { (str_arg(out_dir, "out_dir")?, str_arg(digest, "digest")?) };
        if digest.len() != 64 || !digest.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(FfiError::invalid(format!("digest `{digest}` is not 64 hexadecimal digits")));
        }
        let store = PairStore::new(std::path::Path::new(dir));
        let mut p = store.load(digest).ok_or_else(|| {
            FfiError::new(ft_status::FT_ERR_IO, format!("{}: no stored outcome", store.path(digest).display()))
        })?;
        p.network = network;
        p.subject = subject;
        *out = c_string(p.to_json());
        Ok(())
    })
}

/// Combines a complete grid's outcomes (JSON from `ft_rank_pair` or `ft_rank_load`, every
/// network × subject once) into the ranking, as JSON in `*out` (free with `ft_string_free`):
/// with one subject the layout of `ft_rank`; with several, `subjects` and `rows` each with
/// `across` (mean over subjects and t-interval of slope, spearman, b1, noise-normalised
/// accuracy), `vs_next` (paired t-test over subjects) and `subjects` (the network's row in each
/// subject's own ranking).
///
/// # Safety
/// `outcomes` is valid for `n` reads of NUL-terminated strings; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_combine(outcomes: *const *const c_char, n: usize, out: *mut *mut c_char) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        if outcomes.is_null() {
            return Err(FfiError::null("outcomes"));
        }
        if n == 0 || n > MAX_GRID_SIDE * MAX_GRID_SIDE {
            return Err(FfiError::invalid(format!("{n} outcomes; a grid has at least one")));
        }
        // SAFETY: non-NULL and valid for `n` reads by the caller's contract.
        let ptrs = unsafe { std::slice::from_raw_parts(outcomes, n) };
        let mut all = Vec::with_capacity(n);
        for (i, &p) in ptrs.iter().enumerate() {
            let name = format!("outcomes[{i}]");
            // SAFETY: NULL or NUL-terminated by the caller's contract.
            let text = unsafe { str_arg(p, &name) }?;
            all.push(PairOutcome::from_json(text, &name)?);
        }
        *out = c_string(combine(&all)?.to_json());
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

/// What a brain file's header says, without reading its values: `*out` is JSON with
/// `n_images`, `n_voxels` and `subject` (`null` when the file names none); free it with
/// `ft_string_free`. For planning a grid (the schedule follows the number of images).
///
/// # Safety
/// `path` is NUL-terminated; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_brain_file_header(path: *const c_char, out: *mut *mut c_char) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        let h = BrainHeader::read(std::path::Path::new(path))?;
        *out = c_string(
            serde_json::json!({ "n_images": h.n_images, "n_voxels": h.n_voxels, "subject": h.subject }).to_string(),
        );
        Ok(())
    })
}
