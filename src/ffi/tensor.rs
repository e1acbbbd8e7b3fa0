//! Tensors coming in through the C ABI: the plain `ft_tensor` view and DLPack's `DLTensor`,
//! both reduced to one checked description (`RawView`) and copied into the library's own f32
//! arrays, or, for a layer whose tensors are all in memory of one CUDA device, into the
//! library's own device memory (`push_device_layer`). The library never keeps a pointer into
//! caller memory after a call returns.

use crate::error::Error;
use std::ffi::c_void;

use crate::data::Array;
use crate::ffi::dlpack::{kdl, DLTensor};
use crate::ffi::{FfiError, FfiResult};

/// Element types accepted for features (the `dtype` field of `ft_tensor`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ft_dtype {
    /// IEEE 754 binary32.
    FT_F32 = 0,
    /// IEEE 754 binary16.
    FT_F16 = 1,
    /// bfloat16 (the upper half of a binary32).
    FT_BF16 = 2,
}

/// A plain tensor view: `data` points at the element with index (0, ..., 0); element
/// (i_0, ..., i_{n-1}) is at `data + Σ i_k·strides[k]` elements (not bytes). `strides` may be
/// NULL for a compact row-major tensor. `dtype` is an `ft_dtype` value. The memory must be
/// host (CPU) memory, valid for reads of every element the shape and strides describe, for the
/// duration of the call; the library copies it and keeps no pointer to it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_tensor {
    pub data: *const c_void,
    /// An `ft_dtype` value.
    pub dtype: i32,
    pub ndim: usize,
    pub shape: *const i64,
    /// Strides in elements, or NULL for compact row-major.
    pub strides: *const i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Elem {
    F32,
    F16,
    BF16,
}

impl Elem {
    /// The precision a feature set keeps values of this element type in.
    pub(crate) fn precision(self) -> crate::data::Precision {
        match self {
            Elem::F32 => crate::data::Precision::F32,
            Elem::F16 => crate::data::Precision::F16,
            Elem::BF16 => crate::data::Precision::Bf16,
        }
    }

    fn size(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F16 | Elem::BF16 => 2,
        }
    }
}

/// A checked description of caller memory.
#[derive(Debug)]
pub(crate) struct RawView {
    /// Address of element (0, ..., 0) (byte offset applied).
    base: *const u8,
    elem: Elem,
    pub shape: Vec<usize>,
    /// Strides in elements; row-major compact when `None`.
    strides: Option<Vec<isize>>,
    /// Byte offsets, relative to `base`, of the lowest element and one past the highest one.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    span: (isize, isize),
    /// For device memory: the host copy `base` points into (kept alive with the view; never
    /// read through this field).
    #[allow(dead_code)]
    staging: Option<Vec<u8>>,
    /// CUDA memory (checked with the driver) of this device ordinal, not yet copied anywhere.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    cuda: Option<(usize, i32)>,
}

fn shape_err(msg: String) -> FfiError {
    Error::shape("tensor", msg).into()
}

/// A tensor in memory the library cannot read here.
fn device_err(what: &str, msg: String) -> FfiError {
    Error::Device { tensor: what.to_string(), msg }.into()
}

/// Reads `ndim` i64 values from `p` as a shape, rejecting negative extents.
///
/// # Safety
/// `p` is valid for reads of `ndim` i64 values when `ndim > 0`.
unsafe fn read_dims(p: *const i64, ndim: usize, what: &str, field: &str) -> FfiResult<Vec<i64>> {
    if ndim == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(FfiError::null(&format!("{what}.{field}")));
    }
    // SAFETY: non-NULL, and by the caller's contract valid for `ndim` reads; `read_unaligned`
    // copes with a misaligned array.
    Ok((0..ndim).map(|k| unsafe { p.add(k).read_unaligned() }).collect())
}

