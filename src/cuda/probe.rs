//! Checks that the CUDA libraries load before anything touches cudarc (cudarc's dynamic loader
//! panics when a library is missing, and a panic must never reach a user or cross the C ABI).
//! The check dlopens exactly the file names cudarc will try, so "the probe passed" means
//! "cudarc will find them".

use crate::error::{Error, Result};

/// Checks that `cuda:ordinal` can be used: the libraries load, the driver is new enough and the
/// ordinal exists. Never panics.
pub fn check_ordinal(ordinal: usize) -> Result<()> {
    let info = probe()?;
    if ordinal >= info.device_count {
        return Err(Error::device_unavailable(format!("cuda:{ordinal}"), format!(
            "cuda:{ordinal} does not exist: the driver reports {} CUDA device(s)",
            info.device_count
        )));
    }
    Ok(())
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaInfo {
    /// CUDA version the driver supports, as 1000·major + 10·minor (13000 = 13.0).
    pub driver_version: i32,
    /// NVRTC's (major, minor).
    pub nvrtc_version: (i32, i32),
    pub device_count: usize,
    /// The library files that were found, for messages.
    pub libraries: Vec<String>,
}

/// The oldest driver the GPU path accepts: the crate binds the CUDA 13.0 API and NVRTC 13
/// emits PTX that older drivers cannot load.
pub const MIN_DRIVER_VERSION: i32 = 13000;

/// Checks, once per process, that libcuda, libnvrtc and libcublas load, that the driver is new
/// enough and how many devices it sees. Every failure is an `Error::DeviceUnavailable` that says
/// what to fix.
pub fn probe() -> Result<CudaInfo> {
    use once_cell::sync::OnceCell;
    static PROBE: OnceCell<std::result::Result<CudaInfo, String>> = OnceCell::new();
    PROBE.get_or_init(dl::probe_uncached).clone().map_err(|reason| Error::device_unavailable("cuda", reason))
}

mod dl {
    use super::{CudaInfo, MIN_DRIVER_VERSION};
    use std::ffi::{c_int, c_void, CStr, CString};

    /// An open dlopen handle. It is deliberately never closed: cuInit starts driver threads
    /// that live in libcuda, so unloading it afterwards could pull code from under them, and
    /// cudarc opens the same files for the rest of the process anyway.
    struct Lib {
        handle: *mut c_void,
        name: String,
    }

    impl Lib {
        /// Opens the first of cudarc's candidate names for `lib` that loads.
        fn open(lib: &str) -> Result<Lib, String> {
            let mut candidates = cudarc::get_lib_name_candidates(lib);
            // cudarc's list repeats some names; the message should not.
            let mut seen = std::collections::HashSet::new();
            candidates.retain(|n| seen.insert(n.clone()));
            let mut last_error = String::new();
            for name in &candidates {
                let Ok(c) = CString::new(name.as_str()) else { continue };
                // SAFETY: `c` is a valid NUL-terminated string that lives across the call;
                // RTLD_LAZY defers symbol resolution, so opening runs only the library's
                // initialisers, as cudarc's own load would.
                let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
                if !handle.is_null() {
                    return Ok(Lib { handle, name: name.clone() });
                }
                // SAFETY: dlerror returns NULL or a pointer to a NUL-terminated string owned by
                // libc, valid until the next dl* call on this thread; it is copied at once.
                let err = unsafe { libc::dlerror() };
                if !err.is_null() {
                    // SAFETY: non-NULL dlerror result, see above.
                    last_error = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
                }
            }
            Err(format!(
                "could not load lib{lib} (tried {}){}",
                candidates.join(", "),
                if last_error.is_empty() { String::new() } else { format!("; last error: {last_error}") }
            ))
        }

        fn symbol(&self, name: &str) -> Result<*mut c_void, String> {
            let c = CString::new(name).map_err(|e| e.to_string())?;
            // SAFETY: `handle` is a live dlopen handle and `c` a valid C string.
            let sym = unsafe { libc::dlsym(self.handle, c.as_ptr()) };
            if sym.is_null() {
                Err(format!("{} has no symbol {name}; the library is too old or not the CUDA one", self.name))
            } else {
                Ok(sym)
            }
        }
    }

    pub(super) fn probe_uncached() -> Result<CudaInfo, String> {
        let cuda = Lib::open("cuda").map_err(|e| {
            format!("no NVIDIA driver: {e}. Install the NVIDIA driver (libcuda.so.1 comes with it) or use --device cpu")
        })?;
        let nvrtc = Lib::open("nvrtc").map_err(|e| {
            format!(
                "NVRTC is missing: {e}. Install the CUDA 13 runtime compiler (e.g. `pip install nvidia-cuda-nvrtc` \
                 and add its lib folder to LD_LIBRARY_PATH) or use --device cpu"
            )
        })?;
        let cublas = Lib::open("cublas").map_err(|e| {
            format!(
                "cuBLAS is missing: {e}. Install CUDA 13 cuBLAS (e.g. `pip install nvidia-cublas` and add its lib \
                 folder to LD_LIBRARY_PATH) or use --device cpu"
            )
        })?;

        type GetVersion = unsafe extern "C" fn(*mut c_int) -> c_int;
        type Init = unsafe extern "C" fn(u32) -> c_int;
        type NvrtcVersion = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;

        let mut driver_version: c_int = 0;
        // SAFETY: cuDriverGetVersion has this exact C signature in every CUDA driver, writes one
        // int through a valid pointer and needs no prior cuInit.
        let rc = unsafe {
            let f: GetVersion = std::mem::transmute::<*mut c_void, GetVersion>(cuda.symbol("cuDriverGetVersion")?);
            f(&mut driver_version)
        };
        if rc != 0 {
            return Err(format!("cuDriverGetVersion failed with CUresult {rc}"));
        }
        if driver_version < MIN_DRIVER_VERSION {
            return Err(format!(
                "the NVIDIA driver supports CUDA {}.{}, but the GPU path needs CUDA {}.{} or newer; update the driver or use --device cpu",
                driver_version / 1000,
                (driver_version % 1000) / 10,
                MIN_DRIVER_VERSION / 1000,
                (MIN_DRIVER_VERSION % 1000) / 10
            ));
        }
        let (mut major, mut minor): (c_int, c_int) = (0, 0);
        // SAFETY: nvrtcVersion(int*, int*) is NVRTC's stable C signature; both pointers are valid.
        let rc = unsafe {
            let f: NvrtcVersion = std::mem::transmute::<*mut c_void, NvrtcVersion>(nvrtc.symbol("nvrtcVersion")?);
            f(&mut major, &mut minor)
        };
        if rc != 0 {
            return Err(format!("nvrtcVersion failed with nvrtcResult {rc}"));
        }
        // SAFETY: cuInit(unsigned) is the driver's stable C signature; calling it more than
        // once is allowed, and cudarc calls it again itself.
        let rc = unsafe {
            let f: Init = std::mem::transmute::<*mut c_void, Init>(cuda.symbol("cuInit")?);
            f(0)
        };
        // 100 = CUDA_ERROR_NO_DEVICE: a driver without a GPU counts as zero devices.
        let device_count = if rc == 100 {
            0
        } else if rc != 0 {
            return Err(format!("cuInit failed with CUresult {rc}: the driver is installed but cannot start"));
        } else {
            type Count = unsafe extern "C" fn(*mut c_int) -> c_int;
            let mut n: c_int = 0;
            // SAFETY: cuDeviceGetCount(int*) after a successful cuInit; the pointer is valid.
            let rc = unsafe {
                let f: Count = std::mem::transmute::<*mut c_void, Count>(cuda.symbol("cuDeviceGetCount")?);
                f(&mut n)
            };
            if rc != 0 {
                return Err(format!("cuDeviceGetCount failed with CUresult {rc}"));
            }
            n.max(0) as usize
        };
        if device_count == 0 {
            return Err("the NVIDIA driver is installed but sees no CUDA device; use --device cpu".to_string());
        }
        let libraries = vec![cuda.name.clone(), nvrtc.name.clone(), cublas.name.clone()];
        Ok(CudaInfo { driver_version, nvrtc_version: (major, minor), device_count, libraries })
    }
}

