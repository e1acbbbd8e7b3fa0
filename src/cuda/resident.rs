//! Layers given as CUDA tensors (DLPack through the C ABI), kept in device memory: the library
//! copies the caller's tensor device-to-device into memory it owns (so the caller may free or
//! reuse its tensor once the call returns), widened to f32 and checked finite on the device.
//! Work on the same device prepares such a layer there (`crate::cuda::prepare`); host code that
//! reads it gets one device-to-host copy, made the first time it is needed.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, DevicePtrMut, LaunchConfig, PushKernelArg};

use super::module::{cuda, gpu, no_panic, Gpu};
use super::util::{launch_err, stride_blocks};
use crate::data::Precision;
use crate::error::{Error, Result};

const BLOCK: u32 = 256;

/// A caller's tensor in CUDA memory: the device address of element (0, ..., 0), its element
/// type, and its shape and strides (in elements) padded to 4 dimensions. The caller has checked
/// with the driver that every element lies in one allocation of the device.
#[derive(Debug, Clone, Copy)]
pub struct CallerTensor {
    pub address: u64,
    pub precision: Precision,
    pub shape: [usize; 4],
    pub strides: [i64; 4],
}

impl CallerTensor {
    fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A layer held in device memory: the local map `[N, C, H, W]` and the optional global token
/// `[N, C]`, as f32 values of the precision they arrived in.
pub struct DeviceLayer {
    g: Arc<Gpu>,
    shape: [usize; 4],
    precision: Precision,
    local: CudaSlice<f32>,
    global: Option<CudaSlice<f32>>,
}

impl std::fmt::Debug for DeviceLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceLayer(cuda:{}, {:?}, {})", self.g.ordinal, self.shape, self.precision)
    }
}

/// Why a tensor cannot become a device layer. `NonFinite` is the caller's data, not the device.
#[derive(Debug)]
pub enum CopyError {
    /// The first non-finite value of a tensor in row-major order, as the host path's check names
    /// it: `tensor` is `"local"` or `"global"`, `index` the flat row-major index into its shape.
    NonFinite { tensor: &'static str, index: usize, value: f32 },
    Other(Error),
}

/// The kernels' "no non-finite value" in a first-bad slot: every bit set, so any index lowers it.
const NO_BAD: u64 = u64::MAX;

impl From<Error> for CopyError {
    fn from(e: Error) -> Self {
        CopyError::Other(e)
    }
}

impl DeviceLayer {
    /// Copies `local` (and `global`) on `cuda:ordinal` into memory the library owns, after
    /// synchronising the device (the caller's streams of its primary context are done) and
    /// checking that the copies fit in its free memory. Returns when the copies are complete.
    pub fn copy(ordinal: usize, local: &CallerTensor, global: Option<&CallerTensor>) -> std::result::Result<Self, CopyError> {
        let g = gpu(ordinal)?;
        let [n, c, _, _] = local.shape;
        let bytes = (local.elements() as u128 + global.map_or(0, |t| t.elements() as u128)) * 4;
        check_room(&g, bytes, &format!("the library's f32 copy of the CUDA tensor local {:?}{}", local.shape, match global {
            Some(_) => format!(" and global [{n}, {c}]"),
            None => String::new(),
        }))?;
        let copied = no_panic("copying a CUDA tensor", || {
            g.ctx.bind_to_thread().map_err(cuda("binding the CUDA context"))?;
            // SAFETY: the context is current on this thread; cuCtxSynchronize takes no arguments.
            let rc = unsafe { cudarc::driver::sys::cuCtxSynchronize() };
            if rc != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
                return Err(Error::Cuda(format!("synchronising the device before reading a CUDA tensor: {rc:?}")));
            }
            // Set on the device rather than copied there: adding a layer moves no bytes host→device.
            let mut first_bad = g.stream.alloc_zeros::<u64>(2).map_err(cuda("allocating the first-bad slots"))?;
            {
                let (ptr, _record) = first_bad.device_ptr_mut(&g.stream);
                // SAFETY: `ptr` addresses the 16 bytes of `first_bad`, allocated just above in this
                // context (current on this thread) and alive until the end of the closure; the
                // memset is queued on `g.stream`, before the kernels that read the slots.
                unsafe { cudarc::driver::result::memset_d8_async(ptr, 0xff, 16, g.stream.cu_stream()) }
                    .map_err(cuda("setting the first-bad slots"))?;
            }
            let local_copy = copy_tensor(&g, local, &mut first_bad, 0)?;
            let global_copy = global.map(|t| copy_tensor(&g, t, &mut first_bad, 1)).transpose()?;
            let first = g.stream.clone_dtoh(&first_bad).map_err(cuda("reading the first non-finite index"))?;
            let mut bad = None;
            for (k, tensor, copy) in [(0, "local", Some(&local_copy)), (1, "global", global_copy.as_ref())] {
                if let (Some(copy), true) = (copy, first[k] != NO_BAD) {
                    // The value as copied, widened to f32: what the host path prints.
                    let index = first[k] as usize;
                    let at = copy
                        .try_slice(index..index + 1)
                        .ok_or_else(|| Error::Cuda(format!("the first non-finite index {index} is past the copy")))?;
                    let value = g.stream.clone_dtoh(&at).map_err(cuda("reading the first non-finite value"))?[0];
                    bad = Some(CopyError::NonFinite { tensor, index, value });
                    break;
                }
            }
            Ok((local_copy, global_copy, bad))
        })?;
        let (local_copy, global_copy, bad) = copied;
        if let Some(e) = bad {
            return Err(e);
        }
        Ok(Self { g, shape: local.shape, precision: local.precision, local: local_copy, global: global_copy })
    }

