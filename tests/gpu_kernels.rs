//! Every CUDA kernel against the CPU op it replaces (DESIGN §3.9), at awkward shapes: V not a
//! multiple of the block, D = 1, L = 1, G = 1, D not a multiple of the warp, points on the
//! border of the map and outside it. Relative error ≤ 1e-4 in f32 (max |gpu − cpu| / max |cpu|).
//!
//! Needs a CUDA device; without one (or without the driver, NVRTC or cuBLAS) each test prints
//! `SKIPPED: <reason>` to stderr and returns. `FACTORTOPY_TEST_CUDA_DEVICE=N` picks the device.
#![cfg(feature = "cuda")]

mod common;

use candle_core::{Device, Tensor, Var, D};

const CPU: Device = Device::Cpu;
use cudarc::driver::CudaSlice;
use factortopy::cuda::elementwise::{self as ew, AdamW, Rows, REDUCE_BLOCKS};
use factortopy::cuda::readout::{self as gro, Half};
use factortopy::cuda::selectors::{heads_backward, heads_forward};
use factortopy::cuda::trainer::{GpuFitOptions, GpuTrainer};
use factortopy::cuda::Gpu;
use factortopy::engine::candle_cpu::objective;
use factortopy::model::fixtures::tiny;
use factortopy::model::FitConfig;
use factortopy::model::readout::{backward as cpu_backward, forward as cpu_forward, Dims};
use factortopy::model::loss;
use factortopy::rng::Rng;

const TOL: f32 = 1e-4;

macro_rules! gpu_or_skip {
    ($name:expr) => {
        match common::gpu_or_skip($name) {
            Some(g) => g,
            None => return,
        }
    };
}

fn up(g: &Gpu, x: &[f32]) -> CudaSlice<f32> {
    g.stream.clone_htod(x).expect("upload")
}
fn down(g: &Gpu, x: &CudaSlice<f32>) -> Vec<f32> {
    g.stream.clone_dtoh(x).expect("download")
}

fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    got.iter().zip(want).fold(0f32, |m, (a, b)| {
        let e = (a - b).abs() / scale;
        if e.is_nan() {
            f32::INFINITY
        } else {
            m.max(e)
        }
    })
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let e = max_rel_err(got, want);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
}

fn randn(n: usize, scale: f64, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| (rng.normal() * scale) as f32).collect()
}

/// Selector outputs with locations spread over the map, on its border, on cell boundaries and
/// outside it (as the CPU readout tests).
fn selectors(v: usize, l: usize, rng: &mut Rng) -> Vec<f32> {
    let mut data = Vec::new();
    for i in 0..v {
        let (x, y) = match i % 7 {
            0 => (rng.uniform_range(-1.3, 1.3), rng.uniform_range(-1.3, 1.3)),
            1 => (-1.0, rng.uniform_range(-1.0, 1.0)),
            2 => (0.999, -0.999),
            3 => (1.0, 1.0),
            4 => (0.0, 0.0),
            _ => (rng.uniform_range(-0.95, 0.95), rng.uniform_range(-0.95, 0.95)),
        };
        data.push(x as f32);
        data.push(y as f32);
        let logits: Vec<f64> = (0..l).map(|_| rng.normal()).collect();
        let z: f64 = logits.iter().map(|a| a.exp()).sum();
        data.extend(logits.iter().map(|a| (a.exp() / z) as f32));
        data.push(rng.uniform_range(0.05, 0.95) as f32);
    }
    data
}

/// (B, L, G, D, V): V not a multiple of the 8-voxel block or the 32-voxel chunk, D = 1, L = 1,
/// G = 1, D = 40 (two warps, one partial), the paper's D and G, several blocks of voxels, one image
/// and one voxel, and G = 24, whose d maps pass needs more than the 48 KiB of shared memory a
/// block gets without opting in (cuFuncSetAttribute).
const SHAPES: [(usize, usize, usize, usize, usize); 9] = [
    (3, 4, 5, 7, 67),
    (2, 1, 3, 1, 5),
    (1, 2, 1, 4, 9),
    (4, 3, 8, 16, 130),
    (2, 2, 4, 40, 33),
    (2, 3, 8, 128, 1001),
    (1, 1, 1, 1, 1),
    (8, 12, 8, 128, 257),
    (1, 2, 24, 33, 70),
];

