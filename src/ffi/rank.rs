//! Rankings: the ranking method as the C ABI names it, and grids of networks × subjects by file.
//!
//! A ranking over several subjects works on files, not handles: each pair of a grid can then be
//! fitted in another process or on another machine (`ft_rank_pair_with` there, on shared
//! storage), and the outcomes combined here (`ft_rank_combine`).

use std::ffi::c_char;
use std::path::PathBuf;

use crate::data::BrainHeader;
use crate::engine::{Estimator, Method};
use crate::ffi::brain::ft_brain;
use crate::ffi::config::{config_arg, ft_fit_config, Use};
use crate::ffi::features::ft_features;
use crate::ffi::{c_string, ft_status, guard, handle, out_arg, shared, str_arg, FfiError, FfiResult};
use crate::rank::grid::{Grid, Serial, MAX_GRID_SIDE};
use crate::rank::{rank_with_progress, RankConfig};
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

/// Fits every network in `networks[0 .. n_networks)` against `brain` with the settings of
/// `cfg` (NULL: defaults; method `factortopy` or `ridge`, the same split and seed for every
/// network) and ranks them by hierarchy slope (ties: Spearman ρ, then input order). `*out` is
/// the ranking as JSON: `method`, `level`, `n_resamples`, `subject`, `roi_names` and `rows`
/// (best first; each with `rank`, `index` into `networks`, `name`, `slope`, `b0`, `b1`,
/// `spearman`, `r2_mean`, `r2_median`, `fit_seconds`, `roi_depth`, `slope_interval` (bootstrap
/// interval), `p_slope` (permutation p-value) and `vs_next` (paired bootstrap test of the slope
/// difference with the next row)); `slope`, `b0`, `b1` and `spearman` are `null` when
/// undefined, and such rows rank last. Free it with `ft_string_free`. With method `ridge`, a
/// FactorTopy training setting in `cfg` is `FT_ERR_INVALID_ARGUMENT` naming it.
///
/// # Safety
/// `cfg` is NULL or a live config; `networks` is valid for `n_networks` reads of live handles;
/// `brain` is live; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_with(
    cfg: *const ft_fit_config,
    networks: *const *const ft_features,
    n_networks: usize,
    brain: *const ft_brain,
    out: *mut *mut c_char,
) -> ft_status {
    guard(|| {
        let s = config_arg(cfg, Use::Rank, "ft_rank_with")?;
        // SAFETY: forwarded caller's contract.
        unsafe { rank_networks(networks, n_networks, brain, |n| Ok(s.estimator_for(n)), out) }
    })
}

/// The body of every ranking of handles: `estimator` resolves the settings for the brain's
/// number of images once the handles are checked.
///
/// # Safety
/// As `ft_rank_with`.
pub(crate) unsafe fn rank_networks(
    networks: *const *const ft_features,
    n_networks: usize,
    brain: *const ft_brain,
    estimator: impl FnOnce(usize) -> FfiResult<Estimator>,
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
    let cfg = RankConfig { estimator: estimator(b.inner.n_images())? };
    cfg.estimator.device.check_available()?;
    // SAFETY: non-NULL and valid for `n_networks` reads by the caller's contract.
    let ptrs = unsafe { crate::ffi::copy_arg(networks, n_networks, "networks (n_networks)", crate::data::limits::MAX_ELEMENTS) }?;
    // Every network stays borrowed (its flag held) until the ranking is done.
    let mut held = crate::data::limits::try_with_capacity("networks", n_networks)?;
    for (i, &p) in ptrs.iter().enumerate() {
        held.push(shared(p, &format!("networks[{i}]"))?);
    }
    let nets: Vec<&dyn crate::data::FeatureSource> = held.iter().map(|f| f.source()).collect();
    for (i, f) in nets.iter().enumerate() {
        f.check_images(&format!("networks[{i}]"), None)?;
    }
    let ranking = rank_with_progress(&b.inner, &nets, &cfg, None, None)?;
    *out = c_string(ranking.to_json());
    Ok(())
}

