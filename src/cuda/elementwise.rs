//! Safe wrappers of `kernels/elementwise.cu`: bias + GELU, smooth-L1, deterministic sums, the
//! squared gradient norm, AdamW with clipping, and the f16/bf16 → f32 row gather.

use super::module::Gpu;
use super::util::{check_len, dim_i32, launch_err, stride_blocks};
use crate::error::{Error, Result};
use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

/// Partials of every two-stage reduction; must equal REDUCE_BLOCKS in elementwise.cu.
pub const REDUCE_BLOCKS: usize = 256;
/// Threads per reduction block; must equal REDUCE_THREADS in elementwise.cu.
const REDUCE_THREADS: u32 = 256;
const BLOCK: u32 = 256;

fn stride_cfg(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (stride_blocks(n, BLOCK), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

fn reduce_cfg() -> LaunchConfig {
    LaunchConfig { grid_dim: (REDUCE_BLOCKS as u32, 1, 1), block_dim: (REDUCE_THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// `pre[r, c] += bias[c]` in place, then `out = gelu(pre)` (erf form).
pub fn bias_gelu_forward(
    gpu: &Gpu,
    rows: usize,
    cols: usize,
    pre: &mut CudaViewMut<f32>,
    bias: &CudaView<f32>,
    out: &mut CudaViewMut<f32>,
) -> Result<()> {
    let (r, c) = (dim_i32("rows", rows)?, dim_i32("cols", cols)?);
    check_len("bias_gelu pre-activation", pre.len(), rows * cols)?;
    check_len("bias_gelu bias", bias.len(), cols)?;
    check_len("bias_gelu output", out.len(), rows * cols)?;
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.bias_gelu_fwd);
    launch.arg(pre).arg(bias).arg(out).arg(&r).arg(&c);
    // SAFETY: arguments match bias_gelu_fwd; lengths checked; grid-stride loop bounded by n.
    unsafe { launch.launch(stride_cfg(rows * cols)) }.map_err(launch_err("bias_gelu_fwd"))?;
    Ok(())
}

/// `y = gelu(x)`.
pub fn gelu_forward(gpu: &Gpu, x: &CudaView<f32>, y: &mut CudaViewMut<f32>) -> Result<()> {
    let n = dim_i32("gelu length", x.len())?;
    check_len("gelu output", y.len(), x.len())?;
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.gelu_fwd);
    launch.arg(x).arg(y).arg(&n);
    // SAFETY: arguments match gelu_fwd; lengths checked.
    unsafe { launch.launch(stride_cfg(x.len())) }.map_err(launch_err("gelu_fwd"))?;
    Ok(())
}

/// `din = dout · gelu'(pre)`.
pub fn gelu_backward(gpu: &Gpu, dout: &CudaView<f32>, pre: &CudaView<f32>, din: &mut CudaViewMut<f32>) -> Result<()> {
    let n = dim_i32("gelu length", pre.len())?;
    check_len("gelu upstream gradient", dout.len(), pre.len())?;
    check_len("gelu input gradient", din.len(), pre.len())?;
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.gelu_bwd);
    launch.arg(dout).arg(pre).arg(din).arg(&n);
    // SAFETY: arguments match gelu_bwd; lengths checked.
    unsafe { launch.launch(stride_cfg(pre.len())) }.map_err(launch_err("gelu_bwd"))?;
    Ok(())
}

/// Smooth-L1 of `pred − target`: writes `grad = grad_scale · d loss/d pred` and leaves
/// `scale · Σ loss` in `out[0]` (use `scale = grad_scale = 1/n` for the mean).
#[allow(clippy::too_many_arguments)]
pub fn smooth_l1(
    gpu: &Gpu,
    pred: &CudaView<f32>,
    target: &CudaView<f32>,
    grad: &mut CudaViewMut<f32>,
    partials: &mut CudaViewMut<f32>,
    out: &mut CudaViewMut<f32>,
    beta: f32,
    grad_scale: f32,
    scale: f32,
) -> Result<()> {
    let n = dim_i32("smooth-L1 length", pred.len())?;
    check_len("smooth-L1 target", target.len(), pred.len())?;
    check_len("smooth-L1 gradient", grad.len(), pred.len())?;
    check_len("reduction partials", partials.len(), REDUCE_BLOCKS)?;
    if beta.is_nan() || beta <= 0.0 {
        return Err(Error::invalid(format!("smooth-L1 beta must be positive, got {beta}")));
    }
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.smooth_l1_fwd_bwd);
    launch.arg(pred).arg(target).arg(grad).arg(&mut *partials).arg(&n).arg(&beta).arg(&grad_scale);
    // SAFETY: arguments match smooth_l1_fwd_bwd; lengths checked; REDUCE_BLOCKS partials.
    unsafe { launch.launch(reduce_cfg()) }.map_err(launch_err("smooth_l1_fwd_bwd"))?;
    finish(gpu, &partials.as_view(), out, scale)
}

fn finish(gpu: &Gpu, partials: &CudaView<f32>, out: &mut CudaViewMut<f32>, scale: f32) -> Result<()> {
    if out.is_empty() {
        return Err(Error::invalid("reduction output buffer is empty"));
    }
    let n = REDUCE_BLOCKS as i32;
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.finish_sum);
    launch.arg(partials).arg(out).arg(&n).arg(&scale);
    let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (REDUCE_THREADS, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: arguments match finish_sum; partials has REDUCE_BLOCKS elements, out at least one.
    unsafe { launch.launch(cfg) }.map_err(launch_err("finish_sum"))?;
    Ok(())
}

/// `out[0] = scale · Σ x`, deterministic.
pub fn sum(
    gpu: &Gpu,
    x: &CudaView<f32>,
    partials: &mut CudaViewMut<f32>,
    out: &mut CudaViewMut<f32>,
    scale: f32,
) -> Result<()> {
    let n = dim_i32("sum length", x.len())?;
    check_len("reduction partials", partials.len(), REDUCE_BLOCKS)?;
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.sum_partials);
    launch.arg(x).arg(&mut *partials).arg(&n);
    // SAFETY: arguments match sum_partials; lengths checked.
    unsafe { launch.launch(reduce_cfg()) }.map_err(launch_err("sum_partials"))?;
    finish(gpu, &partials.as_view(), out, scale)
}

