//! Layers given as CUDA tensors (DLPack through the C ABI), kept in device memory: the library
//! copies the caller's tensor device-to-device into memory it owns (so the caller may free or
//! reuse its tensor once the call returns), widened to f32 and checked finite on the device.
//! Work on the same device prepares such a layer there (`crate::cuda::prepare`); host code that
//! reads it gets one device-to-host copy, made the first time it is needed.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

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
    /// `(tensor name, how many values)`.
    NonFinite(&'static str, u64),
    Other(Error),
}

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
            let mut bad = g.stream.alloc_zeros::<u32>(2).map_err(cuda("allocating a counter"))?;
            let local_copy = copy_tensor(&g, local, &mut bad, 0)?;
            let global_copy = global.map(|t| copy_tensor(&g, t, &mut bad, 1)).transpose()?;
            let counts = g.stream.clone_dtoh(&bad).map_err(cuda("reading the non-finite count"))?;
            Ok((local_copy, global_copy, counts))
        })?;
        let (local_copy, global_copy, counts) = copied;
        for (k, name) in [(0, "local"), (1, "global")] {
            if counts[k] > 0 {
                return Err(CopyError::NonFinite(name, counts[k] as u64));
            }
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

/// A compact f32 copy of `t`; `bad[slot]` counts its non-finite values.
fn copy_tensor(g: &Gpu, t: &CallerTensor, bad: &mut CudaSlice<u32>, slot: usize) -> Result<CudaSlice<f32>> {
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
    let mut counter = bad.slice_mut(slot..slot + 1);
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
        .arg(&mut counter);
    let cfg = LaunchConfig { grid_dim: (stride_blocks(total, BLOCK), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: arguments match copy_layer_*: `address` is the caller's element (0, ..., 0), and
    // every element the shape and strides reach lies in one allocation of this device (checked
    // with the driver by the caller of `DeviceLayer::copy`); `dst` holds `total` f32 values and
    // the counter one u32.
    unsafe { launch.launch(cfg) }.map_err(launch_err("copy_layer"))?;
    g.sync()?;
    Ok(dst)
}