impl RawView {
    /// Checks shape, strides and pointer arithmetic (no overflow, no NULL data for a non-empty
    /// tensor).
    ///
    /// # Safety
    /// `shape` and (when non-NULL) `strides` are valid for `ndim` reads.
    unsafe fn checked(
        data: *const u8,
        byte_offset: u64,
        elem: Elem,
        ndim: usize,
        shape: *const i64,
        strides: *const i64,
        what: &str,
    ) -> FfiResult<RawView> {
        if ndim > 16 {
            return Err(shape_err(format!("{what} has {ndim} dimensions; at most 16 are supported")));
        }
        // SAFETY: forwarded contract.
        let dims = unsafe { read_dims(shape, ndim, what, "shape") }?;
        let mut shape_u = Vec::with_capacity(ndim);
        for (k, &d) in dims.iter().enumerate() {
            let d = usize::try_from(d)
                .map_err(|_| shape_err(format!("{what} has negative extent {d} in dimension {k}")))?;
            shape_u.push(d);
        }
        let numel = shape_u
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| shape_err(format!("{what} has shape {dims:?}, too many elements")))?;
        // Checked before the copy allocates: a zero-stride view can describe any number of
        // elements in a few bytes of caller memory.
        crate::data::limits::elements(what, &shape_u).map_err(|e| shape_err(e.to_string()))?;
        let strides = if strides.is_null() {
            None
        } else {
            // SAFETY: forwarded contract.
            let s = unsafe { read_dims(strides, ndim, what, "strides") }?;
            let s: Vec<isize> = s
                .iter()
                .map(|&x| isize::try_from(x).map_err(|_| shape_err(format!("{what} has stride {x} out of range"))))
                .collect::<FfiResult<_>>()?;
            Some(s)
        };
        // The farthest element in either direction, in bytes, must be addressable.
        let esz = elem.size() as isize;
        let overflow = || shape_err(format!("{what}: shape {dims:?} with these strides overflows the address space"));
        let mut hi = 0isize;
        let mut lo = 0isize;
        if numel > 0 {
            let row_major = row_major_strides(&shape_u);
            for k in 0..ndim {
                let st = match &strides {
                    Some(s) => s[k],
                    None => isize::try_from(row_major[k]).map_err(|_| overflow())?,
                };
                let ext = isize::try_from(shape_u[k] - 1).map_err(|_| overflow())?;
                let reach = st.checked_mul(ext).and_then(|x| x.checked_mul(esz)).ok_or_else(overflow)?;
                if reach > 0 {
                    hi = hi.checked_add(reach).ok_or_else(overflow)?;
                } else {
                    lo = lo.checked_add(reach).ok_or_else(overflow)?;
                }
            }
            hi = hi.checked_add(esz).ok_or_else(overflow)?;
        }
        let offset = usize::try_from(byte_offset).map_err(|_| overflow())?;
        if numel > 0 && data.is_null() {
            return Err(FfiError::null(&format!("{what}.data")));
        }
        let base = (data as usize).checked_add(offset).ok_or_else(overflow)? as *const u8;
        Ok(RawView { base, elem, shape: shape_u, strides, span: (lo, hi), staging: None, cuda: None })
    }

    /// A plain `ft_tensor` view.
    ///
    /// # Safety
    /// The view's pointers satisfy the contract documented on `ft_tensor`.
    pub unsafe fn from_ft(t: &ft_tensor, what: &str) -> FfiResult<RawView> {
        let elem = match t.dtype {
            0 => Elem::F32,
            1 => Elem::F16,
            2 => Elem::BF16,
            other => {
                return Err(Error::dtype(
                    what,
                    format!("{what} has dtype {other}; expected FT_F32 (0), FT_F16 (1) or FT_BF16 (2)"),
                )
                .into())
            }
        };
        // SAFETY: forwarded contract.
        unsafe { Self::checked(t.data.cast(), 0, elem, t.ndim, t.shape, t.strides, what) }
    }

    /// A DLPack tensor in host memory.
    ///
    /// # Safety
    /// `t` is a valid `DLTensor` whose data, shape and strides are valid for reads.
    pub unsafe fn from_dl(t: &DLTensor, what: &str) -> FfiResult<RawView> {
        let on_device = is_cuda_memory(t.device.device_type);
        if !on_device {
            check_device(t.device.device_type, t.device.device_id, what)?;
        }
        let dt = t.dtype;
        let elem = match (dt.code, dt.bits, dt.lanes) {
            (kdl::FLOAT, 32, 1) => Elem::F32,
            (kdl::FLOAT, 16, 1) => Elem::F16,
            (kdl::BFLOAT, 16, 1) => Elem::BF16,
            (code, bits, lanes) => {
                let name = match code {
                    kdl::INT => format!("int{bits}"),
                    kdl::UINT => format!("uint{bits}"),
                    kdl::FLOAT => format!("float{bits}"),
                    kdl::BFLOAT => format!("bfloat{bits}"),
                    c => format!("type code {c} with {bits} bits"),
                };
                let lanes = if lanes != 1 { format!(" x{lanes} lanes") } else { String::new() };
                return Err(
                    Error::dtype(what, format!("{what} has dtype {name}{lanes}; expected float32, float16 or bfloat16"))
                        .into(),
                );
            }
        };
        let ndim = usize::try_from(t.ndim)
            .map_err(|_| shape_err(format!("{what} has a negative number of dimensions ({})", t.ndim)))?;
        // SAFETY: forwarded contract (shape and strides are host arrays even for device data).
        let view = unsafe { Self::checked(t.data as *const u8, t.byte_offset, elem, ndim, t.shape, t.strides, what) }?;
        if on_device {
            return view.on_cuda(t.device.device_type, t.device.device_id, what);
        }
        Ok(view)
    }

    /// The view of CUDA memory, checked with the driver to lie in one allocation of the device
    /// its label names; nothing is copied yet.
    #[cfg(feature = "cuda")]
    fn on_cuda(self, device_type: i32, device_id: i32, what: &str) -> FfiResult<RawView> {
        let numel: usize = self.shape.iter().product();
        if numel == 0 {
            return Ok(self);
        }
        let ordinal = usize::try_from(device_id)
            .map_err(|_| device_err(what, format!("{what} is on CUDA device {device_id}")))?;
        let (lo, hi) = self.span;
        let len = usize::try_from(hi - lo).map_err(|_| shape_err(format!("{what}: empty byte range")))?;
        let start = (self.base as isize).checked_add(lo).ok_or_else(|| shape_err(format!("{what}: address overflow")))?;
        // A tensor whose label names a device its bytes are not on (or no usable device) is the
        // caller's device error, said plainly, not a copy from wherever the pointer points.
        crate::cuda::host_copy::check_device_range(ordinal, start as u64, len).map_err(|why| {
            device_err(
                what,
                format!(
                    "{what} is labelled {} memory of device {device_id}, but {why}; pass a tensor that lives \
                     there, or copy it to the CPU first (e.g. `tensor.cpu()` in PyTorch)",
                    device_name(device_type)
                ),
            )
        })?;
        Ok(RawView { cuda: Some((ordinal, device_type)), ..self })
    }

    /// The same view over a host copy of the CUDA memory it describes: one device-to-host copy
    /// of the bytes between the lowest and the highest element, after synchronising the device
    /// (so work queued on any stream of the caller's is complete).
    #[cfg(feature = "cuda")]
    fn staged(&self, ordinal: usize) -> FfiResult<RawView> {
        let (lo, hi) = self.span;
        let len = usize::try_from(hi - lo).map_err(|_| shape_err("empty byte range".into()))?;
        let start = (self.base as isize).wrapping_add(lo);
        let host = crate::cuda::host_copy::copy_to_host(ordinal, start as u64, len)?;
        // `base` is `-lo` bytes into the copy; the Vec's buffer does not move while it is owned
        // by the view.
        let base = host.as_ptr().wrapping_offset(-lo);
        Ok(RawView {
            base,
            elem: self.elem,
            shape: self.shape.clone(),
            strides: self.strides.clone(),
            span: self.span,
            staging: Some(host),
            cuda: None,
        })
    }

    #[cfg(not(feature = "cuda"))]
    fn on_cuda(self, device_type: i32, device_id: i32, what: &str) -> FfiResult<RawView> {
        Err(device_err(
            what,
            format!(
                "{what} is in {} memory (device {device_id}); this build reads host memory only \
                 (rebuild with --features cuda, or copy the tensor to the CPU first, e.g. `tensor.cpu()`)",
                device_name(device_type)
            ),
        ))
    }

    /// The precision of the viewed elements.
    pub fn precision(&self) -> crate::data::Precision {
        self.elem.precision()
    }

    /// Copies the elements, in row-major order, into an owned f32 array.
    ///
    /// # Safety
    /// The memory described is valid for reads (the constructors' contracts).
    pub unsafe fn to_array(&self) -> FfiResult<Array> {
        #[cfg(feature = "cuda")]
        if let Some((ordinal, _)) = self.cuda {
            // SAFETY: the staged view describes its own host copy.
            return unsafe { self.staged(ordinal)?.to_array() };
        }
        let numel: usize = self.shape.iter().product();
        let mut out = crate::data::limits::try_with_capacity("tensor copy", numel)?;
        let esz = self.elem.size();
        let read = |p: *const u8| -> f32 {
            // SAFETY: `p` is one of the elements the view describes (checked in-bounds by the
            // index arithmetic below); unaligned reads are allowed.
            unsafe {
                match self.elem {
                    Elem::F32 => p.cast::<f32>().read_unaligned(),
                    Elem::F16 => half::f16::from_bits(p.cast::<u16>().read_unaligned()).to_f32(),
                    Elem::BF16 => half::bf16::from_bits(p.cast::<u16>().read_unaligned()).to_f32(),
                }
            }
        };
        let compact = match &self.strides {
            None => true,
            Some(s) => {
                let rm = row_major_strides(&self.shape);
                s.iter().zip(&rm).zip(&self.shape).all(|((&a, &b), &d)| d <= 1 || a == b as isize)
            }
        };
        if numel == 0 {
            return Ok(Array { shape: self.shape.clone(), data: out });
        }
        if compact {
            for i in 0..numel {
                // SAFETY: i < numel elements of a compact tensor starting at `base`.
                out.push(read(unsafe { self.base.add(i * esz) }));
            }
        } else {
            let strides = self.strides.as_ref().expect("non-compact implies strides");
            let nd = self.shape.len();
            let mut idx = vec![0usize; nd];
            let mut off: isize = 0;
            for _ in 0..numel {
                // SAFETY: `off` is Σ idx_k·stride_k for an in-range index, whose byte offset was
                // proven representable in `checked`.
                out.push(read(unsafe { self.base.offset(off * esz as isize) }));
                let mut k = nd;
                while k > 0 {
                    k -= 1;
                    idx[k] += 1;
                    off += strides[k];
                    if idx[k] < self.shape[k] {
                        break;
                    }
                    off -= strides[k] * self.shape[k] as isize;
                    idx[k] = 0;
                }
            }
        }
        Ok(Array { shape: self.shape.clone(), data: out })
    }
}

fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1].saturating_mul(shape[k + 1]);
    }
    s
}

fn device_name(t: i32) -> String {
    match t {
        kdl::CUDA => "CUDA device".into(),
        kdl::CUDA_MANAGED => "CUDA managed".into(),
        kdl::ROCM => "ROCm device".into(),
        4 => "OpenCL".into(),
        7 => "Vulkan".into(),
        8 => "Metal".into(),
        14 => "oneAPI".into(),
        other => format!("DLPack device type {other}"),
    }
}

/// CUDA device and managed memory (readable by builds with the `cuda` feature).
fn is_cuda_memory(device_type: i32) -> bool {
    device_type == kdl::CUDA || device_type == kdl::CUDA_MANAGED
}

/// Host memory (`kDLCPU`, and CUDA pinned host memory `kDLCUDAHost`) is readable; anything else
/// is an `FT_ERR_DEVICE` that says what to do.
pub(crate) fn check_device(device_type: i32, device_id: i32, what: &str) -> FfiResult<()> {
    if device_type == kdl::CPU || device_type == kdl::CUDA_HOST {
        return Ok(());
    }
    let why = "the library reads host and CUDA memory only";
    Err(device_err(
        what,
        format!(
            "{what} is in {} memory (device {device_id}); {why}: copy the tensor to the CPU \
             first (e.g. `tensor.cpu()` in PyTorch)",
            device_name(device_type)
        ),
    ))
}

