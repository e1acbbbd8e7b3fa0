//! Reading caller-owned CUDA memory (a DLPack tensor in device memory) into the host: one
//! synchronous device-to-host copy after synchronising the device's primary context, the context
//! PyTorch, JAX and CuPy use, so work the caller queued on any of its streams is finished.
//! [`check_device_range`] first asks the driver whether the tensor's bytes really are memory of
//! the device its DLPack label names, so a mislabelled tensor is a clear error instead of a copy
//! from wherever the pointer happens to point.

use crate::cuda::module::{cuda, gpu, no_panic};
use crate::error::{Error, Result};
use cudarc::driver::sys;

/// A host copy of `len` bytes at device address `ptr` on `cuda:ordinal`.
pub fn copy_to_host(ordinal: usize, ptr: u64, len: usize) -> Result<Vec<u8>> {
    let g = gpu(ordinal)?;
    no_panic("copying a CUDA tensor to the host", || {
        g.ctx.bind_to_thread().map_err(cuda("binding the CUDA context"))?;
        let mut host = Vec::new();
        host.try_reserve_exact(len)
            .map_err(|_| Error::invalid(format!("cannot allocate {len} bytes of host memory for a CUDA tensor")))?;
        host.resize(len, 0u8);
        // SAFETY: the context is current on this thread; cuCtxSynchronize takes no arguments.
        let rc = unsafe { sys::cuCtxSynchronize() };
        check(rc, "synchronising the device before reading a CUDA tensor")?;
        // SAFETY: `host` holds `len` writable bytes; the caller's DLPack contract makes
        // [ptr, ptr + len) valid device memory of this device, and no stream writes it any more
        // (the context was synchronised).
        let rc = unsafe { sys::cuMemcpyDtoH_v2(host.as_mut_ptr().cast(), ptr, len) };
        check(rc, "copying a CUDA tensor to the host")?;
        Ok(host)
    })
}

fn check(rc: sys::CUresult, what: &str) -> Result<()> {
    if rc == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(Error::Cuda(format!("{what}: {rc:?}")))
    }
}

/// Checks with the driver that `[ptr, ptr + len)` lies in one allocation of CUDA device `ordinal`
/// (device or managed memory). `Err` says why not, in words, or that the device cannot be used.
pub fn check_device_range(ordinal: usize, ptr: u64, len: usize) -> std::result::Result<(), String> {
    let g = gpu(ordinal).map_err(|e| format!("CUDA device {ordinal} cannot be used here ({e})"))?;
    no_panic("checking a CUDA pointer", || {
        g.ctx.bind_to_thread().map_err(cuda("binding the CUDA context"))?;
        Ok(query_range(ptr))
    })
    .map_err(|e| e.to_string())?
    .and_then(|(start, size, device)| {
        let end = ptr.checked_add(len as u64).ok_or("its byte range overflows")?;
        if let Some(d) = device {
            if d != ordinal as i32 {
                return Err(format!("its memory belongs to CUDA device {d}"));
            }
        }
        if ptr < start || end > start + size as u64 {
            return Err(format!(
                "its {len} bytes at {ptr:#x} run past the {size}-byte allocation at {start:#x} that holds them"
            ));
        }
        Ok(())
    })
}

/// (allocation start, allocation size, device ordinal if the driver says) of the allocation that
/// holds `ptr`, or why the driver does not know the pointer.
fn query_range(ptr: u64) -> std::result::Result<(u64, usize, Option<i32>), String> {
    use std::ffi::c_void;
    let mut start: sys::CUdeviceptr = 0;
    let mut size: usize = 0;
    let mut device: i32 = -1;
    // SAFETY: each call writes one value of the attribute's documented type through a valid
    // pointer to a local of that type; `ptr` is only looked up, never dereferenced.
    unsafe {
        let rc = sys::cuPointerGetAttribute(
            (&mut start as *mut sys::CUdeviceptr).cast::<c_void>(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
            ptr,
        );
        if rc != sys::CUresult::CUDA_SUCCESS {
            return Err(format!("the driver does not know {ptr:#x} as CUDA memory ({rc:?})"));
        }
        let rc = sys::cuPointerGetAttribute(
            (&mut size as *mut usize).cast::<c_void>(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_RANGE_SIZE,
            ptr,
        );
        if rc != sys::CUresult::CUDA_SUCCESS {
            return Err(format!("the driver gives no allocation size for {ptr:#x} ({rc:?})"));
        }
        let rc = sys::cuPointerGetAttribute(
            (&mut device as *mut i32).cast::<c_void>(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
            ptr,
        );
        let device = (rc == sys::CUresult::CUDA_SUCCESS).then_some(device);
        Ok((start, size, device))
    }
}

