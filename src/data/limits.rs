//! The documented limits on sizes that come from outside the library (file headers and metadata,
//! command-line flags, C ABI option structs and tensor views), and the one place they are
//! checked.
//!
//! factortopy runs inside other people's training processes, where an aborted allocation kills
//! the user's run. Rust aborts the process when an allocation fails and panics on a capacity
//! overflow, so every size a user can choose is checked here *before* memory is asked for:
//! either against a limit (a size the model cannot sensibly use) or with a fallible allocation
//! ([`try_zeroed`], [`try_with_capacity`]) whose failure is [`Error::Memory`]. docs/limits.md
//! lists the same numbers.

use crate::error::{Error, Result};

/// Most elements in one array built from input (features, responses, an encoder tensor, a
/// synthetic data set, a copied C tensor): 2³¹, i.e. 8 GiB of f32. Larger inputs are refused
/// before anything is allocated.
pub const MAX_ELEMENTS: usize = 1 << 31;
/// Largest bottleneck width `D` (`--dim`, encoder metadata `d`; DESIGN's default is 128).
pub const MAX_D: usize = 8192;
/// Largest local grid `G` (`--grid`, encoder metadata `grid`; a G×G map per layer; default 8).
pub const MAX_GRID: usize = 256;
/// Most network layers (features files, `synth --layers`, encoder `widths`).
pub const MAX_LAYERS: usize = 4096;
/// Most ridge penalties (`--alphas`).
pub const MAX_ALPHAS: usize = 1000;
/// Largest input file read into memory: 64 GiB. Non-regular files (`/dev/zero`, FIFOs,
/// directories) are refused whatever their size.
pub const MAX_FILE_BYTES: u64 = 64 << 30;
/// Largest mini-batch (`--batch-size`, `batch_size`).
pub const MAX_BATCH: usize = 65536;
/// Most refits over seeds (`fit --seeds`): each is a whole fit, and bias correction runs four
/// per seed.
pub const MAX_SEEDS: usize = 1000;
/// Most epochs (`--epochs`, `max_epochs`) and most epochs of patience (`--patience`).
pub const MAX_EPOCHS: usize = 100_000;
/// Most optimiser steps in one step budget (`--refit-steps`, `refit_max_steps`, `max_steps`).
pub const MAX_STEPS: usize = 100_000_000;
/// Most bootstrap resamples (`--bootstrap`, `n_resamples`; default 1000). Every resample keeps
/// a row of statistics, so this also bounds that table.
pub const MAX_BOOTSTRAP: usize = 100_000;
/// Most random permutations of the hierarchy test (`--permutations`, `n_permutations`; default
/// 10 000).
pub const MAX_PERMUTATIONS: usize = 1_000_000;
/// Smallest noise ceiling of synthetic data (`synth --noise-ceiling`): a signal voxel's noise has
/// standard deviation √((1 − nc)/nc), 1000 here, so the responses stay finite in f32 however
/// many images there are.
pub const MIN_NOISE_CEILING: f64 = 1e-6;
/// Fewest held-out (validation) images a `val_fraction` may leave: `round(N · val_fraction)`
/// below this is refused rather than quietly raised, so the images a report is scored on are
/// the ones asked for.
pub const MIN_HELD_OUT: usize = 2;
/// Fewest training images a `val_fraction` may leave.
pub const MIN_TRAIN: usize = 2;

/// Element count of `shape`, refused when it overflows or exceeds [`MAX_ELEMENTS`]. `what`
/// names the array in the message.
pub fn elements(what: &str, shape: &[usize]) -> Result<usize> {
    match shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(n) if n <= MAX_ELEMENTS => Ok(n),
        _ => Err(Error::invalid_arg(what, format!(
            "{what} of shape {shape:?} has more than {MAX_ELEMENTS} elements (the limit on one array)"
        ))),
    }
}

/// A size chosen by the user: refused unless it is in `1..=max`. `what` names the flag or
/// field as the user wrote it.
pub fn positive_at_most(what: &str, value: usize, max: usize) -> Result<usize> {
    if value == 0 || value > max {
        return Err(Error::invalid_arg(what, format!("{what} must be between 1 and {max}, got {value}")));
    }
    Ok(value)
}

/// A count the user chose where 0 is allowed (it switches something off): refused above `max`.
pub fn at_most(what: &str, value: usize, max: usize) -> Result<usize> {
    if value > max {
        return Err(Error::invalid_arg(what, format!("{what} must be at most {max}, got {value}")));
    }
    Ok(value)
}

