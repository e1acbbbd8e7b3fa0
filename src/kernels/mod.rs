//! The GPU path of DESIGN §3.9: cudarc with dynamic loading, kernels in `kernels/*.cu` compiled
//! at run time by NVRTC, cuBLAS for the matrix products.
//!
//! [`device`] is always compiled, so a build without the `cuda` feature can still parse
//! `--device cuda:N` and answer with a clear error. Everything else needs the feature.

pub mod device;

#[cfg(feature = "cuda")]
pub mod blas;
#[cfg(feature = "cuda")]
pub mod elementwise;
#[cfg(feature = "cuda")]
pub mod fit;
#[cfg(feature = "cuda")]
pub mod module;
#[cfg(feature = "cuda")]
pub mod readout;
#[cfg(feature = "cuda")]
pub mod selectors;
#[cfg(feature = "cuda")]
mod util;

pub use device::Device;
#[cfg(feature = "cuda")]
pub use module::{gpu, Gpu};