/// Appends a layer whose tensors (`local`, and `global` when given) are all in memory of one
/// CUDA device, keeping it on that device: the library copies them device-to-device into memory
/// it owns (checked against the device's free memory first), so the caller may free or reuse
/// its tensors once the call returns, and work on that device prepares the layer there. Returns
/// `false`, appending nothing, when the tensors are not all on one CUDA device (the caller then
/// copies them to the host); the set is unchanged on error.
pub(crate) fn push_device_layer(
    f: &mut crate::data::StoredFeatures,
    local: &RawView,
    global: Option<&RawView>,
) -> FfiResult<bool> {
    #[cfg(feature = "cuda")]
    {
        let Some((ordinal, _)) = local.cuda else { return Ok(false) };
        if global.is_some_and(|g| g.cuda.map(|(o, _)| o) != Some(ordinal)) {
            return Ok(false);
        }
        let l = f.layers().len();
        let shape: [usize; 4] = match local.shape[..] {
            [n, c, h, w] if n > 0 && c > 0 && h > 0 && w > 0 => [n, c, h, w],
            _ => {
                return Err(shape_err(format!(
                    "layer {l}: the local map has shape {:?}; expected 4 dimensions [N, C, H, W], all > 0",
                    local.shape
                )))
            }
        };
        let [n, c, _, _] = shape;
        if let Some(first) = f.layers().first() {
            let n0 = first.shape()[0];
            if n != n0 {
                return Err(shape_err(format!("layer {l}: the local map has {n} images but layer 0 has {n0}")));
            }
        }
        if let Some(g) = global {
            if g.shape != [n, c] {
                return Err(shape_err(format!(
                    "layer {l}: the global token has shape {:?}; expected [{n}, {c}] (images × channels of the local map)",
                    g.shape
                )));
            }
        }
        let caller = |v: &RawView, shape: [usize; 4]| {
            let strides = match &v.strides {
                Some(s) => s.iter().map(|&x| x as i64).collect(),
                None => row_major_strides(&v.shape).iter().map(|&x| x as i64).collect::<Vec<_>>(),
            };
            let mut padded = [0i64; 4];
            padded[..strides.len()].copy_from_slice(&strides);
            crate::cuda::resident::CallerTensor { address: v.base as u64, precision: v.elem.precision(), shape, strides: padded }
        };
        let local_t = caller(local, shape);
        let global_t = global.map(|g| caller(g, [n, c, 1, 1]));
        use crate::cuda::resident::{CopyError, DeviceLayer};
        let layer = DeviceLayer::copy(ordinal, &local_t, global_t.as_ref()).map_err(|e| match e {
            CopyError::NonFinite { tensor, index, value } => {
                // Unravelled in the shape the caller gave ([N, C] for a global token, not the
                // padded [N, C, 1, 1]), as for a host tensor.
                let (what, shape) = match (tensor, global) {
                    ("global", Some(g)) => ("global token", &g.shape[..]),
                    _ => ("local map", &local.shape[..]),
                };
                crate::ffi::features::non_finite_error(l, what, value, &crate::data::array::unravel(shape, index))
            }
            CopyError::Other(e) => e.into(),
        })?;
        f.push(crate::data::StoredLayer::on_device(layer))?;
        Ok(true)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (f, local, global);
        Ok(false)
    }
}
