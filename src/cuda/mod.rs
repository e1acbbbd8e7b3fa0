//! The GPU path of DESIGN §3.9 (feature `cuda`): cudarc with dynamic loading, the kernels of
//! `kernels/*.cu` compiled at run time by NVRTC, cuBLAS for the matrix products, and the CUDA
//! trainer that implements `crate::engine::Trainer`. Device names and the choice of device live
//! in `crate::engine::device`, compiled with or without the feature.

pub mod blas;
pub mod elementwise;
pub mod host_copy;
pub mod module;
pub mod prepare;
pub mod probe;
pub mod readout;
pub mod resident;
pub mod selectors;
pub mod trainer;
mod util;

pub use module::{gpu, Gpu};