/// `out[0] = Σ x²`, deterministic.
pub fn sqnorm(gpu: &Gpu, x: &CudaView<f32>, partials: &mut CudaViewMut<f32>, out: &mut CudaViewMut<f32>) -> Result<()> {
    let n = dim_i32("norm length", x.len())?;
    check_len("reduction partials", partials.len(), REDUCE_BLOCKS)?;
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.sqnorm_partials);
    launch.arg(x).arg(&mut *partials).arg(&n);
    // SAFETY: arguments match sqnorm_partials; lengths checked.
    unsafe { launch.launch(reduce_cfg()) }.map_err(launch_err("sqnorm_partials"))?;
    finish(gpu, &partials.as_view(), out, 1.0)
}

/// AdamW hyper-parameters of one step (candle-nn's AdamW, DESIGN §3.5).
#[derive(Debug, Clone, Copy)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub max_norm: f64,
}

/// One AdamW step at optimiser step `t` (1-based) on `param` with gradient `grad`, after scaling
/// `grad` by `min(1, max_norm/(√sqnorm[0] + 1e-6))`; `sqnorm` stays on the device.
#[allow(clippy::too_many_arguments)]
pub fn adamw_step(
    gpu: &Gpu,
    hp: &AdamW,
    t: usize,
    param: &mut CudaViewMut<f32>,
    grad: &CudaView<f32>,
    m: &mut CudaViewMut<f32>,
    v: &mut CudaViewMut<f32>,
    sqnorm: &CudaView<f32>,
) -> Result<()> {
    let n = dim_i32("parameter count", param.len())?;
    check_len("AdamW gradient", grad.len(), param.len())?;
    check_len("AdamW first moment", m.len(), param.len())?;
    check_len("AdamW second moment", v.len(), param.len())?;
    if sqnorm.is_empty() || t == 0 {
        return Err(Error::invalid("AdamW: the norm buffer is empty or the step is 0 (steps count from 1)"));
    }
    let t_i = i32::try_from(t).unwrap_or(i32::MAX);
    let scale_m = (1.0 / (1.0 - hp.beta1.powi(t_i))) as f32;
    let scale_v = (1.0 / (1.0 - hp.beta2.powi(t_i))) as f32;
    let (max_norm, lr, b1, b2, eps, wd) =
        (hp.max_norm as f32, hp.lr as f32, hp.beta1 as f32, hp.beta2 as f32, hp.eps as f32, hp.weight_decay as f32);
    let cfg = stride_cfg(param.len());
    let mut launch = gpu.stream.launch_builder(&gpu.kernels.adamw_step);
    launch.arg(param).arg(grad).arg(m).arg(v).arg(&n).arg(sqnorm);
    launch.arg(&max_norm).arg(&lr).arg(&b1).arg(&b2).arg(&eps).arg(&wd).arg(&scale_m).arg(&scale_v);
    // SAFETY: arguments match adamw_step; the four buffers have n elements, sqnorm at least one.
    unsafe { launch.launch(cfg) }.map_err(launch_err("adamw_step"))?;
    Ok(())
}