/// Resolves a grid's estimator for its first brain's number of images.
pub(crate) type GridEstimator<'a> = &'a dyn Fn(usize) -> FfiResult<Estimator>;

/// The grid of `networks` × `brains`: `estimator` resolves the settings for the first brain's
/// number of images (read from its header); the device is not checked for use (a grid can be
/// planned where its pairs will not run).
fn grid_of(networks: Vec<PathBuf>, brains: Vec<PathBuf>, estimator: GridEstimator, with_layers: bool) -> FfiResult<Grid> {
    let first = brains.first().ok_or_else(|| FfiError::invalid("a ranking needs at least one brain"))?;
    let n_images = BrainHeader::read(first)?.n_images;
    let estimator = estimator(n_images)?;
    crate::data::limits::held_out("val_fraction", n_images, estimator.fit.val_fraction)?;
    Ok(Grid { networks, brains, estimator, with_layers })
}

/// The grid of the plan and grid entry points, and the store of `out_dir` (NULL: none).
///
/// # Safety
/// As `ft_rank_plan_with`.
unsafe fn grid_and_store(
    networks: *const *const c_char,
    n_networks: usize,
    brains: *const *const c_char,
    n_brains: usize,
    estimator: GridEstimator,
    with_layers: bool,
    out_dir: *const c_char,
) -> FfiResult<(Grid, Option<PairStore>)> {
    // SAFETY: forwarded caller's contract.
    let (networks, brains) = unsafe { (path_list(networks, n_networks, "networks")?, path_list(brains, n_brains, "brains")?) };
    let grid = grid_of(networks, brains, estimator, with_layers)?;
    // SAFETY: caller's contract.
    let store = unsafe { opt_path(out_dir, "out_dir") }?.map(|d| PairStore::new(&d));
    Ok((grid, store))
}

/// The body of the plan entry points.
///
/// # Safety
/// As `ft_rank_plan_with`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn rank_plan(
    networks: *const *const c_char,
    n_networks: usize,
    brains: *const *const c_char,
    n_brains: usize,
    estimator: GridEstimator,
    with_layers: bool,
    out_dir: *const c_char,
    out: *mut *mut c_char,
) -> FfiResult<()> {
    let out = out_arg(out, "out")?;
    // SAFETY: forwarded caller's contract.
    let (grid, store) = unsafe { grid_and_store(networks, n_networks, brains, n_brains, estimator, with_layers, out_dir) }?;
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
}

/// The body of the pair entry points.
///
/// # Safety
/// As `ft_rank_pair_with`.
pub(crate) unsafe fn rank_pair(
    network_path: *const c_char,
    brain_path: *const c_char,
    network: usize,
    subject: usize,
    estimator: GridEstimator,
    with_layers: bool,
    out: *mut *mut c_char,
) -> FfiResult<()> {
    let out = out_arg(out, "out")?;
    // SAFETY: caller's contract.
    let (f, b) = unsafe { (str_arg(network_path, "network_path")?, str_arg(brain_path, "brain_path")?) };
    let grid = grid_of(vec![f.into()], vec![b.into()], estimator, with_layers)?;
    grid.estimator.device.check_available()?;
    let plan = grid.plan()?;
    let mut outcome = grid.fit_one(&plan, &plan.jobs[0], None)?;
    outcome.network = network;
    outcome.subject = subject;
    *out = c_string(outcome.to_json());
    Ok(())
}

/// The body of the whole-grid entry points.
///
/// # Safety
/// As `ft_rank_grid_with`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn rank_grid(
    networks: *const *const c_char,
    n_networks: usize,
    brains: *const *const c_char,
    n_brains: usize,
    estimator: GridEstimator,
    with_layers: bool,
    out_dir: *const c_char,
    out: *mut *mut c_char,
) -> FfiResult<()> {
    let out = out_arg(out, "out")?;
    // SAFETY: forwarded caller's contract.
    let (grid, store) = unsafe { grid_and_store(networks, n_networks, brains, n_brains, estimator, with_layers, out_dir) }?;
    grid.estimator.device.check_available()?;
    let plan = grid.plan()?;
    let mut exec = Serial { on_start: None, on_event: None };
    let outcomes = grid.run(&plan, store.as_ref(), &mut exec, &mut |_| {})?;
    *out = c_string(combine(&outcomes)?.to_json());
    Ok(())
}

