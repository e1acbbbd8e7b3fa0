//! Run-time compilation of `kernels/*.cu` with NVRTC (sources embedded with `include_str!`, each
//! compiled after the shared `kernels/prelude.cuh`) and a per-device cache of the loaded modules,
//! the stream and the cuBLAS handle.

use super::probe::{check_ordinal, probe};
use crate::error::{Error, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

pub const READOUT_SRC: &str = include_str!("../../kernels/readout.cu");
pub const SELECTORS_SRC: &str = include_str!("../../kernels/selectors.cu");
pub const ELEMENTWISE_SRC: &str = include_str!("../../kernels/elementwise.cu");
pub const FEATURES_SRC: &str = include_str!("../../kernels/features.cu");
/// Helpers every kernel file uses (the 16-bit storage types and their widening, warp sums),
/// written once and compiled in front of each file by [`kernel_source`].
pub const PRELUDE_SRC: &str = include_str!("../../kernels/prelude.cuh");

/// The text NVRTC compiles for `kernels/{file}` (whose contents are `body`): the prelude, then the
/// file. The `#line` markers make compile errors name the file and line they are in.
/// `.ci/ptx_check.sh` builds the same text.
pub fn kernel_source(file: &str, body: &str) -> String {
    format!("#line 1 \"prelude.cuh\"\n{PRELUDE_SRC}\n#line 1 \"{file}\"\n{body}")
}

/// NVRTC options besides the architecture; `.ci/ptx_check.sh` compiles with the same ones.
/// No fast-math: erf, exp and log must match the CPU oracle to 1e-4.
pub const COMPILE_OPTIONS: &[&str] = &["--std=c++17"];

/// Formats any CUDA-side error as `Error::Cuda` with what was being done.
pub(crate) fn cuda<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Cuda(format!("{what}: {e:?}"))
}

/// Runs `f`, turning a panic inside cudarc (a missing symbol, an unexpected driver answer) into
/// an error: no panic may reach a caller of the library.
pub(crate) fn no_panic<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(Error::Cuda(format!("{what}: the CUDA library failed: {msg}")))
        }
    }
}

/// Every kernel function of the four modules.
pub struct Kernels {
    pub readout_fwd_f32: CudaFunction,
    pub readout_fwd_f16: CudaFunction,
    pub readout_fwd_bf16: CudaFunction,
    pub readout_bwd_voxels: CudaFunction,
    pub readout_bwd_maps: CudaFunction,
    pub heads_fwd: CudaFunction,
    pub heads_bwd: CudaFunction,
    pub bias_gelu_fwd: CudaFunction,
    pub gelu_fwd: CudaFunction,
    pub gelu_bwd: CudaFunction,
    pub smooth_l1_fwd_bwd: CudaFunction,
    pub sum_partials: CudaFunction,
    pub sqnorm_partials: CudaFunction,
    pub finish_sum: CudaFunction,
    pub adamw_step: CudaFunction,
    pub gather_rows_f32: CudaFunction,
    pub gather_rows_f16: CudaFunction,
    pub gather_rows_bf16: CudaFunction,
    pub copy_layer_f32: CudaFunction,
    pub copy_layer_f16: CudaFunction,
    pub copy_layer_bf16: CudaFunction,
    pub resample_cells: CudaFunction,
    pub spatial_means: CudaFunction,
    pub finish_prepared: CudaFunction,
    pub channel_moments: CudaFunction,
    pub sum_moment_chunks: CudaFunction,
    _modules: Vec<Arc<CudaModule>>,
}

/// One CUDA device ready for work: context, the stream everything runs on, cuBLAS bound to that
/// stream, the compiled kernels and the limits the launch code needs.
pub struct Gpu {
    pub ordinal: usize,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    pub kernels: Kernels,
    /// Dynamic shared memory a block may opt in to (bytes).
    pub max_shared_optin: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
}

static GPUS: Lazy<Mutex<HashMap<usize, Arc<Gpu>>>> = Lazy::new(|| Mutex::new(HashMap::new()));

/// The device `cuda:ordinal`, initialised and with its kernels compiled on first use, cached for
/// the life of the process. Fails (never panics) with `Error::DeviceUnavailable` when the driver,
/// NVRTC or cuBLAS is missing, the ordinal does not exist or the GPU is too old, and with
/// `Error::Cuda` when a kernel does not compile.
pub fn gpu(ordinal: usize) -> Result<Arc<Gpu>> {
    check_ordinal(ordinal)?;
    let mut cache =
        GPUS.lock().map_err(|_| Error::Cuda("the device cache was poisoned by an earlier failure".into()))?;
    if let Some(g) = cache.get(&ordinal) {
        return Ok(g.clone());
    }
    let g = Arc::new(no_panic("initialising the CUDA device", || init(ordinal))?);
    cache.insert(ordinal, g.clone());
    Ok(g)
}

