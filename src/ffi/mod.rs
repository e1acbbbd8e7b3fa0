//! The C ABI (DESIGN §6). `include/factortopy.h` is generated from this module by cbindgen
//! (`cbindgen.toml`); CI regenerates it with a pinned cbindgen and fails on any difference
//! (`.ci/c_abi_check.sh`). The conventions, repeated at the top of the header:
//!
//! - Opaque handles, created by `ft_<type>_new` (or `_load`) and released by `ft_<type>_free`;
//!   every free function accepts NULL.
//! - Every fallible call returns an `ft_status` and writes its outputs only on success.
//! - `ft_last_error()` gives a thread-local message for the last failed call on this thread.
//! - No panic crosses the boundary: every entry point runs under `catch_unwind` and a panic
//!   becomes `FT_ERR_PANIC`.
//! - Every pointer is checked; NULL where a value is required is `FT_ERR_NULL`.
//! - Strings returned by the library are freed with `ft_string_free`.
//!
//! Unsafe contract: the library cannot check that a non-NULL pointer is valid. Callers pass
//! handles they got from this library and not yet freed, NUL-terminated UTF-8 strings, and
//! tensor descriptions whose data, shape and strides are valid for reads.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

pub mod api;
pub mod brain_arrays;
pub mod dlpack;
pub mod engine;
pub mod plot;
pub mod rank;
pub mod resample;
pub mod tensor;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

pub use api::*;
pub use brain_arrays::*;
pub use engine::*;
pub use plot::*;
pub use rank::*;
pub use resample::*;
pub use dlpack::{
    DLDataType, DLDevice, DLManagedTensor, DLManagedTensorVersioned, DLPackVersion, DLTensor, FT_DLPACK_MAJOR_VERSION,
};
pub use tensor::{ft_dtype, ft_tensor};

/// Major version of the library; matches `Cargo.toml` (checked by a test).
pub const FT_VERSION_MAJOR: u32 = 0;
/// Minor version of the library; matches `Cargo.toml`.
pub const FT_VERSION_MINOR: u32 = 2;
/// Patch version of the library; matches `Cargo.toml`.
pub const FT_VERSION_PATCH: u32 = 0;
/// The version as a string, as `ft_version()` returns it. (In C, `FT_VERSION_STRING` is built
/// from the three numbers by the header.)
///
/// cbindgen:ignore
pub const FT_VERSION_STRING: &str = "0.2.0";

/// Outcome of every fallible call. `FT_OK` is 0; every other value is an error, described by
/// `ft_last_error()`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ft_status {
    /// Success.
    FT_OK = 0,
    /// A required pointer argument was NULL.
    FT_ERR_NULL = 1,
    /// An argument is out of range or inconsistent (including invalid UTF-8 strings).
    FT_ERR_INVALID_ARGUMENT = 2,
    /// A tensor has the wrong number of dimensions or a shape that does not fit.
    FT_ERR_SHAPE = 3,
    /// A tensor's element type is not supported (f32, f16 and bf16 are).
    FT_ERR_DTYPE = 4,
    /// A tensor lives in memory the library cannot read (e.g. CUDA device memory).
    FT_ERR_DEVICE = 5,
    /// Invalid data: a file's content, or non-finite values in a tensor.
    FT_ERR_DATA = 6,
    /// The operating system refused a read or write.
    FT_ERR_IO = 7,
    /// Two inputs that must agree do not (image counts, layers, a state saved for another brain).
    FT_ERR_MISMATCH = 8,
    /// A numerical failure (non-finite loss, an encoder that predicts nothing, ...).
    FT_ERR_NUMERIC = 9,
    /// The tensor backend or the CUDA path failed.
    FT_ERR_BACKEND = 10,
    /// A panic inside the library was caught at the boundary (a bug; please report it).
    FT_ERR_PANIC = 11,
    /// An allocation sized by the input failed; the process and the library stay usable.
    FT_ERR_MEMORY = 12,
}

/// An error on its way to the boundary.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub status: ft_status,
    pub msg: String,
}

impl FfiError {
    pub fn new(status: ft_status, msg: impl Into<String>) -> Self {
        Self { status, msg: msg.into() }
    }
    pub fn null(arg: &str) -> Self {
        Self::new(ft_status::FT_ERR_NULL, format!("argument `{arg}` is NULL"))
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ft_status::FT_ERR_INVALID_ARGUMENT, msg)
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        use ft_status::*;
        let status = match &e {
            Error::Data { .. } => FT_ERR_DATA,
            Error::Io { .. } => FT_ERR_IO,
            Error::Mismatch(_) => FT_ERR_MISMATCH,
            Error::InvalidArgument(_) => FT_ERR_INVALID_ARGUMENT,
            Error::Numeric(_) => FT_ERR_NUMERIC,
            Error::Backend(_) | Error::Cuda(_) => FT_ERR_BACKEND,
            Error::Memory(_) => FT_ERR_MEMORY,
        };
        Self::new(status, e.to_string())
    }
}

