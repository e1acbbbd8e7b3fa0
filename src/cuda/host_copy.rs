//! Reading caller-owned CUDA memory (a DLPack tensor in device memory) into the host: one
//! synchronous device-to-host copy after synchronising the device's primary context, the context
//! PyTorch, JAX and CuPy use, so work the caller queued on any of its streams is finished.

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
