//! [`crate::model::PreparedFeatures`] on the device, for layers held there
//! ([`DeviceLayer`]): the same resampling to the encoder's grid (DESIGN §3.1, the host's taps),
//! the same global tokens (stored, or spatial means), the same rounding to the precision the
//! values are kept in and the same layer units, computed by `kernels/features.cu` in the order
//! the host computes them. The result feeds the CUDA trainer directly.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::elementwise::{gather_rows, Rows};
use super::module::{cuda, Gpu};
use super::resident::{check_room, DeviceLayer};
use super::util::{dim_i32, launch_err, stride_blocks};
use crate::data::{FeatureSource, Precision};
use crate::error::{Error, Result};
use crate::model::encoder::EncoderSpec;
use crate::model::preparation::LayerUnits;
use crate::model::resample::axis_weights;

const BLOCK: u32 = 256;

fn cfg(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (stride_blocks(n, BLOCK), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// Prepared features in device memory, f32: per layer the local maps `[N, G·G, C_l]` and the
/// global tokens `[N, C_l]` of the chosen images, in the encoder's units.
pub struct DevicePrepared {
    pub n_images: usize,
    pub widths: Vec<usize>,
    pub locals: Vec<CudaSlice<f32>>,
    pub globals: Vec<CudaSlice<f32>>,
}

/// The device layers of `features` when every layer is held on the device `g`, else `None` (the
/// host path prepares them).
pub fn resident_layers<'a>(features: &'a dyn FeatureSource, g: &Gpu) -> Option<Vec<&'a DeviceLayer>> {
    (0..features.n_layers())
        .map(|l| features.device_layer(l).filter(|d| d.gpu().ordinal == g.ordinal))
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
}

/// The images `idx` of `layers` as an encoder with `spec` reads them, kept in `precision` (the
/// host's `PreparedFeatures::for_images`).
pub fn prepare(g: &Gpu, layers: &[&DeviceLayer], idx: &[usize], spec: &EncoderSpec, precision: Precision) -> Result<DevicePrepared> {
    if layers.len() != spec.widths.len() {
        return Err(Error::mismatch(format!("the encoder has {} layers, the features {}", spec.widths.len(), layers.len())));
    }
    let units = match &spec.layer_units {
        Some(u) if u.len() == layers.len() => u.clone(),
        Some(u) => return Err(Error::mismatch(format!("the encoder has units for {} layers, the features have {}", u.len(), layers.len()))),
        None => spec.widths.iter().map(|&c| LayerUnits::identity(c)).collect(),
    };
    let n_all = layers[0].shape()[0];
    for (l, d) in layers.iter().enumerate() {
        let [n, c, h, w] = d.shape();
        if n != n_all || c != spec.widths[l] {
            return Err(Error::invalid(format!(
                "layer {l}: local map must be [N={n_all}, C={}, H, W], got [{n}, {c}, {h}, {w}]",
                spec.widths[l]
            )));
        }
        units[l].check(c, &format!("layer {l}"))?;
    }
    let n = idx.len();
    let gg = spec.grid * spec.grid;
    let bytes: u128 = spec.widths.iter().map(|&c| (n * (gg + 1) * c) as u128 * 4).sum();
    check_room(g, bytes, &format!("the prepared features ({n} images, grid {}, widths {:?})", spec.grid, spec.widths))?;
    let idx_dev = upload_index(g, idx, n_all)?;
    let round = match precision {
        Precision::F32 => 0i32,
        Precision::F16 => 1,
        Precision::Bf16 => 2,
    };
    let mut locals = Vec::with_capacity(layers.len());
    let mut globals = Vec::with_capacity(layers.len());
    for (l, d) in layers.iter().enumerate() {
        let c = spec.widths[l];
        let mut local = resample(g, d, &idx_dev, n, spec)?;
        let mut global = gather_global(g, d, &idx_dev, n)?;
        let u = &units[l];
        finish(g, &mut local, c, &u.local_mean, u.local_scale, !u.is_identity(), round)?;
        finish(g, &mut global, c, &u.global_mean, u.global_scale, !u.is_identity(), round)?;
        locals.push(local);
        globals.push(global);
    }
    g.sync()?;
    Ok(DevicePrepared { n_images: n, widths: spec.widths.clone(), locals, globals })
}

/// The global tokens `[idx.len(), C]` of a device layer (the stored ones, or the spatial means of
/// its local maps), in device memory.
pub fn global_tokens(d: &DeviceLayer, idx: &[usize]) -> Result<CudaSlice<f32>> {
    let g = d.gpu();
    let idx_dev = upload_index(g, idx, d.shape()[0])?;
    let out = gather_global(g, d, &idx_dev, idx.len())?;
    g.sync()?;
    Ok(out)
}

fn upload_index(g: &Gpu, idx: &[usize], n_all: usize) -> Result<CudaSlice<i32>> {
    if let Some(&bad) = idx.iter().find(|&&i| i >= n_all) {
        return Err(Error::invalid(format!("image index {bad} out of range for {n_all} images")));
    }
    let v: Vec<i32> = idx.iter().map(|&i| dim_i32("image index", i)).collect::<Result<_>>()?;
    g.stream.clone_htod(if v.is_empty() { &[0][..] } else { &v[..] }).map_err(cuda("uploading image indices"))
}

