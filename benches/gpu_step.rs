//! One GPU training step at the paper's scale (DESIGN §3.8): B = 8, V = 37984, L = 12,
//! C = 768, G = 8, D = 128, and the device memory the fit holds. Compare with
//! `benches/torch_reference.py` (PyTorch eager, same model and sizes) on the same card.
//!
//! Usage: `cargo bench --features cuda --bench gpu_step -- [--images N --voxels V --layers L
//! --width C --grid G --dim D --batch B --steps S --dtype f32|f16|bf16 --device N]`.
//! Prints one `gpu_step ...` line; without a usable GPU it prints `SKIPPED: <reason>`.

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!("SKIPPED: gpu_step needs --features cuda");
}

#[cfg(feature = "cuda")]
fn main() {
    if let Err(e) = bench::run() {
        eprintln!("gpu_step failed: {e}");
        std::process::exit(1);
    }
}

#[cfg(feature = "cuda")]
mod bench {
    use candle_core::{Device, Tensor};
    use factortopy::data::{Array, Features, LayerFeatures};
    use factortopy::cuda::trainer::{FeatureDtype, GpuFitOptions, GpuTrainer};
    use factortopy::cuda::gpu;
    use factortopy::model::{BrainTensors, FitConfig};
    use factortopy::model::posenc::CoordNorm;
    use factortopy::model::{Encoder, EncoderSpec, PreparedFeatures};
    use factortopy::rng::Rng;
    use factortopy::Result;
    use std::time::Instant;

    fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    pub fn run() -> Result<()> {
        let args: Vec<String> = std::env::args().collect();
        let n: usize = arg(&args, "--images", 64);
        let v: usize = arg(&args, "--voxels", 37984);
        let l: usize = arg(&args, "--layers", 12);
        let c: usize = arg(&args, "--width", 768);
        let grid: usize = arg(&args, "--grid", 8);
        let d: usize = arg(&args, "--dim", 128);
        let b: usize = arg(&args, "--batch", 8);
        let steps: usize = arg(&args, "--steps", 20);
        let ordinal: usize = arg(&args, "--device", 0);
        let dtype = match arg(&args, "--dtype", "f32".to_string()).as_str() {
            "f16" => FeatureDtype::F16,
            "bf16" => FeatureDtype::Bf16,
            _ => FeatureDtype::F32,
        };
        let g = match gpu(ordinal) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("SKIPPED: gpu_step: {e}");
                return Ok(());
            }
        };
        let (_, total) = g.mem_info()?;
        let used0 = total - g.mem_info()?.0;

        // Random features already on the G×G grid (resampling is a one-off, not part of a step).
        let mut rng = Rng::new(0);
        let mut randn = |shape: Vec<usize>| {
            let k: usize = shape.iter().product();
            Array::new(shape, (0..k).map(|_| rng.normal() as f32).collect())
        };
        let mut layers = Vec::with_capacity(l);
        for _ in 0..l {
            layers.push(LayerFeatures { local: randn(vec![n, c, grid, grid])?, global: Some(randn(vec![n, c])?) });
        }
        let features = Features {
            model: "bench".into(),
            layer_names: (0..l).map(|i| format!("layer{i}")).collect(),
            stimulus_ids: None,
            layers,
        };
        let prepared = PreparedFeatures::new(&features, grid, factortopy::model::Resample::Bilinear, None)?;
        let responses = randn(vec![n, v])?;
        let coords = randn(vec![v, 3])?;
        let norm = CoordNorm::from_coords(&coords)?;
        let pe = norm.encode(&coords)?;
        let bt = BrainTensors {
            responses: responses.into(),
            pe: Tensor::from_vec(pe.data, pe.shape.as_slice(), &Device::Cpu)?,
            coord_norm: norm,
        };
        let spec = EncoderSpec {
            widths: prepared.widths().to_vec(),
            d,
            grid,
            resample: prepared.resample(),
            n_voxels: v,
            coord_norm: norm,
            layer_names: features.layer_names.clone(),
            model: "bench".into(),
            layer_units: None,
        };
        let enc = Encoder::new(spec, 0)?;
        let cfg = FitConfig { d, grid, batch_size: b, ..FitConfig::default() };
        let opts = GpuFitOptions { ordinal, feature_dtype: dtype, eval_chunk: b };
        let mut tr = GpuTrainer::new(g.clone(), &enc, &prepared, &bt, &cfg, &opts)?;
        let order: Vec<usize> = (0..n).collect();
        tr.set_order(&order)?;
        let used_setup = total - g.mem_info()?.0;

        let batches = n / b;
        let mut peak = used_setup;
        // Warm-up: module loading, cuBLAS heuristics and workspace.
        for s in 0..3 {
            tr.train_step((s % batches) * b, b, s)?;
        }
        g.sync()?;
        let t = Instant::now();
        for s in 0..steps {
            // Steps inside the regulariser's warm-up, so its kernels are timed too.
            tr.train_step((s % batches) * b, b, 3 + s)?;
            peak = peak.max(total - g.mem_info()?.0);
        }
        g.sync()?;
        let ms = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
        let mib = |x: usize| x as f64 / (1024.0 * 1024.0);
        println!(
            "gpu_step device={} B={b} V={v} L={l} C={c} G={grid} D={d} dtype={dtype:?} steps={steps} ms_per_step={ms:.3} \
             device_mem_setup_mib={:.1} device_mem_peak_mib={:.1}",
            g.name,
            mib(used_setup - used0),
            mib(peak - used0),
        );
        Ok(())
    }
}
