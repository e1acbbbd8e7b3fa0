//! The GPU fit: the training loop of DESIGN §3.5–§3.6 with everything on the device.
//!
//! Features (in f32, f16 or bf16), responses and the positional encoding are uploaded once and
//! stay resident; a step gathers its batch on the device, runs the explicit forward and backward
//! of the model of §3 (cuBLAS for the alignment and MLP products, the fused readout, the heads,
//! smooth-L1, the regulariser), clips and applies AdamW, and brings back three scalars (the
//! two loss terms and the gradient norm). Parameters, gradients and optimiser moments each live
//! in one flat buffer, so the norm and AdamW are one kernel each.
//!
//! It implements `crate::engine::Trainer`, so the engine's one training loop drives it exactly
//! as it drives the CPU trainers: same initialisation (the CPU encoder is uploaded), same split,
//! same batch order, same epoch logic; results differ only by float rounding. A fit is
//! deterministic on one device: no kernel uses atomics.

use super::blas::{gemm, gemm_strided_batched, Gemm2, Op};
use super::elementwise::{self as ew, AdamW, Rows, REDUCE_BLOCKS};
use super::module::{cuda, gpu, no_panic, Gpu};
use super::readout as ro;
use super::selectors::{heads_backward, heads_forward};
use crate::engine::trainer::{Trainer, ADAMW_BETAS, ADAMW_EPS};
use crate::error::{Error, Result};
use crate::model::encoder::{Encoder, EncoderSpec, HIDDEN};
use crate::model::loss::regulariser_weight;
use crate::model::posenc::ENC_DIM;
use crate::model::readout::Dims;
use crate::model::{BrainTensors, FitConfig, PreparedFeatures};
use candle_core::Tensor;
use cudarc::driver::CudaSlice;
use std::sync::Arc;

/// How the features are stored on the device. Computation is f32 either way; 16-bit storage
/// halves the memory of the resident feature store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeatureDtype {
    /// The precision the prepared features are kept in on the host (`store` / `--store`, or the
    /// features file's): a 16-bit store stays 16-bit on the device, losslessly.
    #[default]
    AsPrepared,
    F32,
    F16,
    Bf16,
}

impl FeatureDtype {
    /// The storage type for features prepared in `precision`.
    pub fn resolve(self, precision: crate::data::Precision) -> FeatureDtype {
        use crate::data::Precision;
        match (self, precision) {
            (FeatureDtype::AsPrepared, Precision::F32) => FeatureDtype::F32,
            (FeatureDtype::AsPrepared, Precision::F16) => FeatureDtype::F16,
            (FeatureDtype::AsPrepared, Precision::Bf16) => FeatureDtype::Bf16,
            (d, _) => d,
        }
    }
}

/// Settings of the GPU path that the CPU path does not have.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuFitOptions {
    /// CUDA device ordinal.
    pub ordinal: usize,
    pub feature_dtype: FeatureDtype,
    /// Images per forward pass when predicting (validation); the work buffers are sized for
    /// max(batch size, this).
    pub eval_chunk: usize,
}

impl Default for GpuFitOptions {
    fn default() -> Self {
        Self { ordinal: 0, feature_dtype: FeatureDtype::AsPrepared, eval_chunk: 64 }
    }
}

/// Predictions `[idx.len(), V]` of a fixed encoder on `cuda:ordinal`: the features are uploaded
/// once, the selectors run once, the readout runs in chunks. The engine's `Predictor` calls this.
pub fn gpu_predict(
    ordinal: usize,
    encoder: &Encoder,
    prepared: &PreparedFeatures,
    pe: &Tensor,
    idx: &[usize],
) -> Result<Vec<f32>> {
    let g = gpu(ordinal)?;
    let cfg = FitConfig::default();
    let opts = GpuFitOptions { ordinal, ..Default::default() };
    let mut tr = GpuTrainer::build(g, encoder, prepared, None, pe, &cfg, &opts)?;
    tr.predict(idx)
}

/// The device-resident feature store of every layer, and its element type.
struct FeatureStores {
    locals: Vec<Store>,
    globals: Vec<Store>,
    dtype: FeatureDtype,
}

/// `(parameter name, values)` in `Encoder::named_vars` order.
pub type NamedValues = Vec<(String, Vec<f32>)>;

/// Offsets of one selector MLP inside the flat parameter buffer.
#[derive(Debug, Clone, Copy)]
struct MlpAt {
    w1: usize,
    b1: usize,
    w3: usize,
    b3: usize,
    w5: usize,
    /// Outputs K, and the column where they go in the packed `[V, L + 3]` head input.
    k: usize,
    col: usize,
}