fn init(ordinal: usize) -> Result<Gpu> {
    let info = probe()?;
    let ctx = CudaContext::new(ordinal).map_err(cuda("creating the CUDA context"))?;
    let cc = ctx.compute_capability().map_err(cuda("reading the compute capability"))?;
    if cc < (7, 5) {
        return Err(Error::device_unavailable(format!("cuda:{ordinal}"), format!(
            "cuda:{ordinal} has compute capability {}.{}; NVRTC {}.{} needs 7.5 or newer",
            cc.0, cc.1, info.nvrtc_version.0, info.nvrtc_version.1
        )));
    }
    let name = ctx.name().unwrap_or_else(|_| "unknown GPU".to_string());
    let max_shared_optin = ctx
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
        .map_err(cuda("reading the shared-memory limit"))? as usize;
    // The default stream: with a single stream cudarc records no per-argument events.
    let stream = ctx.default_stream();
    let blas = CudaBlas::new(stream.clone()).map_err(cuda("creating the cuBLAS handle"))?;
    let arch = format!("--gpu-architecture=compute_{}{}", cc.0, cc.1);
    let load = |src: &str, file: &str| -> Result<Arc<CudaModule>> {
        let mut options: Vec<String> = COMPILE_OPTIONS.iter().map(|s| s.to_string()).collect();
        options.push(arch.clone());
        let opts = CompileOptions { options, name: Some(file.to_string()), ..Default::default() };
        let ptx = compile_ptx_with_opts(kernel_source(file, src), opts).map_err(|e| match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                Error::Cuda(format!("NVRTC failed on kernels/{file}:\n{}", log.to_string_lossy()))
            }
            other => Error::Cuda(format!("NVRTC failed on kernels/{file}: {other:?}")),
        })?;
        ctx.load_module(ptx).map_err(|e| Error::Cuda(format!("loading kernels/{file}: {e:?}")))
    };
    let readout = load(READOUT_SRC, "readout.cu")?;
    let selectors = load(SELECTORS_SRC, "selectors.cu")?;
    let elementwise = load(ELEMENTWISE_SRC, "elementwise.cu")?;
    let features = load(FEATURES_SRC, "features.cu")?;
    let f = |m: &Arc<CudaModule>, name: &str| -> Result<CudaFunction> {
        m.load_function(name).map_err(|e| Error::Cuda(format!("kernel {name} not found: {e:?}")))
    };
    let kernels = Kernels {
        readout_fwd_f32: f(&readout, "readout_fwd_f32")?,
        readout_fwd_f16: f(&readout, "readout_fwd_f16")?,
        readout_fwd_bf16: f(&readout, "readout_fwd_bf16")?,
        readout_bwd_voxels: f(&readout, "readout_bwd_voxels")?,
        readout_bwd_maps: f(&readout, "readout_bwd_maps")?,
        heads_fwd: f(&selectors, "heads_fwd")?,
        heads_bwd: f(&selectors, "heads_bwd")?,
        bias_gelu_fwd: f(&elementwise, "bias_gelu_fwd")?,
        gelu_fwd: f(&elementwise, "gelu_fwd")?,
        gelu_bwd: f(&elementwise, "gelu_bwd")?,
        smooth_l1_fwd_bwd: f(&elementwise, "smooth_l1_fwd_bwd")?,
        sum_partials: f(&elementwise, "sum_partials")?,
        sqnorm_partials: f(&elementwise, "sqnorm_partials")?,
        finish_sum: f(&elementwise, "finish_sum")?,
        adamw_step: f(&elementwise, "adamw_step")?,
        gather_rows_f32: f(&elementwise, "gather_rows_f32")?,
        gather_rows_f16: f(&elementwise, "gather_rows_f16")?,
        gather_rows_bf16: f(&elementwise, "gather_rows_bf16")?,
        copy_layer_f32: f(&features, "copy_layer_f32")?,
        copy_layer_f16: f(&features, "copy_layer_f16")?,
        copy_layer_bf16: f(&features, "copy_layer_bf16")?,
        resample_cells: f(&features, "resample_cells")?,
        spatial_means: f(&features, "spatial_means")?,
        finish_prepared: f(&features, "finish_prepared")?,
        channel_moments: f(&features, "channel_moments")?,
        sum_moment_chunks: f(&features, "sum_moment_chunks")?,
        _modules: vec![readout, selectors, elementwise, features],
    };
    Ok(Gpu { ordinal, ctx, stream, blas, kernels, max_shared_optin, name, compute_capability: cc })
}

impl Gpu {
    /// Waits for all queued work; a failed kernel surfaces here.
    pub fn sync(&self) -> Result<()> {
        self.stream.synchronize().map_err(cuda("waiting for the GPU"))
    }

    /// (free, total) device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize)> {
        self.ctx.mem_get_info().map_err(cuda("reading device memory"))
    }
}
