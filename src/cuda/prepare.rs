//! [`crate::model::PreparedFeatures`] on the device, for layers held there
//! ([`DeviceLayer`]): the same resampling to the encoder's grid (DESIGN §3.1, the host's taps),
//! the same global tokens (stored, or spatial means), the same rounding to the precision the
//! values are kept in and the same layer units, computed by `kernels/features.cu` in the order
//! the host computes them. The result feeds the CUDA trainer and predictor directly.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::elementwise::{gather_rows, Rows};
use super::module::{cuda, no_panic, Gpu};
use super::resident::{check_room, DeviceLayer};
use super::util::{dim_i32, launch_err, stride_blocks};
use crate::data::{FeatureSource, Precision};
use crate::error::{Error, Result};
use crate::model::preparation::LayerUnits;
use crate::model::prepared::DeviceValues;
use crate::model::resample::{axis_weights, Resample};

const BLOCK: u32 = 256;

fn cfg(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (stride_blocks(n, BLOCK), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// Prepared features in device memory, f32: per layer the local maps `[N, G·G, C_l]` and the
/// global tokens `[N, C_l]` of the chosen images, in the encoder's units, holding values of the
/// precision they are kept in. The buffers are shared with the trainers and predictors that
/// read them (no copy).
pub struct DevicePrepared {
    g: Arc<Gpu>,
    pub n_images: usize,
    pub grid: usize,
    pub widths: Vec<usize>,
    pub locals: Vec<Arc<CudaSlice<f32>>>,
    pub globals: Vec<Arc<CudaSlice<f32>>>,
}

impl std::fmt::Debug for DevicePrepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DevicePrepared(cuda:{}, {} images, widths {:?})", self.g.ordinal, self.n_images, self.widths)
    }
}

impl DevicePrepared {
    /// The device the values are on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.g
    }

    /// Rows of `widths[l]` values in layer `l`'s local maps (`global`: tokens). Empty buffers
    /// are allocated with one element, so the length comes from the sizes, not the buffer.
    fn rows(&self, global: bool) -> usize {
        if global {
            self.n_images
        } else {
            self.n_images * self.grid * self.grid
        }
    }

    fn part(&self, l: usize, global: bool) -> Result<&Arc<CudaSlice<f32>>> {
        let parts = if global { &self.globals } else { &self.locals };
        parts.get(l).ok_or_else(|| Error::invalid(format!("layer {l} out of range for {} layers", parts.len())))
    }
}

/// Blocks of rows per channel-moment pass: the partial sums are `MOMENT_CHUNKS × C` f64 values.
const MOMENT_CHUNKS: usize = 64;

impl DeviceValues for DevicePrepared {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn to_host(&self) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        no_panic("copying prepared features to the host", || {
            let read = |s: &CudaSlice<f32>, len: usize| -> Result<Vec<f32>> {
                let mut v = self.g.stream.clone_dtoh(s).map_err(cuda("copying prepared features to the host"))?;
                v.truncate(len);
                Ok(v)
            };
            self.locals
                .iter()
                .zip(&self.globals)
                .zip(&self.widths)
                .map(|((l, g), &c)| Ok((read(l, self.rows(false) * c)?, read(g, self.rows(true) * c)?)))
                .collect()
        })
    }

    fn images_to_host(&self, l: usize, global: bool, idx: &[usize]) -> Result<Vec<f32>> {
        let x = self.part(l, global)?;
        let row = if global { self.widths[l] } else { self.grid * self.grid * self.widths[l] };
        if idx.is_empty() || row == 0 {
            return Ok(Vec::new());
        }
        no_panic("copying prepared features to the host", || {
            let idx_dev = upload_index(&self.g, idx, self.n_images)?;
            let mut out = self.g.stream.alloc_zeros::<f32>(idx.len() * row).map_err(cuda("allocating prepared features"))?;
            gather_rows(&self.g, &Rows::F32(x.as_view()), &idx_dev.as_view(), 0, idx.len(), row, &mut out.as_view_mut())?;
            self.g.stream.clone_dtoh(&out).map_err(cuda("copying prepared features to the host"))
        })
    }

    fn channel_moments(&self, l: usize, global: bool) -> Result<(Vec<f64>, f64)> {
        let x = self.part(l, global)?;
        channel_moments(&self.g, x, self.rows(global), self.widths[l])
    }

    fn affine(&mut self, l: usize, global: bool, mean: &[f32], k: f32, precision: Precision) -> Result<()> {
        let c = self.widths[l];
        let g = self.g.clone();
        let parts = if global { &mut self.globals } else { &mut self.locals };
        let x = parts
            .get_mut(l)
            .and_then(Arc::get_mut)
            .ok_or_else(|| Error::invalid(format!("layer {l}'s device features are in use; they cannot change units now")))?;
        finish(&g, x, c, mean, k, true, round_code(precision))?;
        g.sync()
    }
}

fn round_code(precision: Precision) -> i32 {
    match precision {
        Precision::F32 => 0,
        Precision::F16 => 1,
        Precision::Bf16 => 2,
    }
}