/// Where every parameter sits in the flat buffer: `P_l`, `Q_l`, the three MLPs, then
/// `wc [V, D + 1]` (the readout's packed operand, so the readout reads it and its backward writes
/// its gradient in place).
#[derive(Debug, Clone)]
struct Layout {
    local: Vec<usize>,
    global: Vec<usize>,
    mlps: [MlpAt; 3],
    wc: usize,
    total: usize,
}

impl Layout {
    fn new(spec: &EncoderSpec) -> Self {
        let d = spec.d;
        let mut at = 0usize;
        let mut take = |n: usize| {
            let o = at;
            at += n;
            o
        };
        let local = spec.widths.iter().map(|&c| take(d * c)).collect();
        let global = spec.widths.iter().map(|&c| take(d * c)).collect();
        let l = spec.n_layers();
        let mut mlp = |k: usize, col: usize| MlpAt {
            w1: take(HIDDEN * ENC_DIM),
            b1: take(HIDDEN),
            w3: take(HIDDEN * HIDDEN),
            b3: take(HIDDEN),
            w5: take(k * HIDDEN),
            k,
            col,
        };
        // Encoder order: space, layer, scale; head columns: x y | p_1..p_L | s.
        let mlps = [mlp(2, 0), mlp(l, 2), mlp(1, 2 + l)];
        let wc = take(spec.n_voxels * (d + 1));
        Layout { local, global, mlps, wc, total: at }
    }
}

/// Flattens an encoder's parameters into the layout.
fn pack(enc: &Encoder, lay: &Layout) -> Result<Vec<f32>> {
    let mut out = vec![0f32; lay.total];
    let mut put = |at: usize, t: &Tensor| -> Result<()> {
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        out[at..at + v.len()].copy_from_slice(&v);
        Ok(())
    };
    for (l, p) in enc.local_bottleneck.iter().enumerate() {
        put(lay.local[l], p.as_tensor())?;
    }
    for (l, q) in enc.global_bottleneck.iter().enumerate() {
        put(lay.global[l], q.as_tensor())?;
    }
    for (m, at) in [&enc.space_mlp, &enc.layer_mlp, &enc.scale_mlp].into_iter().zip(lay.mlps) {
        put(at.w1, m.w1.as_tensor())?;
        put(at.b1, m.b1.as_tensor())?;
        put(at.w3, m.w3.as_tensor())?;
        put(at.b3, m.b3.as_tensor())?;
        put(at.w5, m.w5.as_tensor())?;
    }
    let d = enc.spec.d;
    let w = enc.weight.as_tensor().flatten_all()?.to_vec1::<f32>()?;
    let c = enc.bias.as_tensor().to_vec1::<f32>()?;
    for v in 0..enc.spec.n_voxels {
        let row = lay.wc + v * (d + 1);
        out[row..row + d].copy_from_slice(&w[v * d..(v + 1) * d]);
        out[row + d] = c[v];
    }
    Ok(out)
}

/// The inverse of [`pack`]: `(name, values)` in `Encoder::named_vars` order, `weight` and `bias`
/// unpacked from `wc`.
fn unpack(spec: &EncoderSpec, lay: &Layout, flat: &[f32]) -> NamedValues {
    let mut out: Vec<Vec<f32>> = Vec::new();
    let d = spec.d;
    let get = |o: usize, n: usize| flat[o..o + n].to_vec();
    for (l, &c) in spec.widths.iter().enumerate() {
        out.push(get(lay.local[l], d * c));
    }
    for (l, &c) in spec.widths.iter().enumerate() {
        out.push(get(lay.global[l], d * c));
    }
    for at in lay.mlps {
        out.push(get(at.w1, HIDDEN * ENC_DIM));
        out.push(get(at.b1, HIDDEN));
        out.push(get(at.w3, HIDDEN * HIDDEN));
        out.push(get(at.b3, HIDDEN));
        out.push(get(at.w5, at.k * HIDDEN));
    }
    let mut w = Vec::with_capacity(spec.n_voxels * d);
    let mut c = Vec::with_capacity(spec.n_voxels);
    for v in 0..spec.n_voxels {
        let row = lay.wc + v * (d + 1);
        w.extend_from_slice(&flat[row..row + d]);
        c.push(flat[row + d]);
    }
    out.push(w);
    out.push(c);
    spec.param_names().into_iter().zip(out).collect()
}

/// A device-resident feature store of one layer part.
/// Shared with the prepared features when they were prepared on this device.
enum Store {
    F32(Arc<CudaSlice<f32>>),
    F16(Arc<CudaSlice<u16>>),
    Bf16(Arc<CudaSlice<u16>>),
}

