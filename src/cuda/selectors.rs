//! Safe wrappers of `kernels/selectors.cu`: the selector heads (tanh, softmax, sigmoid) with the
//! warm-up regulariser, forward and backward, on the packed `[V, L + 3]` layout of the readout.

use super::module::Gpu;
use super::util::{check_len, dim_i32, launch_err};
use crate::error::Result;
use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

const BLOCK: u32 = 256;

fn cfg(v: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: ((v as u32).div_ceil(BLOCK), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// `sel = heads(raw)` and `reg[v]` = voxel v's term of the regulariser R (its mean over voxels
/// is R). `raw`, `sel`: `[V, L + 3]`; `reg`: `[V]`.
pub fn heads_forward(
    gpu: &Gpu,
    v: usize,
    l: usize,
    raw: &CudaView<f32>,
    sel: &mut CudaViewMut<f32>,
    reg: &mut CudaViewMut<f32>,
) -> Result<()> {
    let (vi, li) = (dim_i32("V", v)?, dim_i32("L", l)?);
    check_len("heads raw [V, L+3]", raw.len(), v * (l + 3))?;
    check_len("heads sel [V, L+3]", sel.len(), v * (l + 3))?;
    check_len("heads regulariser terms [V]", reg.len(), v)?;
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.heads_fwd);
    launch.arg(raw).arg(sel).arg(reg).arg(&vi).arg(&li);
    // SAFETY: arguments match heads_fwd; lengths checked; one thread per voxel.
    unsafe { launch.launch(cfg(v)) }.map_err(launch_err("heads_fwd"))?;
    Ok(())
}

/// `draw` = gradient w.r.t. the head inputs, from `dsel` (gradient w.r.t. the head outputs) plus
/// `reg_weight` times the gradient of R.
pub fn heads_backward(
    gpu: &Gpu,
    v: usize,
    l: usize,
    sel: &CudaView<f32>,
    dsel: &CudaView<f32>,
    draw: &mut CudaViewMut<f32>,
    reg_weight: f32,
) -> Result<()> {
    let (vi, li) = (dim_i32("V", v)?, dim_i32("L", l)?);
    for (what, n) in [("heads sel", sel.len()), ("heads d sel", dsel.len()), ("heads d raw", draw.len())] {
        check_len(what, n, v * (l + 3))?;
    }
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.heads_bwd);
    launch.arg(sel).arg(dsel).arg(draw).arg(&vi).arg(&li).arg(&reg_weight);
    // SAFETY: arguments match heads_bwd; lengths checked; one thread per voxel.
    unsafe { launch.launch(cfg(v)) }.map_err(launch_err("heads_bwd"))?;
    Ok(())
}