/// Per-channel sums and the sum of squares (f64) of the `rows × c` values of `x`: partial sums
/// over blocks of rows on the device, summed over blocks there in block order; only the `2c`
/// totals come to the host.
fn channel_moments(g: &Gpu, x: &CudaSlice<f32>, rows: usize, c: usize) -> Result<(Vec<f64>, f64)> {
    if rows == 0 || c == 0 {
        return Ok((vec![0.0; c], 0.0));
    }
    let chunks = MOMENT_CHUNKS.min(rows);
    let chunk = rows.div_ceil(chunks);
    let chunks = rows.div_ceil(chunk);
    no_panic("computing layer units", || {
        let mut sums = g.stream.alloc_zeros::<f64>(chunks * c).map_err(cuda("allocating moment sums"))?;
        let mut squares = g.stream.alloc_zeros::<f64>(chunks * c).map_err(cuda("allocating moment sums"))?;
        let (rows_i, chunk_i, ci) = (rows as i64, chunk as i64, dim_i32("channels", c)?);
        let mut launch = g.stream.launch_builder(&g.kernels.channel_moments);
        launch.arg(x).arg(&rows_i).arg(&ci).arg(&chunk_i).arg(&mut sums).arg(&mut squares);
        let grid = LaunchConfig { grid_dim: (chunks as u32, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: arguments match channel_moments; `x` holds rows·c values and the two partial
        // buffers chunks·c values each, with chunks·chunk ≥ rows.
        unsafe { launch.launch(grid) }.map_err(launch_err("channel_moments"))?;
        let mut totals = g.stream.alloc_zeros::<f64>(2 * c).map_err(cuda("allocating moment sums"))?;
        let chunks_i = dim_i32("blocks", chunks)?;
        let mut launch = g.stream.launch_builder(&g.kernels.sum_moment_chunks);
        launch.arg(&sums).arg(&squares).arg(&chunks_i).arg(&ci).arg(&mut totals);
        // SAFETY: arguments match sum_moment_chunks; the partial buffers hold chunks·c values,
        // `totals` 2c.
        unsafe { launch.launch(cfg(c)) }.map_err(launch_err("sum_moment_chunks"))?;
        let totals = g.stream.clone_dtoh(&totals).map_err(cuda("reading layer moments"))?;
        let (sums, squares) = totals.split_at(c);
        Ok((sums.to_vec(), squares.iter().sum()))
    })
}

/// The device layers of `features` when every layer is held on `cuda:ordinal`, else `None` (the
/// host path prepares them).
pub fn resident_layers(features: &dyn FeatureSource, ordinal: usize) -> Option<Vec<&DeviceLayer>> {
    (0..features.n_layers())
        .map(|l| features.device_layer(l).filter(|d| d.gpu().ordinal == ordinal))
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
}

/// The images `idx` of `layers` resampled to `grid` with `resample`, in `units` (`None`: as they
/// are), kept in `precision` (the host's `PreparedFeatures` construction).
pub fn prepare(
    g: &Arc<Gpu>,
    layers: &[&DeviceLayer],
    idx: &[usize],
    (grid, method): (usize, Resample),
    units: Option<&[LayerUnits]>,
    precision: Precision,
) -> Result<DevicePrepared> {
    let widths: Vec<usize> = layers.iter().map(|d| d.shape()[1]).collect();
    let units = match units {
        Some(u) if u.len() == layers.len() => u.to_vec(),
        Some(u) => return Err(Error::mismatch(format!("the encoder has units for {} layers, the features have {}", u.len(), layers.len()))),
        None => widths.iter().map(|&c| LayerUnits::identity(c)).collect(),
    };
    let n_all = layers[0].shape()[0];
    for (l, d) in layers.iter().enumerate() {
        let [n, c, h, w] = d.shape();
        if n != n_all {
            return Err(Error::invalid(format!(
                "layer {l}: local map must be [N={n_all}, C={c}, H, W], got [{n}, {c}, {h}, {w}]"
            )));
        }
        units[l].check(c, &format!("layer {l}"))?;
    }
    let n = idx.len();
    let gg = grid * grid;
    let bytes: u128 = widths.iter().map(|&c| (n * (gg + 1) * c) as u128 * 4).sum();
    check_room(g, bytes, &format!("the prepared features ({n} images, grid {grid}, widths {widths:?})"))?;
    let idx_dev = upload_index(g, idx, n_all)?;
    let round = round_code(precision);
    let mut locals = Vec::with_capacity(layers.len());
    let mut globals = Vec::with_capacity(layers.len());
    for (l, d) in layers.iter().enumerate() {
        let c = widths[l];
        let mut local = resample(g, d, &idx_dev, n, (grid, method))?;
        let mut global = gather_global(g, d, &idx_dev, n)?;
        let u = &units[l];
        finish(g, &mut local, c, &u.local_mean, u.local_scale, !u.is_identity(), round)?;
        finish(g, &mut global, c, &u.global_mean, u.global_scale, !u.is_identity(), round)?;
        locals.push(Arc::new(local));
        globals.push(Arc::new(global));
    }
    g.sync()?;
    Ok(DevicePrepared { g: g.clone(), n_images: n, grid, widths, locals, globals })
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

fn resample(g: &Gpu, d: &DeviceLayer, idx: &CudaSlice<i32>, n: usize, (grid, method): (usize, Resample)) -> Result<CudaSlice<f32>> {
    let [_, c, h, w] = d.shape();
    crate::data::limits::positive_at_most("grid", grid, crate::data::limits::MAX_GRID)?;
    let count = crate::data::limits::elements("resampled local map [N, G·G, C]", &[n, grid, grid, c])?;
    let (ys, yi, yw) = tap_table(method.kernel(h, grid), h, grid)?;
    let (xs, xi, xw) = tap_table(method.kernel(w, grid), w, grid)?;
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