/// A fraction of the images: finite and strictly between 0 and 1 (NaN is refused).
pub fn fraction(what: &str, x: f64) -> Result<f64> {
    if x.is_finite() && x > 0.0 && x < 1.0 {
        Ok(x)
    } else {
        Err(Error::invalid_arg(what, format!("{what} must be in (0, 1), got {x}")))
    }
}

/// Held-out images `round(n · frac)` of `n`, checked: `frac` a [`fraction`], at least
/// [`MIN_HELD_OUT`] held out and [`MIN_TRAIN`] left to train on.
pub fn held_out(what: &str, n: usize, frac: f64) -> Result<usize> {
    fraction(what, frac)?;
    let n_val = (n as f64 * frac).round() as usize;
    if n_val < MIN_HELD_OUT {
        return Err(Error::invalid_arg(what, format!(
            "{what} {frac} of {n} images holds out {n_val}; at least {MIN_HELD_OUT} held-out images are needed \
             (raise {what} or add images)"
        )));
    }
    if n - n_val.min(n) < MIN_TRAIN {
        return Err(Error::invalid_arg(what, format!(
            "{what} {frac} of {n} images leaves {} to train on; at least {MIN_TRAIN} are needed",
            n - n_val.min(n)
        )));
    }
    Ok(n_val)
}

/// A vector of `n` copies of `fill`, allocated fallibly: an allocation the system cannot
/// satisfy is [`Error::Memory`] instead of an abort. `n` is also held to [`MAX_ELEMENTS`].
pub fn try_filled<T: Clone>(what: &str, n: usize, fill: T) -> Result<Vec<T>> {
    let mut v = try_with_capacity(what, n)?;
    v.resize(n, fill);
    Ok(v)
}

/// [`try_filled`] with zeros (the default value).
pub fn try_zeroed<T: Clone + Default>(what: &str, n: usize) -> Result<Vec<T>> {
    try_filled(what, n, T::default())
}

/// An empty vector with room for `n` elements, allocated fallibly (see [`try_filled`]).
pub fn try_with_capacity<T>(what: &str, n: usize) -> Result<Vec<T>> {
    elements(what, &[n])?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|e| {
        Error::Memory(format!(
            "{what}: cannot allocate {n} elements of {} bytes ({e})",
            std::mem::size_of::<T>()
        ))
    })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_counts() {
        assert_eq!(elements("a", &[3, 4]).unwrap(), 12);
        assert_eq!(elements("a", &[]).unwrap(), 1);
        assert_eq!(elements("a", &[0, usize::MAX]).unwrap(), 0);
        let e = elements("tensor `x`", &[1 << 20, 1 << 20]).unwrap_err().to_string();
        assert!(e.contains("tensor `x`") && e.contains("[1048576, 1048576]"), "{e}");
        assert!(elements("a", &[usize::MAX, 2]).is_err());
    }

    #[test]
    fn user_sizes() {
        assert_eq!(positive_at_most("--grid", 8, MAX_GRID).unwrap(), 8);
        let e = positive_at_most("--grid", usize::MAX, MAX_GRID).unwrap_err().to_string();
        assert!(e.contains("--grid") && e.contains("256"), "{e}");
        assert!(positive_at_most("--dim", 0, MAX_D).is_err());
        assert_eq!(at_most("--bootstrap", 0, MAX_BOOTSTRAP).unwrap(), 0);
        let e = at_most("--permutations", usize::MAX, MAX_PERMUTATIONS).unwrap_err().to_string();
        assert!(e.contains("--permutations") && e.contains("1000000"), "{e}");
    }

    #[test]
    fn held_out_counts() {
        assert_eq!(held_out("val_fraction", 100, 0.1).unwrap(), 10);
        for bad in [f64::NAN, 0.0, 1.0, -0.5, f64::INFINITY] {
            let e = held_out("--val-fraction", 100, bad).unwrap_err().to_string();
            assert!(e.contains("--val-fraction"), "{e}");
        }
        // 0.001 of 100 images is 0 held out: refused, not silently raised to 2.
        let e = held_out("held_out_fraction", 100, 0.001).unwrap_err().to_string();
        assert!(e.contains("held_out_fraction") && e.contains("holds out 0"), "{e}");
        assert!(held_out("v", 10, 0.9).is_err());
    }

    #[test]
    fn fallible_allocation() {
        assert_eq!(try_zeroed::<f32>("x", 3).unwrap(), vec![0.0; 3]);
        // Over the element limit: refused before asking the allocator.
        assert!(matches!(try_zeroed::<u8>("x", MAX_ELEMENTS + 1), Err(Error::InvalidArgument { .. })));
    }
}