/// One axis's taps as `(start [n_out + 1], index, weight)`.
fn tap_table(kernel: crate::model::resample::Kernel, n_in: usize, n_out: usize) -> Result<(Vec<i32>, Vec<i32>, Vec<f32>)> {
    let taps = axis_weights(kernel, n_in, n_out);
    let mut start = vec![0i32];
    let (mut index, mut weight) = (Vec::new(), Vec::new());
    for t in &taps {
        if t.is_empty() {
            return Err(Error::invalid(format!("resampling {n_in} to {n_out}: an output index has no taps")));
        }
        for &(i, w) in t {
            index.push(dim_i32("tap index", i)?);
            weight.push(w);
        }
        start.push(dim_i32("taps", index.len())?);
    }
    Ok((start, index, weight))
}

fn resample(g: &Gpu, d: &DeviceLayer, idx: &CudaSlice<i32>, n: usize, spec: &EncoderSpec) -> Result<CudaSlice<f32>> {
    let [_, c, h, w] = d.shape();
    let grid = spec.grid;
    crate::data::limits::positive_at_most("grid", grid, crate::data::limits::MAX_GRID)?;
    let count = crate::data::limits::elements("resampled local map [N, G·G, C]", &[n, grid, grid, c])?;
    let (ys, yi, yw) = tap_table(spec.resample.kernel(h, grid), h, grid)?;
    let (xs, xi, xw) = tap_table(spec.resample.kernel(w, grid), w, grid)?;
    let up_i = |v: &[i32]| g.stream.clone_htod(v).map_err(cuda("uploading resampling taps"));
    let up_f = |v: &[f32]| g.stream.clone_htod(v).map_err(cuda("uploading resampling taps"));
    let (ys, yi, yw, xs, xi, xw) = (up_i(&ys)?, up_i(&yi)?, up_f(&yw)?, up_i(&xs)?, up_i(&xi)?, up_f(&xw)?);
    let mut out = g.stream.alloc_zeros::<f32>(count.max(1)).map_err(cuda("allocating prepared features"))?;
    let (ni, ci, hi, wi, gi) = (dim_i32("images", n)?, dim_i32("channels", c)?, dim_i32("H", h)?, dim_i32("W", w)?, dim_i32("grid", grid)?);
    let identity = i32::from(h == grid && w == grid);
    let mut launch = g.stream.launch_builder(&g.kernels.resample_cells);
    launch
        .arg(d.local())
        .arg(idx)
        .arg(&ni)
        .arg(&ci)
        .arg(&hi)
        .arg(&wi)
        .arg(&gi)
        .arg(&ys)
        .arg(&yi)
        .arg(&yw)
        .arg(&xs)
        .arg(&xi)
        .arg(&xw)
        .arg(&identity)
        .arg(&mut out);
    // SAFETY: arguments match resample_cells; the source is [N, C, H, W], every index < N
    // (checked on upload), the tap tables have grid + 1 starts and indices < H (resp. W), and
    // `out` holds n·G·G·C values.
    unsafe { launch.launch(cfg(count)) }.map_err(launch_err("resample_cells"))?;
    Ok(out)
}

fn gather_global(g: &Gpu, d: &DeviceLayer, idx: &CudaSlice<i32>, n: usize) -> Result<CudaSlice<f32>> {
    let [_, c, h, w] = d.shape();
    let mut out = g.stream.alloc_zeros::<f32>((n * c).max(1)).map_err(cuda("allocating global tokens"))?;
    if n == 0 {
        return Ok(out);
    }
    match d.global() {
        Some(stored) => gather_rows(g, &Rows::F32(stored.as_view()), &idx.as_view(), 0, n, c, &mut out.as_view_mut())?,
        None => {
            let (ni, ci) = (dim_i32("images", n)?, dim_i32("channels", c)?);
            let hw = (h * w) as i64;
            let mut launch = g.stream.launch_builder(&g.kernels.spatial_means);
            launch.arg(d.local()).arg(idx).arg(&ni).arg(&ci).arg(&hw).arg(&mut out);
            // SAFETY: arguments match spatial_means; the source is [N, C, H·W], every index < N,
            // `out` holds n·C values.
            unsafe { launch.launch(cfg(n * c)) }.map_err(launch_err("spatial_means"))?;
        }
    }
    Ok(out)
}

fn finish(g: &Gpu, x: &mut CudaSlice<f32>, c: usize, mean: &[f32], k: f32, affine: bool, round: i32) -> Result<()> {
    if round == 0 && !affine {
        return Ok(());
    }
    let mean = g.stream.clone_htod(mean).map_err(cuda("uploading layer units"))?;
    let len = x.len();
    let n = len as i64;
    let ci = dim_i32("channels", c)?;
    let affine = i32::from(affine);
    let mut launch = g.stream.launch_builder(&g.kernels.finish_prepared);
    launch.arg(&mut *x).arg(&n).arg(&ci).arg(&mean).arg(&k).arg(&affine).arg(&round);
    // SAFETY: arguments match finish_prepared; `x` holds n values in rows of C, `mean` C values.
    unsafe { launch.launch(cfg(len)) }.map_err(launch_err("finish_prepared"))?;
    Ok(())
}
