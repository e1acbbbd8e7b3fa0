//! Ranking candidate networks against one brain (the `rank` command's job) through the C ABI.

use std::ffi::c_char;

use crate::data::Features;
use crate::ffi::api::{fit_config, fit_options_default, ft_brain, ft_features, ft_fit_options};
use crate::ffi::{c_string, ft_status, guard, handle, out_arg, FfiError};
use crate::rank::{rank_with_progress, RankConfig, RankMethod};

/// How `ft_rank` fits each network.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ft_rank_method {
    /// The FactorTopy encoder (DESIGN §3).
    FT_RANK_FACTORTOPY = 0,
    /// The layer-wise ridge baseline: a fast estimate with a one-hot layer choice.
    FT_RANK_RIDGE = 1,
}

/// Fits every network in `networks[0 .. n_networks)` against `brain` with the same split and
/// seed and ranks them by hierarchy slope (ties: Spearman ρ, then input order). `*out` is the
/// ranking as JSON: `method`, `level`, `n_resamples`, `subject`, `roi_names` and `rows` (best
/// first; each with `rank`, `index` into `networks`, `name`, `slope`, `b0`, `b1`, `spearman`,
/// `r2_mean`, `r2_median`, `fit_seconds`, `roi_depth`, `slope_interval` (95 % bootstrap
/// interval, 1000 resamples), `p_slope` (permutation p-value) and `vs_next` (paired bootstrap
/// test of the slope difference with the next row)). Free it with `ft_string_free`. `options`
/// NULL: defaults (`weighted` is honoured); `method` is an `ft_rank_method` value.
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
    guard(|| {
        let b = handle(brain, "brain")?;
        let out = out_arg(out, "out")?;
        if networks.is_null() {
            return Err(FfiError::null("networks"));
        }
        if n_networks == 0 {
            return Err(FfiError::invalid("rank needs at least one network (n_networks is 0)"));
        }
        // SAFETY: non-NULL and valid for `n_networks` reads by the caller's contract.
        let ptrs = unsafe { std::slice::from_raw_parts(networks, n_networks) };
        let mut nets: Vec<&Features> = Vec::with_capacity(n_networks);
        for (i, &p) in ptrs.iter().enumerate() {
            nets.push(&handle(p, &format!("networks[{i}]"))?.inner);
        }
        let method = match method {
            0 => RankMethod::Factortopy,
            1 => RankMethod::Ridge,
            m => return Err(FfiError::invalid(format!("unknown rank method {m} (expected 0 factortopy or 1 ridge)"))),
        };
        // SAFETY: NULL or valid for reads by the caller's contract.
        let o = unsafe { options.as_ref() }.copied().unwrap_or_else(fit_options_default);
        let cfg = RankConfig { fit: fit_config(&o)?, method, weighted: o.weighted != 0, ..RankConfig::default() };
        for (i, f) in nets.iter().enumerate() {
            f.validate(&format!("networks[{i}]"))?;
        }
        let ranking = rank_with_progress(&b.inner, &nets, &cfg, None)?;
        *out = c_string(ranking.to_json());
        Ok(())
    })
}