impl Store {
    /// `dtype` must be resolved (not `AsPrepared`).
    fn upload(g: &Gpu, v: &[f32], dtype: FeatureDtype) -> Result<Self> {
        let s = &g.stream;
        Ok(match dtype {
            FeatureDtype::F32 | FeatureDtype::AsPrepared => Store::F32(Arc::new(s.clone_htod(v).map_err(cuda("uploading features"))?)),
            FeatureDtype::F16 => {
                let bits: Vec<u16> = v.iter().map(|&x| half::f16::from_f32(x).to_bits()).collect();
                Store::F16(Arc::new(s.clone_htod(&bits).map_err(cuda("uploading features"))?))
            }
            FeatureDtype::Bf16 => {
                let bits: Vec<u16> = v.iter().map(|&x| half::bf16::from_f32(x).to_bits()).collect();
                Store::Bf16(Arc::new(s.clone_htod(&bits).map_err(cuda("uploading features"))?))
            }
        })
    }
    fn rows(&self) -> Rows<'_> {
        match self {
            Store::F32(s) => Rows::F32(s.as_view()),
            Store::F16(s) => Rows::F16(s.as_view()),
            Store::Bf16(s) => Rows::Bf16(s.as_view()),
        }
    }
}

/// Activations of one selector MLP, kept for its backward.
struct MlpActs {
    pre1: CudaSlice<f32>,
    h1: CudaSlice<f32>,
    pre3: CudaSlice<f32>,
    h3: CudaSlice<f32>,
}

/// The training state on one device. Public so tests and benchmarks can drive single steps.
pub struct GpuTrainer {
    g: Arc<Gpu>,
    spec: EncoderSpec,
    cfg: FitConfig,
    lay: Layout,
    feature_dtype: FeatureDtype,
    bmax: usize,
    n_images: usize,
    // Resident data.
    locals: Vec<Store>,
    globals: Vec<Store>,
    responses: CudaSlice<f32>,
    /// False for a prediction-only trainer (no responses uploaded).
    can_train: bool,
    pe: CudaSlice<f32>,
    // Optimiser state.
    params: CudaSlice<f32>,
    grads: CudaSlice<f32>,
    adam_m: CudaSlice<f32>,
    adam_v: CudaSlice<f32>,
    best: CudaSlice<f32>,
    adam_t: usize,
    // Work buffers.
    order: CudaSlice<i32>,
    order_len: usize,
    xloc: Vec<CudaSlice<f32>>,
    xglob: Vec<CudaSlice<f32>>,
    maps: CudaSlice<f32>,
    dmaps: CudaSlice<f32>,
    pred: CudaSlice<f32>,
    target: CudaSlice<f32>,
    go: CudaSlice<f32>,
    acts: Vec<MlpActs>,
    raw: CudaSlice<f32>,
    sel: CudaSlice<f32>,
    dsel: CudaSlice<f32>,
    draw: CudaSlice<f32>,
    reg: CudaSlice<f32>,
    dh: CudaSlice<f32>,
    da: CudaSlice<f32>,
    ones: CudaSlice<f32>,
    partials: CudaSlice<f32>,
    scalars: CudaSlice<f32>,
}

impl GpuTrainer {
    /// Uploads the encoder, the features and the brain, and allocates every work buffer once.
    pub fn new(
        g: Arc<Gpu>,
        encoder: &Encoder,
        prepared: &PreparedFeatures,
        bt: &BrainTensors,
        cfg: &FitConfig,
        opts: &GpuFitOptions,
    ) -> Result<Self> {
        Self::build(g, encoder, prepared, Some(&bt.responses), &bt.pe, cfg, opts)
    }

    /// [`GpuTrainer::new`], or without responses a trainer that can only predict (its
    /// `train_step` refuses).
    pub fn build(
        g: Arc<Gpu>,
        encoder: &Encoder,
        prepared: &PreparedFeatures,
        responses: Option<&crate::data::Array>,
        pe: &Tensor,
        cfg: &FitConfig,
        opts: &GpuFitOptions,
    ) -> Result<Self> {
        prepared.check_matches(&encoder.spec)?;
        let on_this_device = prepared
            .device_values()
            .and_then(|d| d.as_any().downcast_ref::<super::prepare::DevicePrepared>())
            .filter(|d| d.gpu().ordinal == g.ordinal);
        if let Some(d) = on_this_device {
            // Prepared on this device: its buffers are the feature store (f32 holding values of
            // the prepared precision, so the arithmetic is that of a 16-bit store), no copy.
            let stores = FeatureStores {
                locals: d.locals.iter().cloned().map(Store::F32).collect(),
                globals: d.globals.iter().cloned().map(Store::F32).collect(),
                dtype: FeatureDtype::F32,
            };
            return Self::assemble(g, encoder, prepared.n_images(), stores, responses, pe, cfg, opts);
        }
        let dtype = opts.feature_dtype.resolve(prepared.precision());
        let mut locals = Vec::with_capacity(prepared.widths().len());
        let mut globals = Vec::with_capacity(prepared.widths().len());
        for li in 0..prepared.widths().len() {
            // 16-bit features are widened one layer at a time for the upload (and narrowed back
            // exactly when the device store is 16-bit too).
            locals.push(Store::upload(&g, &prepared.local_f32(li)?, dtype)?);
            globals.push(Store::upload(&g, &prepared.global_f32(li)?, dtype)?);
        }
        let stores = FeatureStores { locals, globals, dtype };
        Self::assemble(g, encoder, prepared.n_images(), stores, responses, pe, cfg, opts)
    }