#[test]
fn readout_forward_and_backward_match_cpu() {
    let g = gpu_or_skip!("readout_forward_and_backward_match_cpu");
    for &(b, l, gr, dd, v) in &SHAPES {
        let d = Dims { b, l, g: gr, d: dd, v };
        let mut rng = Rng::new((b * 1000 + l * 100 + gr * 10 + dd + v) as u64);
        let maps = randn(b * l * d.cells() * dd, 1.0, &mut rng);
        let sel = selectors(v, l, &mut rng);
        let wc = randn(v * (dd + 1), 0.5, &mut rng);
        let go = randn(b * v, 1.0, &mut rng);
        let (gm, gs, gw, ggo) = (up(&g, &maps), up(&g, &sel), up(&g, &wc), up(&g, &go));

        let out = gro::forward(&g, &d, &gm, &gs, &gw).unwrap();
        assert_close(&format!("forward {d:?}"), &down(&g, &out), &cpu_forward(&d, &maps, &sel, &wc), TOL);

        let (dm, ds, dw) = gro::backward(&g, &d, &gm, &gs, &gw, &ggo).unwrap();
        let (cm, cs, cw) = cpu_backward(&d, &maps, &sel, &wc, &go);
        assert_close(&format!("d maps {d:?}"), &down(&g, &dm), &cm, TOL);
        assert_close(&format!("d sel {d:?}"), &down(&g, &ds), &cs, TOL);
        assert_close(&format!("d wc {d:?}"), &down(&g, &dw), &cw, TOL);

        // No atomics anywhere: a second backward gives the same bits.
        let (dm2, ds2, dw2) = gro::backward(&g, &d, &gm, &gs, &gw, &ggo).unwrap();
        assert_eq!(down(&g, &dm), down(&g, &dm2), "d maps is not deterministic at {d:?}");
        assert_eq!(down(&g, &ds), down(&g, &ds2), "d sel is not deterministic at {d:?}");
        assert_eq!(down(&g, &dw), down(&g, &dw2), "d wc is not deterministic at {d:?}");
    }
}

#[test]
fn readout_forward_accepts_f16_and_bf16_maps() {
    let g = gpu_or_skip!("readout_forward_accepts_f16_and_bf16_maps");
    for &(b, l, gr, dd, v) in &SHAPES[..6] {
        let d = Dims { b, l, g: gr, d: dd, v };
        let mut rng = Rng::new(77 + v as u64);
        let maps = randn(b * l * d.cells() * dd, 1.0, &mut rng);
        let sel = selectors(v, l, &mut rng);
        let wc = randn(v * (dd + 1), 0.5, &mut rng);
        let (gs, gw) = (up(&g, &sel), up(&g, &wc));
        for kind in [Half::F16, Half::Bf16] {
            // The reference reads the same rounded values in f32: only accumulation may differ.
            let (bits, rounded): (Vec<u16>, Vec<f32>) = match kind {
                Half::F16 => maps.iter().map(|&x| half::f16::from_f32(x)).map(|h| (h.to_bits(), h.to_f32())).unzip(),
                Half::Bf16 => maps.iter().map(|&x| half::bf16::from_f32(x)).map(|h| (h.to_bits(), h.to_f32())).unzip(),
            };
            let gm = g.stream.clone_htod(&bits).unwrap();
            let mut out = g.stream.alloc_zeros::<f32>(b * v).unwrap();
            gro::forward_half_into(&g, &d, kind, &gm.as_view(), &gs.as_view(), &gw.as_view(), &mut out.as_view_mut())
                .unwrap();
            assert_close(
                &format!("{kind:?} forward {d:?}"),
                &down(&g, &out),
                &cpu_forward(&d, &rounded, &sel, &wc),
                TOL,
            );
        }
    }
}

