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

pub mod brain;
pub mod compat;
pub mod config;
pub mod config_set;
pub mod dlpack;
pub mod features;
pub mod fit;
pub mod monitor;
pub mod plot;
pub mod rank;
pub mod resample;
pub mod synth;
pub mod tensor;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

pub use brain::*;
pub use compat::*;
pub use config::*;
pub use config_set::*;
pub use features::*;
pub use fit::*;
pub use monitor::*;
pub use plot::*;
pub use rank::*;
pub use resample::*;
pub use synth::*;
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
    /// The handle is in use by a call on another thread that the thread-safety rules forbid to
    /// overlap with this one (two calls on one monitor, or adding a layer to a feature set
    /// while it is read). Nothing was done; retry once the other call has returned.
    FT_ERR_BUSY = 13,
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
        // The one place a status is named for a kind of error. A shape or dtype read from a
        // file is the file's content (`FT_ERR_DATA`); `FT_ERR_SHAPE` and `FT_ERR_DTYPE` are the
        // caller's own tensors. A device that cannot be used is `FT_ERR_BACKEND` with the
        // reason, as the header documents.
        let status = match &e {
            Error::Data { .. } | Error::Shape { file: Some(_), .. } | Error::Dtype { file: Some(_), .. } => FT_ERR_DATA,
            Error::Shape { file: None, .. } => FT_ERR_SHAPE,
            Error::Dtype { file: None, .. } => FT_ERR_DTYPE,
            Error::Device { .. } => FT_ERR_DEVICE,
            Error::NotFound { .. } | Error::Io { .. } => FT_ERR_IO,
            Error::Mismatch(_) => FT_ERR_MISMATCH,
            Error::InvalidArgument { .. } => FT_ERR_INVALID_ARGUMENT,
            Error::Numeric(_) => FT_ERR_NUMERIC,
            Error::DeviceUnavailable { .. } | Error::Backend(_) | Error::Cuda(_) => FT_ERR_BACKEND,
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
    // The first call sizes the worker pool to an address-space limit, as the CLI does at start
    // (a host that built the pool itself keeps it).
    static POOL: std::sync::Once = std::sync::Once::new();
    POOL.call_once(|| {
        let _ = crate::engine::memory::fit_thread_pool_to_address_space();
    });
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

/// A caller's array argument `ptr[0 .. len)` copied into a new vector. `len` is checked before
/// anything is read or allocated: above `max` (the limit on what the argument can sensibly hold:
/// [`crate::data::limits::MAX_ELEMENTS`] elements for an array, the input file limit for bytes)
/// it is `FT_ERR_INVALID_ARGUMENT` naming `what`, where an unchecked `len` would make a slice the
/// language forbids and a copy that panics on a capacity overflow or aborts. The copy is
/// allocated fallibly (`FT_ERR_MEMORY`).
///
/// # Safety
/// `ptr` is non-NULL and valid for `len` reads of `T` (when `len` is within `max`).
pub(crate) unsafe fn copy_arg<T: Copy>(ptr: *const T, len: usize, what: &str, max: usize) -> FfiResult<Vec<T>> {
    let fits_a_slice = len.checked_mul(std::mem::size_of::<T>()).is_some_and(|b| b <= isize::MAX as usize);
    if len > max || !fits_a_slice {
        return Err(FfiError::invalid(format!("{what} has length {len}, over the limit of {max}")));
    }
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|e| FfiError::new(ft_status::FT_ERR_MEMORY, format!("{what}: cannot allocate {len} elements ({e})")))?;
    // SAFETY: non-NULL and valid for `len` reads by the caller's contract; `len` elements span at
    // most `isize::MAX` bytes (checked above).
    v.extend_from_slice(unsafe { std::slice::from_raw_parts(ptr, len) });
    Ok(v)
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

/// A required argument read through a pointer (a tensor description, an arrays struct).
pub(crate) fn arg_ref<'a, T>(p: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: a non-NULL argument pointer is, by the caller's contract, valid for reads of one T
    // for the duration of the call.
    unsafe { p.as_ref() }.ok_or_else(|| FfiError::null(name))
}

/// Handles that are immutable once made (`ft_brain`, `ft_fit`, `ft_step_report`): any number
/// of calls may use one at once, so they are borrowed without a check.
pub(crate) trait Immutable {}

/// A required immutable handle.
pub(crate) fn handle<'a, T: Immutable>(p: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: a non-NULL handle is, by the caller's contract, a live handle from this library;
    // nothing mutates an immutable handle while it is live.
    unsafe { p.as_ref() }.ok_or_else(|| FfiError::null(name))
}

/// Handles whose calls the header forbids to overlap (`ft_monitor`: any two calls;
/// `ft_features`: adding a layer with anything else). Such a handle keeps its contents in
/// `Inner` beside a flag, [`Busy`]; [`shared`] and [`exclusive`], the only way they are
/// borrowed, take the flag for the duration of the call, so a call that would overlap another
/// returns `FT_ERR_BUSY` instead of racing with it.
pub(crate) trait Policed {
    type Inner;
    /// Whether calls that only read may overlap each other (features: yes; monitor: no, every
    /// call is exclusive).
    const SHARED_READS: bool;
    /// The flag of the handle at `p`.
    ///
    /// # Safety
    /// `p` is a live handle.
    unsafe fn busy_of(p: *const Self) -> *const Busy;
    /// The contents of the handle at `p`: a field disjoint from the flag, so that borrowing one
    /// never aliases a borrow of the other.
    ///
    /// # Safety
    /// `p` is a live handle.
    unsafe fn inner_of(p: *mut Self) -> *mut Self::Inner;
}