    /// The trainer over feature stores already on the device, for `n` images.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        g: Arc<Gpu>,
        encoder: &Encoder,
        n: usize,
        stores: FeatureStores,
        responses: Option<&crate::data::Array>,
        pe: &Tensor,
        cfg: &FitConfig,
        opts: &GpuFitOptions,
    ) -> Result<Self> {
        let spec = encoder.spec.clone();
        if let Some(r) = responses {
            let (n_resp, v_resp) = match r.shape[..] {
                [a, b] => (a, b),
                _ => (0, 0),
            };
            if n_resp != n || v_resp != spec.n_voxels {
                return Err(Error::mismatch(format!(
                    "responses are [{n_resp}, {v_resp}] but the features have {n} images and the encoder {} voxels",
                    spec.n_voxels
                )));
            }
        }
        let (pe_v, pe_k) = pe.dims2()?;
        if pe_v != spec.n_voxels || pe_k != ENC_DIM {
            return Err(Error::mismatch(format!(
                "the positional encoding is [{pe_v}, {pe_k}], the encoder needs [{}, {ENC_DIM}]",
                spec.n_voxels
            )));
        }
        let lay = Layout::new(&spec);
        let bmax = cfg.batch_size.max(opts.eval_chunk).max(1);
        let (l, gg, d, v) = (spec.n_layers(), spec.grid * spec.grid, spec.d, spec.n_voxels);
        let cells = gg + 1;
        let sw = l + 3;
        let s = g.stream.clone();
        let zeros = |n: usize| s.alloc_zeros::<f32>(n.max(1)).map_err(cuda("allocating GPU work buffers"));
        let host = pack(encoder, &lay)?;
        let params = s.clone_htod(&host).map_err(cuda("uploading parameters"))?;
        let FeatureStores { locals, globals, dtype: feature_dtype } = stores;
        let can_train = responses.is_some();
        let responses = match responses {
            Some(r) => s.clone_htod(&r.data).map_err(cuda("uploading responses"))?,
            None => zeros(1)?,
        };
        let pe = s.clone_htod(&pe.flatten_all()?.to_vec1::<f32>()?).map_err(cuda("uploading the positional encoding"))?;
        let acts = (0..3)
            .map(|_| {
                Ok(MlpActs {
                    pre1: zeros(v * HIDDEN)?,
                    h1: zeros(v * HIDDEN)?,
                    pre3: zeros(v * HIDDEN)?,
                    h3: zeros(v * HIDDEN)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tr = GpuTrainer {
            spec: spec.clone(),
            cfg: cfg.clone(),
            feature_dtype,
            bmax,
            n_images: n,
            locals,
            globals,
            responses,
            can_train,
            pe,
            grads: zeros(lay.total)?,
            adam_m: zeros(lay.total)?,
            adam_v: zeros(lay.total)?,
            best: zeros(lay.total)?,
            params,
            adam_t: 0,
            order: s.alloc_zeros::<i32>(n.max(1)).map_err(cuda("allocating the batch order"))?,
            order_len: 0,
            xloc: spec.widths.iter().map(|&c| zeros(bmax * gg * c)).collect::<Result<_>>()?,
            xglob: spec.widths.iter().map(|&c| zeros(bmax * c)).collect::<Result<_>>()?,
            maps: zeros(bmax * l * cells * d)?,
            dmaps: zeros(bmax * l * cells * d)?,
            pred: zeros(bmax * v)?,
            target: zeros(bmax * v)?,
            go: zeros(bmax * v)?,
            acts,
            raw: zeros(v * sw)?,
            sel: zeros(v * sw)?,
            dsel: zeros(v * sw)?,
            draw: zeros(v * sw)?,
            reg: zeros(v)?,
            dh: zeros(v * HIDDEN)?,
            da: zeros(v * HIDDEN)?,
            ones: s.clone_htod(&vec![1f32; v]).map_err(cuda("allocating GPU work buffers"))?,
            partials: zeros(REDUCE_BLOCKS)?,
            scalars: zeros(4)?,
            lay,
            g,
        };
        tr.g.sync()?;
        Ok(tr)
    }

    /// The device this trainer runs on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.g
    }

    /// How the features are stored on the device.
    pub fn feature_dtype(&self) -> FeatureDtype {
        self.feature_dtype
    }

    /// Uploads the image order that batches index into (`train_step(offset, ..)` reads
    /// `order[offset..]`).
    pub fn set_order(&mut self, order: &[usize]) -> Result<()> {
        if order.len() > self.n_images {
            return Err(Error::invalid(format!("{} indices for {} images", order.len(), self.n_images)));
        }
        let mut idx = Vec::with_capacity(order.len());
        for &i in order {
            if i >= self.n_images {
                return Err(Error::invalid(format!("image index {i} out of range for {} images", self.n_images)));
            }
            idx.push(i as i32);
        }
        let mut view = self.order.slice_mut(0..idx.len());
        self.g.stream.memcpy_htod(&idx, &mut view).map_err(cuda("uploading the batch order"))?;
        self.order_len = idx.len();
        Ok(())
    }

    /// Selector MLPs and heads for all voxels: fills `acts`, `raw`, `sel` and `reg`.
    fn selectors_forward(&mut self) -> Result<()> {
        let g = &*self.g;
        let v = self.spec.n_voxels;
        let sw = self.spec.n_layers() + 3;
        let p = &self.params;
        for (at, a) in self.lay.mlps.iter().zip(self.acts.iter_mut()) {
            let w = |o: usize, n: usize| p.slice(o..o + n);
            gemm(
                g,
                &Gemm2::dense(Op::N, Op::T, v, HIDDEN, ENC_DIM),
                &self.pe.as_view(),
                &w(at.w1, HIDDEN * ENC_DIM),
                &mut a.pre1.as_view_mut(),
            )?;
            ew::bias_gelu_forward(g, v, HIDDEN, &mut a.pre1.as_view_mut(), &w(at.b1, HIDDEN), &mut a.h1.as_view_mut())?;
            gemm(
                g,
                &Gemm2::dense(Op::N, Op::T, v, HIDDEN, HIDDEN),
                &a.h1.as_view(),
                &w(at.w3, HIDDEN * HIDDEN),
                &mut a.pre3.as_view_mut(),
            )?;
            ew::bias_gelu_forward(g, v, HIDDEN, &mut a.pre3.as_view_mut(), &w(at.b3, HIDDEN), &mut a.h3.as_view_mut())?;
            let head = Gemm2::dense(Op::N, Op::T, v, at.k, HIDDEN).lds(HIDDEN, HIDDEN, sw);
            gemm(g, &head, &a.h3.as_view(), &w(at.w5, at.k * HIDDEN), &mut self.raw.slice_mut(at.col..))?;
        }
        heads_forward(
            g,
            v,
            self.spec.n_layers(),
            &self.raw.as_view(),
            &mut self.sel.as_view_mut(),
            &mut self.reg.as_view_mut(),
        )
    }

    /// Gathers images `idx[offset..offset + b]` and aligns them into `maps[..b]` (§3.2).
    fn align(&mut self, offset: usize, b: usize) -> Result<()> {
        let g = &*self.g;
        let (l, gg, d) = (self.spec.n_layers(), self.spec.grid * self.spec.grid, self.spec.d);
        let cells = gg + 1;
        let idx = self.order.as_view();
        let p = &self.params;
        for li in 0..l {
            let c = self.spec.widths[li];
            ew::gather_rows(
                g,
                &self.locals[li].rows(),
                &idx,
                offset,
                b,
                gg * c,
                &mut self.xloc[li].slice_mut(0..b * gg * c),
            )?;
            ew::gather_rows(g, &self.globals[li].rows(), &idx, offset, b, c, &mut self.xglob[li].slice_mut(0..b * c))?;
            let pl = p.slice(self.lay.local[li]..self.lay.local[li] + d * c);
            let ql = p.slice(self.lay.global[li]..self.lay.global[li] + d * c);
            // maps[b', li, 0..GG, :] = xloc[b'] · P_lᵀ for every image b'.
            let loc = Gemm2::dense(Op::N, Op::T, gg, d, c);
            gemm_strided_batched(
                g,
                &loc,
                b,
                (gg * c, 0, l * cells * d),
                &self.xloc[li].as_view(),
                &pl,
                &mut self.maps.slice_mut(li * cells * d..b * l * cells * d),
            )?;
            // maps[b', li, GG, :] = xglob[b'] · Q_lᵀ.
            let glob = Gemm2::dense(Op::N, Op::T, b, d, c).lds(c, c, l * cells * d);
            gemm(
                g,
                &glob,
                &self.xglob[li].as_view(),
                &ql,
                &mut self.maps.slice_mut((li * cells + gg) * d..b * l * cells * d),
            )?;
        }
        Ok(())
    }

    fn dims(&self, b: usize) -> Dims {
        Dims { b, l: self.spec.n_layers(), g: self.spec.grid, d: self.spec.d, v: self.spec.n_voxels }
    }

    /// Forward and backward of the objective on images `order[offset..offset + b]` at optimiser
    /// step `step`: fills `grads` and leaves (smooth-L1 mean, R) in `scalars[0..2]`.
    fn forward_backward(&mut self, offset: usize, b: usize, step: usize) -> Result<f32> {
        if !self.can_train {
            return Err(Error::invalid("this GPU trainer was built for prediction only (no responses)"));
        }
        if b == 0 || b > self.bmax || offset + b > self.order_len {
            return Err(Error::invalid(format!(
                "batch of {b} at {offset} does not fit (order holds {}, buffers {})",
                self.order_len, self.bmax
            )));
        }
        let reg_w = regulariser_weight(self.cfg.reg_lambda, step, self.cfg.reg_steps) as f32;
        let dims = self.dims(b);
        let (l, gg, d, v) = (dims.l, self.spec.grid * self.spec.grid, dims.d, dims.v);
        let cells = gg + 1;
        let nb = b * v;
        let nm = b * l * cells * d;

        self.selectors_forward()?;
        self.align(offset, b)?;
        {
            let g = &*self.g;
            let order = self.order.as_view();
            ew::gather_rows(
                g,
                &Rows::F32(self.responses.as_view()),
                &order,
                offset,
                b,
                v,
                &mut self.target.slice_mut(0..nb),
            )?;
            let wc = self.params.slice(self.lay.wc..self.lay.wc + v * (d + 1));
            ro::forward_into(
                g,
                &dims,
                &self.maps.slice(0..nm),
                &self.sel.as_view(),
                &wc,
                &mut self.pred.slice_mut(0..nb),
            )?;
            let inv = 1.0 / nb as f32;
            ew::smooth_l1(
                g,
                &self.pred.slice(0..nb),
                &self.target.slice(0..nb),
                &mut self.go.slice_mut(0..nb),
                &mut self.partials.as_view_mut(),
                &mut self.scalars.slice_mut(0..1),
                self.cfg.beta as f32,
                inv,
                inv,
            )?;
            if reg_w > 0.0 {
                ew::sum(
                    g,
                    &self.reg.as_view(),
                    &mut self.partials.as_view_mut(),
                    &mut self.scalars.slice_mut(1..2),
                    1.0 / v as f32,
                )?;
            } else {
                g.stream.memset_zeros(&mut self.scalars.slice_mut(1..2)).map_err(cuda("clearing the regulariser"))?;
            }

            // Readout backward: d maps, d sel, and d wc straight into the gradient buffer.
            let mut dwc = self.grads.slice_mut(self.lay.wc..self.lay.wc + v * (d + 1));
            ro::backward_into(
                g,
                &dims,
                &self.maps.slice(0..nm),
                &self.sel.as_view(),
                &wc,
                &self.go.slice(0..nb),
                &mut self.dmaps.slice_mut(0..nm),
                &mut self.dsel.as_view_mut(),
                &mut dwc,
            )?;
            heads_backward(g, v, l, &self.sel.as_view(), &self.dsel.as_view(), &mut self.draw.as_view_mut(), reg_w)?;
        }
        self.mlps_backward()?;
        self.align_backward(b)?;
        Ok(reg_w)
    }

    /// Backward of the three selector MLPs from `draw`.
    fn mlps_backward(&mut self) -> Result<()> {
        let g = &*self.g;
        let v = self.spec.n_voxels;
        let sw = self.spec.n_layers() + 3;
        let p = &self.params;
        for (at, a) in self.lay.mlps.iter().zip(self.acts.iter()) {
            let draw = self.draw.slice(at.col..);
            let grads = &mut self.grads;
            // d W5 [K, H] = d rawᵀ · h3.
            let g5 = Gemm2::dense(Op::T, Op::N, at.k, HIDDEN, v).lds(sw, HIDDEN, HIDDEN);
            gemm(g, &g5, &draw, &a.h3.as_view(), &mut grads.slice_mut(at.w5..at.w5 + at.k * HIDDEN))?;
            // d h3 [V, H] = d raw · W5.
            let gh3 = Gemm2::dense(Op::N, Op::N, v, HIDDEN, at.k).lds(sw, HIDDEN, HIDDEN);
            gemm(g, &gh3, &draw, &p.slice(at.w5..at.w5 + at.k * HIDDEN), &mut self.dh.as_view_mut())?;
            ew::gelu_backward(g, &self.dh.as_view(), &a.pre3.as_view(), &mut self.da.as_view_mut())?;
            // d W3 = d a3ᵀ · h1, d b3 = 1ᵀ · d a3, d h1 = d a3 · W3.
            gemm(
                g,
                &Gemm2::dense(Op::T, Op::N, HIDDEN, HIDDEN, v),
                &self.da.as_view(),
                &a.h1.as_view(),
                &mut grads.slice_mut(at.w3..at.w3 + HIDDEN * HIDDEN),
            )?;
            gemm(
                g,
                &Gemm2::dense(Op::N, Op::N, 1, HIDDEN, v),
                &self.ones.as_view(),
                &self.da.as_view(),
                &mut grads.slice_mut(at.b3..at.b3 + HIDDEN),
            )?;
            gemm(
                g,
                &Gemm2::dense(Op::N, Op::N, v, HIDDEN, HIDDEN),
                &self.da.as_view(),
                &p.slice(at.w3..at.w3 + HIDDEN * HIDDEN),
                &mut self.dh.as_view_mut(),
            )?;
            ew::gelu_backward(g, &self.dh.as_view(), &a.pre1.as_view(), &mut self.da.as_view_mut())?;
            // d W1 = d a1ᵀ · pe, d b1 = 1ᵀ · d a1.
            gemm(
                g,
                &Gemm2::dense(Op::T, Op::N, HIDDEN, ENC_DIM, v),
                &self.da.as_view(),
                &self.pe.as_view(),
                &mut grads.slice_mut(at.w1..at.w1 + HIDDEN * ENC_DIM),
            )?;
            gemm(
                g,
                &Gemm2::dense(Op::N, Op::N, 1, HIDDEN, v),
                &self.ones.as_view(),
                &self.da.as_view(),
                &mut grads.slice_mut(at.b1..at.b1 + HIDDEN),
            )?;
        }
        Ok(())
    }

    /// Gradients of `P_l` and `Q_l` from `dmaps[..b]`.
    fn align_backward(&mut self, b: usize) -> Result<()> {
        let g = &*self.g;
        let (l, gg, d) = (self.spec.n_layers(), self.spec.grid * self.spec.grid, self.spec.d);
        let cells = gg + 1;
        for li in 0..l {
            let c = self.spec.widths[li];
            let mut dp = self.grads.slice_mut(self.lay.local[li]..self.lay.local[li] + d * c);
            // d P_l [D, C] = Σ_b d M_bᵀ [D, GG] · xloc_b [GG, C]; the images are not contiguous
            // in d maps, so one product per image, accumulating (β = 1) after the first.
            for bi in 0..b {
                let prod = Gemm2::dense(Op::T, Op::N, d, c, gg).beta(if bi == 0 { 0.0 } else { 1.0 });
                let dm = self.dmaps.slice((bi * l + li) * cells * d..((bi * l + li) * cells + gg) * d);
                let x = self.xloc[li].slice(bi * gg * c..(bi + 1) * gg * c);
                gemm(g, &prod, &dm, &x, &mut dp)?;
            }
            // d Q_l [D, C] = d Gᵀ [D, B] · xglob [B, C], d G rows at stride L·cells·D.
            let prod = Gemm2::dense(Op::T, Op::N, d, c, b).lds(l * cells * d, c, c);
            let dg = self.dmaps.slice((li * cells + gg) * d..b * l * cells * d);
            let mut dq = self.grads.slice_mut(self.lay.global[li]..self.lay.global[li] + d * c);
            gemm(g, &prod, &dg, &self.xglob[li].slice(0..b * c), &mut dq)?;
        }
        Ok(())
    }

    /// Reads the loss terms (the one host round trip of a step) and combines them.
    fn read_loss(&self, reg_w: f32) -> Result<(f64, [f32; 4])> {
        let s = self.g.stream.clone_dtoh(&self.scalars).map_err(cuda("reading the loss"))?;
        let sc = [s[0], s[1], s[2], s[3]];
        Ok((sc[0] as f64 + reg_w as f64 * sc[1] as f64, sc))
    }

    /// One optimiser step on images `order[offset..offset + b]` at step `step` (the
    /// regulariser's clock); returns the loss before the step. Errors on a non-finite loss.
    pub fn train_step(&mut self, offset: usize, b: usize, step: usize) -> Result<f64> {
        no_panic("a GPU training step", || {
            let reg_w = self.forward_backward(offset, b, step)?;
            let g = &*self.g;
            ew::sqnorm(g, &self.grads.as_view(), &mut self.partials.as_view_mut(), &mut self.scalars.slice_mut(2..3))?;
            self.adam_t += 1;
            let hp = AdamW {
                lr: self.cfg.lr,
                beta1: ADAMW_BETAS.0,
                beta2: ADAMW_BETAS.1,
                eps: ADAMW_EPS,
                weight_decay: self.cfg.weight_decay,
                max_norm: self.cfg.clip_norm,
            };
            ew::adamw_step(
                g,
                &hp,
                self.adam_t,
                &mut self.params.as_view_mut(),
                &self.grads.as_view(),
                &mut self.adam_m.as_view_mut(),
                &mut self.adam_v.as_view_mut(),
                &self.scalars.slice(2..3),
            )?;
            let (loss, _) = self.read_loss(reg_w)?;
            if !loss.is_finite() {
                return Err(Error::Numeric(format!("the training loss became {loss} on the GPU at step {step}")));
            }
            Ok(loss)
        })
    }

    /// The objective and its unclipped gradients on `batch` at `step`, without updating
    /// anything: `(loss, [(parameter name, gradient)])` in `Encoder::named_vars` order. For tests
    /// against candle's autograd.
    pub fn loss_and_gradients(&mut self, batch: &[usize], step: usize) -> Result<(f64, NamedValues)> {
        no_panic("a GPU gradient evaluation", || {
            self.set_order(batch)?;
            let reg_w = self.forward_backward(0, batch.len(), step)?;
            let (loss, _) = self.read_loss(reg_w)?;
            let flat = self.g.stream.clone_dtoh(&self.grads).map_err(cuda("reading gradients"))?;
            Ok((loss, unpack(&self.spec, &self.lay, &flat)))
        })
    }

    /// Predictions `[idx.len(), V]` (row-major) for the images `idx`, in chunks of the buffer
    /// size. Overwrites the batch order.
    pub fn predict(&mut self, idx: &[usize]) -> Result<Vec<f32>> {
        no_panic("GPU prediction", || {
            self.set_order(idx)?;
            self.selectors_forward()?;
            let v = self.spec.n_voxels;
            let d = self.spec.d;
            let mut out = Vec::with_capacity(idx.len() * v);
            let mut offset = 0;
            while offset < idx.len() {
                let b = (idx.len() - offset).min(self.bmax);
                self.align(offset, b)?;
                let dims = self.dims(b);
                let nm = b * dims.l * dims.cells() * d;
                let wc = self.params.slice(self.lay.wc..self.lay.wc + v * (d + 1));
                ro::forward_into(
                    &self.g,
                    &dims,
                    &self.maps.slice(0..nm),
                    &self.sel.as_view(),
                    &wc,
                    &mut self.pred.slice_mut(0..b * v),
                )?;
                let chunk =
                    self.g.stream.clone_dtoh(&self.pred.slice(0..b * v)).map_err(cuda("reading predictions"))?;
                out.extend_from_slice(&chunk);
                offset += b;
            }
            Ok(out)
        })
    }

    /// Packed selector outputs `[V, L + 3]` (x, y, p, s) of the current parameters.
    pub fn selector_outputs(&mut self) -> Result<Vec<f32>> {
        self.selectors_forward()?;
        self.g.stream.clone_dtoh(&self.sel).map_err(cuda("reading selector outputs"))
    }

    /// Keeps a device copy of the current parameters as the best so far.
    pub fn snapshot_best(&mut self) -> Result<()> {
        self.g.stream.memcpy_dtod(&self.params, &mut self.best).map_err(cuda("saving the best parameters"))
    }

    /// Current parameters as `(name, values)` in `Encoder::named_vars` order.
    pub fn parameters(&self) -> Result<NamedValues> {
        let flat = self.g.stream.clone_dtoh(&self.params).map_err(cuda("reading parameters"))?;
        Ok(unpack(&self.spec, &self.lay, &flat))
    }

    /// Writes the best snapshot into `encoder`'s parameters (same spec).
    pub fn write_best_into(&self, encoder: &Encoder) -> Result<()> {
        let flat = self.g.stream.clone_dtoh(&self.best).map_err(cuda("reading the best parameters"))?;
        write_into(encoder, &self.lay, &flat)
    }

    /// Writes the current parameters into `encoder` (same spec).
    pub fn write_current_into(&self, encoder: &Encoder) -> Result<()> {
        let flat = self.g.stream.clone_dtoh(&self.params).map_err(cuda("reading parameters"))?;
        write_into(encoder, &self.lay, &flat)
    }
}

impl Trainer for GpuTrainer {
    fn set_order(&mut self, order: &[usize]) -> Result<()> {
        GpuTrainer::set_order(self, order)
    }
    fn step(&mut self, offset: usize, len: usize, step: usize) -> Result<f64> {
        self.train_step(offset, len, step)
    }
    fn predict(&mut self, idx: &[usize]) -> Result<Vec<f32>> {
        GpuTrainer::predict(self, idx)
    }
    fn snapshot_best(&mut self) -> Result<()> {
        GpuTrainer::snapshot_best(self)
    }
    fn write_best_into(&mut self, encoder: &Encoder) -> Result<()> {
        GpuTrainer::write_best_into(self, encoder)
    }
}

fn write_into(encoder: &Encoder, lay: &Layout, flat: &[f32]) -> Result<()> {
    let named = unpack(&encoder.spec, lay, flat);
    for ((name, var), (name2, values)) in encoder.named_vars().into_iter().zip(named) {
        debug_assert_eq!(name, name2);
        let shape = var.as_tensor().dims().to_vec();
        var.set(&Tensor::from_vec(values, shape.as_slice(), var.as_tensor().device())?)?;
    }
    Ok(())
}