pub(crate) type FfiResult<T> = std::result::Result<T, FfiError>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    // One line, control characters escaped (interior NULs too, which would truncate it).
    let c = CString::new(crate::error::one_line(msg)).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Runs an entry point's body: clears the thread's last error on success, records it on
/// failure, and turns a panic into `FT_ERR_PANIC`.
pub(crate) fn guard(f: impl FnOnce() -> FfiResult<()>) -> ft_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_last_error("");
            ft_status::FT_OK
        }
        Ok(Err(e)) => {
            set_last_error(&e.msg);
            e.status
        }
        Err(payload) => {
            set_last_error(&format!(
                "internal error (panic caught at the C boundary): {}",
                panic_message(&*payload)
            ));
            ft_status::FT_ERR_PANIC
        }
    }
}

/// Runs an infallible entry point (free functions, getters) under `catch_unwind`, returning
/// `fallback` on a panic.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// A required, NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> FfiResult<&'a str> {
    if p.is_null() {
        return Err(FfiError::null(name));
    }
    // SAFETY: non-NULL and, by the caller's contract, NUL-terminated and valid for reads.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| FfiError::invalid(format!("argument `{name}` is not valid UTF-8")))
}

/// Hands a Rust string to C; the caller frees it with `ft_string_free`.
pub(crate) fn c_string(s: String) -> *mut c_char {
    CString::new(s.replace('\0', " ")).unwrap_or_default().into_raw()
}

/// A required out-pointer.
pub(crate) fn out_arg<'a, T>(p: *mut T, name: &str) -> FfiResult<&'a mut T> {
    // SAFETY: a non-NULL out-pointer is, by the caller's contract, valid for writes of one T.
    unsafe { p.as_mut() }.ok_or_else(|| FfiError::null(name))
}

/// A required handle, shared.
pub(crate) fn handle<'a, T>(p: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: a non-NULL handle is, by the caller's contract, a live handle from this library.
    unsafe { p.as_ref() }.ok_or_else(|| FfiError::null(name))
}

/// A required handle, exclusive.
pub(crate) fn handle_mut<'a, T>(p: *mut T, name: &str) -> FfiResult<&'a mut T> {
    // SAFETY: as `handle`, and the caller does not use the handle from another thread meanwhile
    // (the per-handle thread-safety rules of the header).
    unsafe { p.as_mut() }.ok_or_else(|| FfiError::null(name))
}

/// The library version, e.g. "0.1.0" (the same as `FT_VERSION_STRING`). Static; never free it.
#[no_mangle]
pub extern "C" fn ft_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last failed call on this thread ("" when the last call succeeded). The
/// pointer stays valid until the next library call on this thread; never free it.
#[no_mangle]
pub extern "C" fn ft_last_error() -> *const c_char {
    guard_value(c"panic while reading the last error".as_ptr(), || {
        LAST_ERROR.with(|e| e.borrow().as_ptr())
    })
}

/// A static, human-readable name of a status value ("FT_OK", "FT_ERR_NULL", ...), or
/// "FT_UNKNOWN_STATUS". Never free it.
#[no_mangle]
pub extern "C" fn ft_status_name(status: i32) -> *const c_char {
    let s: &'static std::ffi::CStr = match status {
        0 => c"FT_OK",
        1 => c"FT_ERR_NULL",
        2 => c"FT_ERR_INVALID_ARGUMENT",
        3 => c"FT_ERR_SHAPE",
        4 => c"FT_ERR_DTYPE",
        5 => c"FT_ERR_DEVICE",
        6 => c"FT_ERR_DATA",
        7 => c"FT_ERR_IO",
        8 => c"FT_ERR_MISMATCH",
        9 => c"FT_ERR_NUMERIC",
        10 => c"FT_ERR_BACKEND",
        11 => c"FT_ERR_PANIC",
        12 => c"FT_ERR_MEMORY",
        _ => c"FT_UNKNOWN_STATUS",
    };
    s.as_ptr()
}

/// Frees a string returned by the library (JSON reports). Accepts NULL.
///
/// # Safety
/// `s` is NULL or a string from this library not yet freed.
#[no_mangle]
pub unsafe extern "C" fn ft_string_free(s: *mut c_char) {
    guard_value((), || {
        if !s.is_null() {
            // SAFETY: `s` came from `CString::into_raw` in `c_string` and is freed once.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}
