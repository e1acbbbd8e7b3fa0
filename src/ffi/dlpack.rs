//! DLPack's C structs (dlpack.h v0.8 and v1.x share this layout for `DLTensor` and the legacy
//! `DLManagedTensor`), defined here so the header stands alone. The header only defines them
//! when dlpack.h has not been included first (its include guard `DLPACK_DLPACK_H_`), so a
//! program that uses both includes dlpack.h before factortopy.h.

// `ft_dlpack_h` is never set for rustc; cbindgen maps it to `DLPACK_DLPACK_H_` (cbindgen.toml)
// so the generated header skips these definitions when dlpack.h is already included.
#![allow(unexpected_cfgs)]

use std::ffi::c_void;

/// DLPack's enumeration values the library distinguishes (dlpack.h numbering).
///
/// cbindgen:ignore
pub(crate) mod kdl {
    // DLDeviceType
    pub const CPU: i32 = 1;
    pub const CUDA: i32 = 2;
    pub const CUDA_HOST: i32 = 3;
    pub const ROCM: i32 = 10;
    pub const CUDA_MANAGED: i32 = 13;
    // DLDataTypeCode
    pub const INT: u8 = 0;
    pub const UINT: u8 = 1;
    pub const FLOAT: u8 = 2;
    pub const BFLOAT: u8 = 4;
}

/// Where a tensor's memory lives (dlpack.h `DLDevice`; `device_type` is a `DLDeviceType`).
#[cfg(not(ft_dlpack_h))]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLDevice {
    pub device_type: i32,
    pub device_id: i32,
}

/// Element type (dlpack.h `DLDataType`): `code` is a `DLDataTypeCode` (kDLFloat = 2,
/// kDLBfloat = 4), `bits` the width, `lanes` 1 for scalars.
#[cfg(not(ft_dlpack_h))]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLDataType {
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

/// dlpack.h `DLTensor`: a borrowed view. `strides` (in elements) may be NULL for a compact
/// row-major tensor; `byte_offset` is added to `data`.
#[cfg(not(ft_dlpack_h))]
#[repr(C)]
#[derive(Debug)]
pub struct DLTensor {
    pub data: *mut c_void,
    pub device: DLDevice,
    pub ndim: i32,
    pub dtype: DLDataType,
    pub shape: *mut i64,
    pub strides: *mut i64,
    pub byte_offset: u64,
}

/// dlpack.h `DLManagedTensor` (the legacy, unversioned struct that `torch.utils.dlpack.to_dlpack`
/// and `__dlpack__()` without `max_version` produce): a tensor plus the deleter its owner
/// provides.
#[cfg(not(ft_dlpack_h))]
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensor {
    pub dl_tensor: DLTensor,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(self_: *mut DLManagedTensor)>,
}

/// dlpack.h (v1.x) `DLPackVersion`: the ABI version a versioned tensor was produced with.
#[cfg(not(ft_dlpack_h))]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLPackVersion {
    pub major: u32,
    pub minor: u32,
}

/// dlpack.h (v1.x) `DLManagedTensorVersioned`, what `__dlpack__(max_version=(1, 0))` produces:
/// the version, the owner's context and deleter, `flags` (bit 0: read-only, bit 1: is a copy,
/// bit 2: sub-byte types padded) and the tensor.
#[cfg(not(ft_dlpack_h))]
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensorVersioned {
    pub version: DLPackVersion,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(self_: *mut DLManagedTensorVersioned)>,
    pub flags: u64,
    pub dl_tensor: DLTensor,
}

/// The DLPack major version this library reads (`DLManagedTensorVersioned.version.major`).
pub const FT_DLPACK_MAJOR_VERSION: u32 = 1;
