//! Rankings: the ranking method as the C ABI names it, and grids of networks × subjects by file.
//!
//! A ranking over several subjects works on files, not handles: each pair of a grid can then be
//! fitted in another process or on another machine (`ft_rank_pair_with` there, on shared
//! storage), and the outcomes combined here (`ft_rank_combine`).

use std::ffi::c_char;
use std::path::PathBuf;

use crate::engine::Method;
use crate::ffi::{c_string, ft_status, guard, out_arg, str_arg, FfiError, FfiResult};
use crate::rank::grid::MAX_GRID_SIDE;
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
pub(crate) unsafe fn path_list(paths: *const *const c_char, n: usize, name: &str) -> FfiResult<Vec<PathBuf>> {
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
pub(crate) unsafe fn opt_path(p: *const c_char, name: &str) -> FfiResult<Option<PathBuf>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: caller's contract.
    Ok(Some(PathBuf::from(unsafe { str_arg(p, name) }?)))
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
