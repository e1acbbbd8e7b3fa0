//! Device selection (`--device cpu|cuda:N`), compiled with or without the `cuda` feature so the
//! CLI and the C ABI can always name a device and always get a clear answer.
//!
//! With the feature on, `crate::cuda::probe` checks that the driver, NVRTC and cuBLAS libraries can be
//! loaded *before* anything touches cudarc: cudarc's dynamic loader panics when a library is
//! missing, and a panic must never reach a user (or cross the C ABI). The check dlopens exactly
//! the file names cudarc will try, so "the probe passed" means "cudarc will find them".

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The CPU.
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

    /// Whether this is a CUDA device.
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
            return Err(Error::device_unavailable(d, NO_CUDA_BUILD));
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

#[cfg(not(feature = "cuda"))]
fn cuda_available(ordinal: usize) -> Result<()> {
    Err(Error::device_unavailable(Device::Cuda(ordinal), NO_CUDA_BUILD))
}

#[cfg(feature = "cuda")]
fn cuda_available(ordinal: usize) -> Result<()> {
    crate::cuda::probe::check_ordinal(ordinal)
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
        assert!(matches!(&e, Error::DeviceUnavailable { device, .. } if device == "cuda:0"), "{e:?}");
        assert!(e.to_string().contains("rebuild with --features cuda"), "{e}");
        let e = Device::Cuda(0).check_available().unwrap_err();
        assert!(e.to_string().contains("rebuild with --features cuda"), "{e}");
    }

    /// On a machine without a driver (CI), the probe must answer with an error, not a panic.
    #[cfg(feature = "cuda")]
    #[test]
    fn probe_never_panics() {
        match crate::cuda::probe::probe() {
            Ok(info) => assert!(info.device_count > 0),
            Err(e) => assert!(matches!(e, Error::DeviceUnavailable { .. }), "{e}"),
        }
        let _ = Device::Cuda(usize::MAX).check_available().unwrap_err();
    }
}
