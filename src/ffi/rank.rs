//! The ranking method as the C ABI names it (`ft_rank` and `ft_rank_on` are in `engine.rs`).

use crate::engine::Method;
use crate::ffi::{FfiError, FfiResult};

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