/// The flag of a [`Policed`] handle: the number of calls reading it, or −1 while one call holds
/// it exclusively.
#[derive(Debug, Default)]
pub(crate) struct Busy(std::sync::atomic::AtomicIsize);

impl Busy {
    fn busy(name: &str) -> FfiError {
        FfiError::new(
            ft_status::FT_ERR_BUSY,
            format!("`{name}` is in use by a call on another thread; calls on it must not overlap (see THREAD SAFETY in the header)"),
        )
    }

    fn read(&self, name: &str) -> FfiResult<()> {
        use std::sync::atomic::Ordering::{Acquire, Relaxed};
        let mut n = self.0.load(Relaxed);
        loop {
            if n < 0 {
                return Err(Self::busy(name));
            }
            match self.0.compare_exchange_weak(n, n + 1, Acquire, Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => n = now,
            }
        }
    }

    fn write(&self, name: &str) -> FfiResult<()> {
        use std::sync::atomic::Ordering::{Acquire, Relaxed};
        self.0.compare_exchange(0, -1, Acquire, Relaxed).map(|_| ()).map_err(|_| Self::busy(name))
    }
}

/// A policed handle borrowed for reading; the flag is released when it is dropped.
pub(crate) struct Shared<'a, H: Policed> {
    p: *mut H,
    exclusive: bool,
    _life: std::marker::PhantomData<&'a H>,
}

impl<H: Policed> std::ops::Deref for Shared<'_, H> {
    type Target = H::Inner;
    fn deref(&self) -> &H::Inner {
        // SAFETY: the flag is held for reading (or exclusively), so no call holds the contents
        // mutably; `p` is live for `'a` by the caller's contract.
        unsafe { &*H::inner_of(self.p) }
    }
}

impl<H: Policed> Drop for Shared<'_, H> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Release;
        // SAFETY: `p` is live for `'a`; the flag is only ever accessed atomically.
        let busy = unsafe { &*H::busy_of(self.p) };
        if self.exclusive {
            busy.0.store(0, Release);
        } else {
            busy.0.fetch_sub(1, Release);
        }
    }
}

/// A policed handle borrowed exclusively; the flag is released when it is dropped.
pub(crate) struct Exclusive<'a, H: Policed>(Shared<'a, H>);

impl<H: Policed> std::ops::Deref for Exclusive<'_, H> {
    type Target = H::Inner;
    fn deref(&self) -> &H::Inner {
        &self.0
    }
}

impl<H: Policed> std::ops::DerefMut for Exclusive<'_, H> {
    fn deref_mut(&mut self) -> &mut H::Inner {
        // SAFETY: the flag is held exclusively: no other call reads or writes the contents.
        unsafe { &mut *H::inner_of(self.0.p) }
    }
}

/// A required policed handle, borrowed for a call that only reads it: `FT_ERR_BUSY` while a
/// call that the header forbids to overlap with this one is running on it.
pub(crate) fn shared<'a, H: Policed>(p: *const H, name: &str) -> FfiResult<Shared<'a, H>> {
    if p.is_null() {
        return Err(FfiError::null(name));
    }
    // SAFETY: non-NULL, so a live handle by the caller's contract; the flag is a field of its
    // own, only accessed atomically.
    let busy = unsafe { &*H::busy_of(p) };
    if H::SHARED_READS {
        busy.read(name)?;
    } else {
        busy.write(name)?;
    }
    Ok(Shared { p: p.cast_mut(), exclusive: !H::SHARED_READS, _life: std::marker::PhantomData })
}

/// A required policed handle, borrowed for a call that changes it: `FT_ERR_BUSY` while any
/// other call is running on it.
pub(crate) fn exclusive<'a, H: Policed>(p: *mut H, name: &str) -> FfiResult<Exclusive<'a, H>> {
    if p.is_null() {
        return Err(FfiError::null(name));
    }
    // SAFETY: as in `shared`.
    let busy = unsafe { &*H::busy_of(p) };
    busy.write(name)?;
    Ok(Exclusive(Shared { p, exclusive: true, _life: std::marker::PhantomData }))
}

// The thread-safety promises of the header, checked at compile time: every handle may move
// between threads, and the immutable ones may be shared.
const _: () = {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    #[allow(dead_code)]
    fn promises() {
        send::<ft_brain>();
        send::<ft_features>();
        send::<ft_fit>();
        send::<ft_monitor>();
        send::<ft_step_report>();
        sync::<ft_brain>();
        sync::<ft_features>();
        sync::<ft_fit>();
        sync::<ft_step_report>();
    }
};

pub(crate) fn boxed<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Frees a boxed handle (NULL is a no-op).
///
/// # Safety
/// `p` is NULL or came from `boxed` and is freed once.
pub(crate) unsafe fn free_box<T>(p: *mut T) {
    guard_value((), || {
        if !p.is_null() {
            // SAFETY: by the caller's contract, `p` came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(p) });
        }
    })
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
        13 => c"FT_ERR_BUSY",
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