/// Plans a grid of `networks` (features files) × `brains` (brain files, one per subject, the
/// same images) with the settings of `cfg` (NULL: defaults; the schedule follows the first
/// brain's number of images): checks the files' headers and returns, as JSON in `*out` (free
/// with `ft_string_free`), `subjects` (names) and `jobs`, one per pair: `network` and `subject`
/// (indices into the lists), `digest` (of both files' contents and the settings) and `done`
/// (whether `out_dir`, NULL for none, already holds that pair's outcome). The device is checked
/// by name only. `ft_fit_config_set_score_layers` also scores every layer with the ridge
/// baseline.
///
/// # Safety
/// `cfg` is NULL or a live config; `networks` and `brains` are valid for `n_networks` /
/// `n_brains` reads of NUL-terminated strings; `out_dir` is NULL or NUL-terminated; `out` is
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_plan_with(
    cfg: *const ft_fit_config,
    networks: *const *const c_char,
    n_networks: usize,
    brains: *const *const c_char,
    n_brains: usize,
    out_dir: *const c_char,
    out: *mut *mut c_char,
) -> ft_status {
    guard(|| {
        let s = config_arg(cfg, Use::Grid, "ft_rank_plan_with")?;
        let est = |n| Ok(s.estimator_for(n));
        // SAFETY: forwarded caller's contract.
        unsafe { rank_plan(networks, n_networks, brains, n_brains, &est, s.score_layers, out_dir, out) }
    })
}

/// Fits one pair of a grid: the features file `network_path` against the brain file
/// `brain_path`, recorded as network `network` × subject `subject` of the grid. `*out` is the
/// pair's outcome as JSON (free with `ft_string_free`), for `ft_rank_store` and
/// `ft_rank_combine`. Settings as `ft_rank_plan_with` (the same settings give the same digest).
///
/// # Safety
/// `cfg` is NULL or a live config; `network_path`, `brain_path` are NUL-terminated; `out` is
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_pair_with(
    cfg: *const ft_fit_config,
    network_path: *const c_char,
    brain_path: *const c_char,
    network: usize,
    subject: usize,
    out: *mut *mut c_char,
) -> ft_status {
    guard(|| {
        let s = config_arg(cfg, Use::Grid, "ft_rank_pair_with")?;
        let est = |n| Ok(s.estimator_for(n));
        // SAFETY: forwarded caller's contract.
        unsafe { rank_pair(network_path, brain_path, network, subject, &est, s.score_layers, out) }
    })
}

/// Runs a whole grid in this process (pairs one after another, each brain loaded once) and
/// returns the ranking as `ft_rank_combine` does. With `out_dir` (NULL: none), each finished
/// pair is stored there as it finishes and pairs already stored are not fitted again. When
/// pairs fail, the others still run (and are stored); the status is the failure's and
/// `ft_last_error()` names every failed pair.
///
/// # Safety
/// As `ft_rank_plan_with`; the config's device must be usable.
#[no_mangle]
pub unsafe extern "C" fn ft_rank_grid_with(
    cfg: *const ft_fit_config,
    networks: *const *const c_char,
    n_networks: usize,
    brains: *const *const c_char,
    n_brains: usize,
    out_dir: *const c_char,
    out: *mut *mut c_char,
) -> ft_status {
    guard(|| {
        let s = config_arg(cfg, Use::Grid, "ft_rank_grid_with")?;
        let est = |n| Ok(s.estimator_for(n));
        // SAFETY: forwarded caller's contract.
        unsafe { rank_grid(networks, n_networks, brains, n_brains, &est, s.score_layers, out_dir, out) }
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