    /// `[N, C, H, W]` of the local map.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// The precision the values arrived in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether the layer has a global token.
    pub fn has_global(&self) -> bool {
        self.global.is_some()
    }

    /// The device the layer is on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.g
    }

    /// The local map `[N, C, H, W]` in device memory.
    pub fn local(&self) -> &CudaSlice<f32> {
        &self.local
    }

    /// The global token `[N, C]` in device memory, when the layer has one.
    pub fn global(&self) -> Option<&CudaSlice<f32>> {
        self.global.as_ref()
    }

    /// The values copied to host memory (the one device-to-host copy of a layer that host code
    /// reads).
    pub fn to_host(&self) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        no_panic("copying a device layer to the host", || {
            let local = self.g.stream.clone_dtoh(&self.local).map_err(cuda("copying a device layer to the host"))?;
            let global = match &self.global {
                Some(gl) => Some(self.g.stream.clone_dtoh(gl).map_err(cuda("copying a device layer to the host"))?),
                None => None,
            };
            Ok((local, global))
        })
    }

    /// The global tokens `[N, C]` on the host: the stored ones, or the spatial means of the local
    /// maps computed on the device; the local maps themselves stay there.
    pub fn global_tokens(&self) -> Result<Vec<f32>> {
        let [n, ..] = self.shape;
        let all: Vec<usize> = (0..n).collect();
        let g = super::prepare::global_tokens(self, &all)?;
        no_panic("reading global tokens", || self.g.stream.clone_dtoh(&g).map_err(cuda("reading global tokens")))
    }
}

/// Fails with one line naming `what` when `bytes` more would not fit in the device's free memory.
pub fn check_room(g: &Gpu, bytes: u128, what: &str) -> Result<()> {
    let (free, total) = g.mem_info()?;
    if bytes > free as u128 {
        return Err(Error::invalid(format!(
            "{what} needs {bytes} bytes of device memory; cuda:{} has {free} of {total} bytes free",
            g.ordinal
        )));
    }
    Ok(())
}

/// A compact f32 copy of `t`; `first_bad[slot]` is lowered to the row-major index of each of its
/// non-finite values.
fn copy_tensor(g: &Gpu, t: &CallerTensor, first_bad: &mut CudaSlice<u64>, slot: usize) -> Result<CudaSlice<f32>> {
    let total = t.elements();
    let mut dst = g.stream.alloc_zeros::<f32>(total.max(1)).map_err(cuda("allocating a device layer"))?;
    let [_, c, h, w] = t.shape.map(|d| d as i64);
    let [s0, s1, s2, s3] = t.strides;
    let total_i = i64::try_from(total).map_err(|_| Error::invalid("a CUDA tensor has too many elements"))?;
    let kernel = match t.precision {
        Precision::F32 => &g.kernels.copy_layer_f32,
        Precision::F16 => &g.kernels.copy_layer_f16,
        Precision::Bf16 => &g.kernels.copy_layer_bf16,
    };
    let mut first_bad = first_bad.slice_mut(slot..slot + 1);
    let mut launch = g.stream.launch_builder(kernel);
    launch
        .arg(&t.address)
        .arg(&s0)
        .arg(&s1)
        .arg(&s2)
        .arg(&s3)
        .arg(&c)
        .arg(&h)
        .arg(&w)
        .arg(&total_i)
        .arg(&mut dst)
        .arg(&mut first_bad);
    let cfg = LaunchConfig { grid_dim: (stride_blocks(total, BLOCK), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: arguments match copy_layer_*: `address` is the caller's element (0, ..., 0), and
    // every element the shape and strides reach lies in one allocation of this device (checked
    // with the driver by the caller of `DeviceLayer::copy`); `dst` holds `total` f32 values and
    // `first_bad` one u64.
    unsafe { launch.launch(cfg) }.map_err(launch_err("copy_layer"))?;
    g.sync()?;
    Ok(dst)
}
