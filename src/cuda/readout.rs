//! Safe wrappers of `kernels/readout.cu`, mirroring [`crate::model::readout::forward`] and
//! [`crate::model::readout::backward`]: same packed operands, same [`Dims`], device buffers in
//! place of host slices. Every length is checked before a launch, since the kernels trust them.

use super::module::{cuda, Gpu};
use super::util::{check_len, dim_i32, launch_err};
use crate::error::{Error, Result};
use crate::model::readout::Dims;
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

/// Warps per block of the forward and the voxel pass (one voxel per warp).
const WARPS: u32 = 8;
/// Dynamic shared memory any kernel may use without opting in.
const DEFAULT_SHARED: usize = 48 * 1024;

/// Storage type of the maps operand of the forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    F16,
    Bf16,
}

fn check_dims(d: &Dims) -> Result<()> {
    if d.b == 0 || d.l == 0 || d.g == 0 || d.d == 0 || d.v == 0 {
        return Err(Error::invalid(format!("readout: every dimension must be positive, got {d:?}")));
    }
    // The kernels index with 32-bit ints for dimensions and size_t for offsets.
    for (name, x) in [("B", d.b), ("L", d.l), ("G*G+1", d.cells()), ("D+1", d.d + 1), ("V", d.v)] {
        dim_i32(name, x)?;
    }
    Ok(())
}

fn check_operands(d: &Dims, maps: usize, sel: usize, wc: usize) -> Result<()> {
    check_dims(d)?;
    check_len("readout maps [B, L, G*G+1, D]", maps, d.b * d.l * d.cells() * d.d)?;
    check_len("readout sel [V, L+3]", sel, d.v * d.sel_width())?;
    check_len("readout wc [V, D+1]", wc, d.v * (d.d + 1))
}

fn voxel_grid(d: &Dims) -> LaunchConfig {
    LaunchConfig { grid_dim: ((d.v as u32).div_ceil(WARPS), 1, 1), block_dim: (32 * WARPS, 1, 1), shared_mem_bytes: 0 }
}

/// `out [B, V]` = readout of `maps` (f32) with selectors `sel` and readout weights `wc`.
pub fn forward_into(
    gpu: &Gpu,
    d: &Dims,
    maps: &CudaView<f32>,
    sel: &CudaView<f32>,
    wc: &CudaView<f32>,
    out: &mut CudaViewMut<f32>,
) -> Result<()> {
    check_operands(d, maps.len(), sel.len(), wc.len())?;
    check_len("readout output [B, V]", out.len(), d.b * d.v)?;
    let (b, l, g, dd, v) = (d.b as i32, d.l as i32, d.g as i32, d.d as i32, d.v as i32);
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.readout_fwd_f32);
    launch.arg(maps).arg(sel).arg(wc).arg(out).arg(&b).arg(&l).arg(&g).arg(&dd).arg(&v);
    // SAFETY: the argument list matches readout_fwd_f32's signature, every buffer length was
    // checked against the dimensions above, and the kernel touches nothing else.
    unsafe { launch.launch(voxel_grid(d)) }.map_err(launch_err("readout_fwd_f32"))?;
    Ok(())
}

/// The forward with 16-bit maps (raw f16 or bf16 bit patterns), accumulated in f32.
pub fn forward_half_into(
    gpu: &Gpu,
    d: &Dims,
    kind: Half,
    maps: &CudaView<u16>,
    sel: &CudaView<f32>,
    wc: &CudaView<f32>,
    out: &mut CudaViewMut<f32>,
) -> Result<()> {
    check_operands(d, maps.len(), sel.len(), wc.len())?;
    check_len("readout output [B, V]", out.len(), d.b * d.v)?;
    let (b, l, g, dd, v) = (d.b as i32, d.l as i32, d.g as i32, d.d as i32, d.v as i32);
    let (func, name) = match kind {
        Half::F16 => (&gpu.kernels.readout_fwd_f16, "readout_fwd_f16"),
        Half::Bf16 => (&gpu.kernels.readout_fwd_bf16, "readout_fwd_bf16"),
    };
    let mut launch = gpu.stream.launch_builder(func);
    launch.arg(maps).arg(sel).arg(wc).arg(out).arg(&b).arg(&l).arg(&g).arg(&dd).arg(&v);
    // SAFETY: as in forward_into; the f16/bf16 kernels read maps as 2-byte elements, which is
    // what a u16 buffer of the checked length holds.
    unsafe { launch.launch(voxel_grid(d)) }.map_err(launch_err(name))?;
    Ok(())
}

/// Allocating form of [`forward_into`], the device twin of `model::readout::forward`.
pub fn forward(
    gpu: &Gpu,
    d: &Dims,
    maps: &CudaSlice<f32>,
    sel: &CudaSlice<f32>,
    wc: &CudaSlice<f32>,
) -> Result<CudaSlice<f32>> {
    let mut out = gpu.stream.alloc_zeros::<f32>(d.b * d.v).map_err(cuda("allocating the readout output"))?;
    forward_into(gpu, d, &maps.as_view(), &sel.as_view(), &wc.as_view(), &mut out.as_view_mut())?;
    Ok(out)
}