/// A device-resident row store in one of the accepted feature dtypes (16-bit types as raw bits).
pub enum Rows<'a> {
    F32(CudaView<'a, f32>),
    F16(CudaView<'a, u16>),
    Bf16(CudaView<'a, u16>),
}

impl Rows<'_> {
    fn len(&self) -> usize {
        match self {
            Rows::F32(v) => v.len(),
            Rows::F16(v) | Rows::Bf16(v) => v.len(),
        }
    }
}

/// `dst[r, :] = f32(src[idx[offset + r], :])` for `r < rows`, rows of `row_len` elements.
/// The indices must be in range for `src` (checked on the host by the caller that uploads them).
#[allow(clippy::too_many_arguments)]
pub fn gather_rows(
    gpu: &Gpu,
    src: &Rows,
    idx: &CudaView<i32>,
    offset: usize,
    rows: usize,
    row_len: usize,
    dst: &mut CudaViewMut<f32>,
) -> Result<()> {
    if row_len == 0 || src.len() % row_len != 0 {
        return Err(Error::invalid(format!("gather: source of {} elements is not whole rows of {row_len}", src.len())));
    }
    if offset + rows > idx.len() {
        return Err(Error::invalid(format!("gather: rows {offset}..{} past the {} indices", offset + rows, idx.len())));
    }
    check_len("gather destination", dst.len(), rows * row_len)?;
    let (off, r) = (dim_i32("gather offset", offset)?, dim_i32("gather rows", rows)?);
    let rl = row_len as i64;
    let cfg = stride_cfg(rows * row_len);
    match src {
        Rows::F32(s) => {
            let mut launch = gpu.stream.launch_builder(&gpu.kernels.gather_rows_f32);
            launch.arg(s).arg(idx).arg(&off).arg(&r).arg(&rl).arg(dst);
            // SAFETY: arguments match gather_rows_f32; lengths checked; indices trusted as documented.
            unsafe { launch.launch(cfg) }.map_err(launch_err("gather_rows_f32"))?;
        }
        Rows::F16(s) => {
            let mut launch = gpu.stream.launch_builder(&gpu.kernels.gather_rows_f16);
            launch.arg(s).arg(idx).arg(&off).arg(&r).arg(&rl).arg(dst);
            // SAFETY: as above; u16 elements are the f16 bit patterns the kernel reads.
            unsafe { launch.launch(cfg) }.map_err(launch_err("gather_rows_f16"))?;
        }
        Rows::Bf16(s) => {
            let mut launch = gpu.stream.launch_builder(&gpu.kernels.gather_rows_bf16);
            launch.arg(s).arg(idx).arg(&off).arg(&r).arg(&rl).arg(dst);
            // SAFETY: as above; u16 elements are the bf16 bit patterns the kernel reads.
            unsafe { launch.launch(cfg) }.map_err(launch_err("gather_rows_bf16"))?;
        }
    }
    Ok(())
}