#[test]
fn readout_rejects_wrong_lengths_without_launching() {
    let g = gpu_or_skip!("readout_rejects_wrong_lengths_without_launching");
    let d = Dims { b: 2, l: 2, g: 2, d: 3, v: 4 };
    let maps = up(&g, &vec![0.0; 2 * 2 * 5 * 3 - 1]);
    let sel = up(&g, &[0.0; 4 * 5]);
    let wc = up(&g, &[0.0; 4 * 4]);
    let e = gro::forward(&g, &d, &maps, &sel, &wc).unwrap_err().to_string();
    assert!(e.contains("maps"), "{e}");
}

/// The heads and the regulariser through candle, as `Encoder::selectors` and
/// `loss::regulariser` compute them: returns (packed sel, R) and, for an upstream `dsel` and a
/// regulariser weight, the gradient w.r.t. the packed raw input.
fn candle_heads(raw: &[f32], v: usize, l: usize, dsel: &[f32], w: f64) -> (Vec<f32>, f32, Vec<f32>) {
    let raw_v = Var::from_tensor(&Tensor::from_vec(raw.to_vec(), (v, l + 3), &CPU).unwrap()).unwrap();
    let r = raw_v.as_tensor();
    let space = r.narrow(1, 0, 2).unwrap().tanh().unwrap();
    let probs = candle_nn::ops::softmax(&r.narrow(1, 2, l).unwrap(), D::Minus1).unwrap();
    let scale = candle_nn::ops::sigmoid(&r.narrow(1, 2 + l, 1).unwrap().squeeze(1).unwrap()).unwrap();
    let packed = Tensor::cat(&[&space, &probs, &scale.unsqueeze(1).unwrap()], 1).unwrap();
    let reg = loss::regulariser(&probs, &scale).unwrap();
    let dsel_t = Tensor::from_vec(dsel.to_vec(), (v, l + 3), &CPU).unwrap();
    let obj = ((&packed * &dsel_t).unwrap().sum_all().unwrap() + (&reg * w).unwrap()).unwrap();
    let grads = obj.backward().unwrap();
    let draw = grads.get(r).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (packed.flatten_all().unwrap().to_vec1().unwrap(), reg.to_scalar::<f32>().unwrap(), draw)
}

#[test]
fn selector_heads_and_regulariser_match_candle() {
    let g = gpu_or_skip!("selector_heads_and_regulariser_match_candle");
    for &(l, v) in &[(1usize, 1usize), (1, 300), (2, 37), (6, 257), (12, 1000)] {
        let mut rng = Rng::new((l * 1000 + v) as u64);
        let raw = randn(v * (l + 3), 1.5, &mut rng);
        let dsel = randn(v * (l + 3), 1.0, &mut rng);
        let w = 0.07;
        let (want_sel, want_reg, want_draw) = candle_heads(&raw, v, l, &dsel, w);
        let graw = up(&g, &raw);
        let mut sel = g.stream.alloc_zeros::<f32>(v * (l + 3)).unwrap();
        let mut reg = g.stream.alloc_zeros::<f32>(v).unwrap();
        heads_forward(&g, v, l, &graw.as_view(), &mut sel.as_view_mut(), &mut reg.as_view_mut()).unwrap();
        assert_close(&format!("heads L={l} V={v}"), &down(&g, &sel), &want_sel, TOL);
        // R = mean of the per-voxel terms, through the device's deterministic sum.
        let mut partials = g.stream.alloc_zeros::<f32>(REDUCE_BLOCKS).unwrap();
        let mut out = g.stream.alloc_zeros::<f32>(1).unwrap();
        ew::sum(&g, &reg.as_view(), &mut partials.as_view_mut(), &mut out.as_view_mut(), 1.0 / v as f32).unwrap();
        assert_close(&format!("regulariser L={l} V={v}"), &down(&g, &out), &[want_reg], TOL);
        let gd = up(&g, &dsel);
        let mut draw = g.stream.alloc_zeros::<f32>(v * (l + 3)).unwrap();
        heads_backward(&g, v, l, &sel.as_view(), &gd.as_view(), &mut draw.as_view_mut(), w as f32).unwrap();
        assert_close(&format!("heads backward L={l} V={v}"), &down(&g, &draw), &want_draw, TOL);
    }
}