/// Gradients of the readout for the upstream gradient `go [B, V]`: `dmaps`, `dsel`, `dwc` are
/// overwritten (not accumulated). Two passes as on the CPU: over voxels (d sel, d wc) and over
/// (image, layer) blocks (d maps), neither with atomics, so the result is deterministic.
#[allow(clippy::too_many_arguments)]
pub fn backward_into(
    gpu: &Gpu,
    d: &Dims,
    maps: &CudaView<f32>,
    sel: &CudaView<f32>,
    wc: &CudaView<f32>,
    go: &CudaView<f32>,
    dmaps: &mut CudaViewMut<f32>,
    dsel: &mut CudaViewMut<f32>,
    dwc: &mut CudaViewMut<f32>,
) -> Result<()> {
    check_operands(d, maps.len(), sel.len(), wc.len())?;
    check_len("readout upstream gradient [B, V]", go.len(), d.b * d.v)?;
    check_operands(d, dmaps.len(), dsel.len(), dwc.len())?;
    let (b, l, g, dd, v) = (d.b as i32, d.l as i32, d.g as i32, d.d as i32, d.v as i32);

    // Pass 1: one warp per voxel, D floats of shared memory per warp for its d W row.
    let row_bytes = d.d * 4;
    if row_bytes > DEFAULT_SHARED {
        return Err(Error::invalid(format!(
            "readout backward: D = {} is too wide for the GPU kernel (max {})",
            d.d,
            DEFAULT_SHARED / 4
        )));
    }
    let warps = (DEFAULT_SHARED / row_bytes).clamp(1, WARPS as usize) as u32;
    let cfg = LaunchConfig {
        grid_dim: ((d.v as u32).div_ceil(warps), 1, 1),
        block_dim: (32 * warps, 1, 1),
        shared_mem_bytes: (warps as usize * row_bytes) as u32,
    };
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.readout_bwd_voxels);
    launch.arg(maps).arg(sel).arg(wc).arg(go).arg(&mut *dsel).arg(&mut *dwc);
    launch.arg(&b).arg(&l).arg(&g).arg(&dd).arg(&v);
    // SAFETY: arguments match readout_bwd_voxels; lengths checked above; the shared memory
    // matches warps*D floats as the kernel expects for blockDim = 32*warps.
    unsafe { launch.launch(cfg) }.map_err(launch_err("readout_bwd_voxels"))?;

    // Pass 2: one block per (32-wide d tile, layer, image), G*G + warps rows of 32 floats.
    let shared = (d.g * d.g + WARPS as usize) * 32 * 4;
    if shared > DEFAULT_SHARED {
        if shared > gpu.max_shared_optin {
            return Err(Error::invalid(format!(
                "readout backward: G = {} needs {shared} bytes of shared memory per block, more than this GPU's {}",
                d.g, gpu.max_shared_optin
            )));
        }
        // Unlike its launches, cudarc's set_attribute does not make the context current.
        gpu.ctx.bind_to_thread().map_err(cuda("binding the CUDA context"))?;
        gpu.kernels
            .readout_bwd_maps
            .set_attribute(
                cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                shared as i32,
            )
            .map_err(cuda("raising the shared-memory limit of readout_bwd_maps"))?;
    }
    let cfg = LaunchConfig {
        grid_dim: ((d.d as u32).div_ceil(32), d.l as u32, d.b as u32),
        block_dim: (32 * WARPS, 1, 1),
        shared_mem_bytes: shared as u32,
    };
    if d.l > 65535 || d.b > 65535 {
        return Err(Error::invalid("readout backward: B and L must be at most 65535 (grid limits)"));
    }
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.readout_bwd_maps);
    launch.arg(sel).arg(wc).arg(go).arg(&mut *dmaps);
    launch.arg(&b).arg(&l).arg(&g).arg(&dd).arg(&v);
    // SAFETY: arguments match readout_bwd_maps; lengths checked; the grid covers every
    // (d tile, layer, image) so every element of dmaps is written.
    unsafe { launch.launch(cfg) }.map_err(launch_err("readout_bwd_maps"))?;
    Ok(())
}

/// Allocating form of [`backward_into`], the device twin of `model::readout::backward`:
/// returns `(d maps, d sel, d wc)`.
pub fn backward(
    gpu: &Gpu,
    d: &Dims,
    maps: &CudaSlice<f32>,
    sel: &CudaSlice<f32>,
    wc: &CudaSlice<f32>,
    go: &CudaSlice<f32>,
) -> Result<(CudaSlice<f32>, CudaSlice<f32>, CudaSlice<f32>)> {
    let alloc = |n: usize| gpu.stream.alloc_zeros::<f32>(n).map_err(cuda("allocating readout gradients"));
    let mut dmaps = alloc(maps.len())?;
    let mut dsel = alloc(sel.len())?;
    let mut dwc = alloc(wc.len())?;
    backward_into(
        gpu,
        d,
        &maps.as_view(),
        &sel.as_view(),
        &wc.as_view(),
        &go.as_view(),
        &mut dmaps.as_view_mut(),
        &mut dsel.as_view_mut(),
        &mut dwc.as_view_mut(),
    )?;
    Ok((dmaps, dsel, dwc))
}
