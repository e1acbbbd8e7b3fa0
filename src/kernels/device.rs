//! Device selection (`--device cpu|cuda:N`), compiled with or without the `cuda` feature so the
//! CLI and the C ABI can always name a device and always get a clear answer.
//!
//! With the feature on, [`probe`] checks that the driver, NVRTC and cuBLAS libraries can be
//! loaded *before* anything touches cudarc: cudarc's dynamic loader panics when a library is
//! missing, and a panic must never reach a user (or cross the C ABI). The check dlopens exactly
//! the file names cudarc will try, so "the probe passed" means "cudarc will find them".

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

/// The message for `cuda:N` in a build without the `cuda` feature.
pub const NO_CUDA_BUILD: &str = "this build has no CUDA support; rebuild with --features cuda";

impl Device {
    /// Parses the syntax only (`cpu`, `cuda`, `cuda:N`), whatever this build supports.
    pub fn parse_syntax(s: &str) -> Result<Self> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("cpu") {
            return Ok(Device::Cpu);
        }
        let lower = t.to_ascii_lowercase();
        if lower == "cuda" {
            return Ok(Device::Cuda(0));
        }
        if let Some(n) = lower.strip_prefix("cuda:") {
            return n.parse::<usize>().map(Device::Cuda).map_err(|_| {
                Error::invalid(format!(
                    "bad device `{s}`: the CUDA ordinal must be a non-negative integer, as in cuda:0"
                ))
            });
        }
        Err(Error::invalid(format!("unknown device `{s}`; expected `cpu` or `cuda:N` (N = 0, 1, ...)")))
    }

    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    /// Checks that this device can be used now: always true for the CPU; for CUDA, that the
    /// build has the feature, the libraries load, the driver is new enough and the ordinal
    /// exists. Never panics.
    pub fn check_available(&self) -> Result<()> {
        match *self {
            Device::Cpu => Ok(()),
            Device::Cuda(ordinal) => cuda_available(ordinal),
        }
    }
}

impl FromStr for Device {
    type Err = Error;
    /// Parses a device name. `cuda:N` is refused at once, with [`NO_CUDA_BUILD`], by a build
    /// without the `cuda` feature, so a command line fails before loading any data.
    fn from_str(s: &str) -> Result<Self> {
        let d = Device::parse_syntax(s)?;
        if d.is_cuda() && !cfg!(feature = "cuda") {
            return Err(Error::Cuda(NO_CUDA_BUILD.to_string()));
        }
        Ok(d)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Fits on the chosen device: the candle CPU path of `crate::model::fit`, or the GPU path of
/// DESIGN §3.9. The two run the same algorithm from the same initialisation, split and batch
/// order; results agree to float rounding, not bitwise.
pub fn fit_on(
    device: Device,
    features: &crate::data::Features,
    brain: &crate::data::Brain,
    cfg: &crate::model::FitConfig,
    progress: Option<&mut dyn FnMut(&crate::model::Progress)>,
) -> Result<crate::model::FitOutcome> {
    match device {
        Device::Cpu => crate::model::fit(features, brain, cfg, progress),
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => {
            let opts = crate::kernels::fit::GpuFitOptions { ordinal, ..Default::default() };
            crate::kernels::fit::gpu_fit(features, brain, cfg, &opts, progress)
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(Error::Cuda(NO_CUDA_BUILD.to_string())),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_available(_ordinal: usize) -> Result<()> {
    Err(Error::Cuda(NO_CUDA_BUILD.to_string()))
}

#[cfg(feature = "cuda")]
fn cuda_available(ordinal: usize) -> Result<()> {
    let info = probe()?;
    if ordinal >= info.device_count {
        return Err(Error::Cuda(format!(
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
#[cfg(feature = "cuda")]
pub const MIN_DRIVER_VERSION: i32 = 13000;

/// Checks, once per process, that libcuda, libnvrtc and libcublas load, that the driver is new
/// enough and how many devices it sees. Every failure is an `Error::Cuda` that says what to fix.
#[cfg(feature = "cuda")]
pub fn probe() -> Result<CudaInfo> {
    use once_cell::sync::OnceCell;
    static PROBE: OnceCell<std::result::Result<CudaInfo, String>> = OnceCell::new();
    PROBE.get_or_init(dl::probe_uncached).clone().map_err(Error::Cuda)
}

#[cfg(feature = "cuda")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!(Device::parse_syntax("cpu").unwrap(), Device::Cpu);
        assert_eq!(Device::parse_syntax(" CPU ").unwrap(), Device::Cpu);
        assert_eq!(Device::parse_syntax("cuda").unwrap(), Device::Cuda(0));
        assert_eq!(Device::parse_syntax("cuda:3").unwrap(), Device::Cuda(3));
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:x", "cuda0", ""] {
            assert!(Device::parse_syntax(bad).is_err(), "{bad}");
        }
        assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert!(Device::Cpu.check_available().is_ok());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let e = "cuda:0".parse::<Device>().unwrap_err();
        assert!(matches!(e, Error::Cuda(_)));
        assert!(e.to_string().contains("rebuild with --features cuda"), "{e}");
        let e = Device::Cuda(0).check_available().unwrap_err();
        assert!(e.to_string().contains("rebuild with --features cuda"), "{e}");
    }

    /// On a machine without a driver (CI), the probe must answer with an error, not a panic.
    #[cfg(feature = "cuda")]
    #[test]
    fn probe_never_panics() {
        match probe() {
            Ok(info) => assert!(info.device_count > 0),
            Err(e) => assert!(matches!(e, Error::Cuda(_)), "{e}"),
        }
        let _ = Device::Cuda(usize::MAX).check_available().unwrap_err();
    }
}