#[test]
fn gelu_forward_backward_match_candle() {
    let g = gpu_or_skip!("gelu_forward_backward_match_candle");
    let (rows, cols) = (37usize, 45usize);
    let mut rng = Rng::new(5);
    let pre = randn(rows * cols, 2.0, &mut rng);
    let bias = randn(cols, 1.0, &mut rng);
    let dout = randn(rows * cols, 1.0, &mut rng);
    let x = Var::from_tensor(&Tensor::from_vec(pre.clone(), (rows, cols), &CPU).unwrap()).unwrap();
    let b = Tensor::from_vec(bias.clone(), cols, &CPU).unwrap();
    let a = x.as_tensor().broadcast_add(&b).unwrap();
    let y = a.gelu_erf().unwrap();
    let grads = (&y * Tensor::from_vec(dout.clone(), (rows, cols), &CPU).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let want_y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want_a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want_dx = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();

    let mut gpre = up(&g, &pre);
    let gb = up(&g, &bias);
    let mut gy = g.stream.alloc_zeros::<f32>(rows * cols).unwrap();
    ew::bias_gelu_forward(&g, rows, cols, &mut gpre.as_view_mut(), &gb.as_view(), &mut gy.as_view_mut()).unwrap();
    assert_close("bias + gelu", &down(&g, &gy), &want_y, TOL);
    assert_close("kept pre-activation", &down(&g, &gpre), &want_a, TOL);
    let gdo = up(&g, &dout);
    let mut gdx = g.stream.alloc_zeros::<f32>(rows * cols).unwrap();
    ew::gelu_backward(&g, &gdo.as_view(), &gpre.as_view(), &mut gdx.as_view_mut()).unwrap();
    assert_close("gelu backward", &down(&g, &gdx), &want_dx, TOL);
    let ga = up(&g, &want_a);
    let mut gy2 = g.stream.alloc_zeros::<f32>(rows * cols).unwrap();
    ew::gelu_forward(&g, &ga.as_view(), &mut gy2.as_view_mut()).unwrap();
    assert_close("gelu", &down(&g, &gy2), &want_y, TOL);
}

#[test]
fn smooth_l1_matches_candle() {
    let g = gpu_or_skip!("smooth_l1_matches_candle");
    for n in [1usize, 1000, 70_001] {
        let mut rng = Rng::new(n as u64);
        let pred = randn(n, 0.3, &mut rng);
        let target = randn(n, 0.3, &mut rng);
        let p = Var::from_tensor(&Tensor::from_vec(pred.clone(), n, &CPU).unwrap()).unwrap();
        let t = Tensor::from_vec(target.clone(), n, &CPU).unwrap();
        let l = loss::smooth_l1(&(p.as_tensor() - &t).unwrap(), 0.1).unwrap().mean_all().unwrap();
        let want_grad = l.backward().unwrap().get(p.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let want = l.to_scalar::<f32>().unwrap();

        let (gp, gt) = (up(&g, &pred), up(&g, &target));
        let mut grad = g.stream.alloc_zeros::<f32>(n).unwrap();
        let mut partials = g.stream.alloc_zeros::<f32>(REDUCE_BLOCKS).unwrap();
        let mut out = g.stream.alloc_zeros::<f32>(1).unwrap();
        let inv = 1.0 / n as f32;
        ew::smooth_l1(
            &g,
            &gp.as_view(),
            &gt.as_view(),
            &mut grad.as_view_mut(),
            &mut partials.as_view_mut(),
            &mut out.as_view_mut(),
            0.1,
            inv,
            inv,
        )
        .unwrap();
        assert_close(&format!("smooth-L1 n={n}"), &down(&g, &out), &[want], TOL);
        assert_close(&format!("smooth-L1 gradient n={n}"), &down(&g, &grad), &want_grad, TOL);
    }
}

#[test]
fn sums_and_norm_match_f64() {
    let g = gpu_or_skip!("sums_and_norm_match_f64");
    for n in [1usize, 255, 256 * 256 + 3] {
        let mut rng = Rng::new(n as u64 + 9);
        let x = randn(n, 1.0, &mut rng);
        let gx = up(&g, &x);
        let mut partials = g.stream.alloc_zeros::<f32>(REDUCE_BLOCKS).unwrap();
        let mut out = g.stream.alloc_zeros::<f32>(1).unwrap();
        ew::sqnorm(&g, &gx.as_view(), &mut partials.as_view_mut(), &mut out.as_view_mut()).unwrap();
        let want = x.iter().map(|&a| a as f64 * a as f64).sum::<f64>() as f32;
        assert_close(&format!("squared norm n={n}"), &down(&g, &out), &[want], TOL);
        ew::sum(&g, &gx.as_view(), &mut partials.as_view_mut(), &mut out.as_view_mut(), 0.5).unwrap();
        let want = (0.5 * x.iter().map(|&a| a as f64).sum::<f64>()) as f32;
        let abs = x.iter().map(|&a| a.abs()).sum::<f32>() * 0.5;
        // A sum of mixed signs: judge the error against the sum of magnitudes.
        let got = down(&g, &out)[0];
        assert!((got - want).abs() <= TOL * abs.max(1e-6), "sum n={n}: {got} vs {want}");
    }
}

/// One clipped AdamW step on the GPU against `fit::clip_gradients` + candle-nn's AdamW, for a
/// gradient above and below the clip norm.
#[test]
fn adamw_with_clipping_matches_candle_nn() {
    use candle_nn::{AdamW as CpuAdamW, Optimizer, ParamsAdamW};
    let g = gpu_or_skip!("adamw_with_clipping_matches_candle_nn");
    for (scale, steps) in [(1.0f64, 3usize), (1e-4, 2)] {
        let n = 1234;
        let mut rng = Rng::new(42);
        let p0 = randn(n, 1.0, &mut rng);
        let grads_seq: Vec<Vec<f32>> = (0..steps).map(|_| randn(n, scale, &mut rng)).collect();
        let var = Var::from_tensor(&Tensor::from_vec(p0.clone(), n, &CPU).unwrap()).unwrap();
        let params = ParamsAdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
        let mut opt = CpuAdamW::new(vec![var.clone()], params.clone()).unwrap();
        for gs in &grads_seq {
            // loss = Σ g·p has gradient g.
            let gt = Tensor::from_vec(gs.clone(), n, &CPU).unwrap();
            let mut store = (var.as_tensor() * &gt).unwrap().sum_all().unwrap().backward().unwrap();
            factortopy::engine::candle_cpu::clip_gradients(&mut store, std::slice::from_ref(&var), 0.5).unwrap();
            opt.step(&store).unwrap();
        }
        let want = var.as_tensor().to_vec1::<f32>().unwrap();

        let mut gp = up(&g, &p0);
        let mut m = g.stream.alloc_zeros::<f32>(n).unwrap();
        let mut v = g.stream.alloc_zeros::<f32>(n).unwrap();
        let mut partials = g.stream.alloc_zeros::<f32>(REDUCE_BLOCKS).unwrap();
        let mut norm = g.stream.alloc_zeros::<f32>(1).unwrap();
        let hp = AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, max_norm: 0.5 };
        for (t, gs) in grads_seq.iter().enumerate() {
            let gg = up(&g, gs);
            ew::sqnorm(&g, &gg.as_view(), &mut partials.as_view_mut(), &mut norm.as_view_mut()).unwrap();
            ew::adamw_step(
                &g,
                &hp,
                t + 1,
                &mut gp.as_view_mut(),
                &gg.as_view(),
                &mut m.as_view_mut(),
                &mut v.as_view_mut(),
                &norm.as_view(),
            )
            .unwrap();
        }
        assert_close(&format!("AdamW, gradient scale {scale}"), &down(&g, &gp), &want, TOL);
    }
}

#[test]
fn gather_rows_widens_f16_and_bf16() {
    let g = gpu_or_skip!("gather_rows_widens_f16_and_bf16");
    let (n, row) = (7usize, 33usize);
    let mut rng = Rng::new(3);
    let src = randn(n * row, 1.0, &mut rng);
    let idx: Vec<i32> = vec![6, 0, 3, 3, 5];
    let gidx = g.stream.clone_htod(&idx).unwrap();
    let (offset, rows) = (1usize, 3usize);
    let expect = |vals: &[f32]| -> Vec<f32> {
        (0..rows)
            .flat_map(|r| vals[idx[offset + r] as usize * row..(idx[offset + r] as usize + 1) * row].to_vec())
            .collect()
    };
    let mut dst = g.stream.alloc_zeros::<f32>(rows * row).unwrap();
    let gs = up(&g, &src);
    ew::gather_rows(&g, &Rows::F32(gs.as_view()), &gidx.as_view(), offset, rows, row, &mut dst.as_view_mut()).unwrap();
    assert_eq!(down(&g, &dst), expect(&src));
    let h: Vec<half::f16> = src.iter().map(|&x| half::f16::from_f32(x)).collect();
    let gh = g.stream.clone_htod(&h.iter().map(|x| x.to_bits()).collect::<Vec<_>>()).unwrap();
    ew::gather_rows(&g, &Rows::F16(gh.as_view()), &gidx.as_view(), offset, rows, row, &mut dst.as_view_mut()).unwrap();
    assert_eq!(down(&g, &dst), expect(&h.iter().map(|x| x.to_f32()).collect::<Vec<_>>()));
    let b: Vec<half::bf16> = src.iter().map(|&x| half::bf16::from_f32(x)).collect();
    let gb = g.stream.clone_htod(&b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()).unwrap();
    ew::gather_rows(&g, &Rows::Bf16(gb.as_view()), &gidx.as_view(), offset, rows, row, &mut dst.as_view_mut()).unwrap();
    assert_eq!(down(&g, &dst), expect(&b.iter().map(|x| x.to_f32()).collect::<Vec<_>>()));
}

/// The whole GPU forward and backward (gathers, cuBLAS alignment and MLP products, heads,
/// readout, smooth-L1, regulariser) against candle's autograd on `fit::objective`, parameter by
/// parameter, with the regulariser on and off and a batch smaller than the buffers.
#[test]
fn whole_objective_gradients_match_candle_autograd() {
    let g = gpu_or_skip!("whole_objective_gradients_match_candle_autograd");
    for &(grid, d, step) in &[(2usize, 4usize, 50usize), (3, 33, 0), (1, 1, 5000)] {
        let (prepared, bt, enc) = tiny(3 + grid as u64, grid, d);
        let cfg = FitConfig { beta: 0.1, reg_steps: 100, batch_size: 6, d, grid, ..FitConfig::default() };
        let batch = [0usize, 2, 3, 5, 9];
        let loss = objective(&enc, &prepared, &bt, &batch, &cfg, step).unwrap();
        let want_loss = loss.to_scalar::<f32>().unwrap();
        let grads = loss.backward().unwrap();
        let opts = GpuFitOptions { ordinal: g.ordinal, eval_chunk: 4, ..Default::default() };
        let mut tr = GpuTrainer::new(g.clone(), &enc, &prepared, &bt, &cfg, &opts).unwrap();
        let (got_loss, got) = tr.loss_and_gradients(&batch, step).unwrap();
        let ctx = format!("grid {grid}, D {d}, step {step}");
        assert_close(&format!("loss ({ctx})"), &[got_loss as f32], &[want_loss], TOL);
        for ((name, var), (gname, gvals)) in enc.named_vars().into_iter().zip(got) {
            assert_eq!(name, gname);
            let want = grads.get(var.as_tensor()).expect("gradient").flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_close(&format!("gradient of {name} ({ctx})"), &gvals, &want, TOL);
        }
        // Predictions of the GPU path equal the CPU path's for the same parameters.
        let idx: Vec<usize> = (0..prepared.n_images()).collect();
        let want_pred = factortopy::engine::predict::predict_cpu(&enc, &prepared, &bt.pe, &idx).unwrap();
        assert_close(&format!("predictions ({ctx})"), &tr.predict(&idx).unwrap(), &want_pred, TOL);
    }
}

/// Features prepared on the device (the resampling, the spatial means standing in for a missing
/// global token, and common units from the channel-moment kernels) hold the values the host
/// path computes, and the host reads of them (every value, or a few images) agree.
#[test]
fn device_preparation_and_layer_units_match_the_host() {
    use cudarc::driver::DevicePtr;
    use factortopy::cuda::resident::{CallerTensor, DeviceLayer};
    use factortopy::data::{Precision, Store, StoredFeatures, StoredLayer};
    use factortopy::engine::prepare::{prepare, Recipe};
    use factortopy::model::{PreparedFeatures, Resample};

    let g = gpu_or_skip!("device_preparation_and_layer_units_match_the_host");
    let mut rng = Rng::new(11);
    // Channels above and below a warp, a map smaller than the grid, images not a multiple of 32.
    let shapes = [[37usize, 5, 7, 6], [37, 33, 3, 3], [37, 1, 1, 1]];
    let (mut host, mut on_device) = (StoredFeatures::new("m"), StoredFeatures::new("m"));
    for shape in shapes {
        let count: usize = shape.iter().product();
        // An offset mean, so the centring matters.
        let values: Vec<f32> = randn(count, 2.0, &mut rng).iter().map(|x| x + 3.0).collect();
        host.push(StoredLayer::new(shape, Store::F32(values.clone()), None).unwrap()).unwrap();
        let buf = up(&g, &values);
        let layer = {
            let (address, _sync) = buf.device_ptr(&g.stream);
            let [_, c, h, w] = shape.map(|d| d as i64);
            let t = CallerTensor { address, precision: Precision::F32, shape, strides: [c * h * w, h * w, w, 1] };
            DeviceLayer::copy(g.ordinal, &t, None).map_err(|e| format!("{e:?}")).unwrap()
        };
        on_device.push(StoredLayer::on_device(layer)).unwrap();
    }
    for precision in [Precision::F32, Precision::Bf16] {
        let how = Recipe { grid: 4, resample: Resample::Bilinear, precision: Some(precision), units: None };
        let mut want = PreparedFeatures::new(&host, 4, Resample::Bilinear, Some(precision)).unwrap();
        let mut got = prepare(factortopy::engine::Device::Cuda(g.ordinal), &on_device, None, how).unwrap();
        assert!(got.device_values().is_some(), "CUDA layers were not prepared on the device");
        let want_units = want.normalise().unwrap();
        let got_units = got.normalise().unwrap();
        for (l, (a, b)) in got_units.iter().zip(&want_units).enumerate() {
            assert_close(&format!("layer {l} local means"), &a.local_mean, &b.local_mean, 1e-6);
            assert_close(&format!("layer {l} global means"), &a.global_mean, &b.global_mean, 1e-6);
            assert!((a.local_scale / b.local_scale - 1.0).abs() < 1e-6, "layer {l}: scale {} vs {}", a.local_scale, b.local_scale);
            assert!((a.global_scale / b.global_scale - 1.0).abs() < 1e-6, "layer {l}: scale {} vs {}", a.global_scale, b.global_scale);
        }
        // A few images straight from the device, then everything through the one host copy.
        let some = [36usize, 0, 17, 17];
        for l in 0..shapes.len() {
            let (gl, gg) = got.layer_batch(l, &some).unwrap();
            let (wl, wg) = want.layer_batch(l, &some).unwrap();
            let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            // bf16: a rounding step apart at most where the f32 sums differ in the last bit.
            let tol = if precision == Precision::Bf16 { 1e-2 } else { 1e-5 };
            assert_close(&format!("{precision} layer {l} local maps of some images"), &flat(gl), &flat(wl), tol);
            assert_close(&format!("{precision} layer {l} global tokens of some images"), &flat(gg), &flat(wg), tol);
        }
        got.load_host().unwrap();
        for l in 0..shapes.len() {
            let tol = if precision == Precision::Bf16 { 1e-2 } else { 1e-5 };
            assert_close(&format!("{precision} layer {l} local maps"), &got.local_f32(l).unwrap(), &want.local_f32(l).unwrap(), tol);
        }
    }
}
