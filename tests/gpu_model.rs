//! The CUDA execution model the kernels rely on, checked on the device itself: warp exchanges
//! (`__shfl*_sync` with widths and partial masks, `__ballot_sync`, `__any/__all_sync`,
//! `__match_any_sync`), block barriers, shared memory (static and dynamic, every `extern
//! __shared__` array at one address), 3-D thread and block indices, and the f16/bf16 conversions
//! (round to nearest even, bit for bit against the `half` crate). Every expectation is CUDA's
//! documented semantics, so these pass on a real GPU and on factortopy's CPU emulator of one
//! (scripts/cuda-emu) alike.
//!
//! On the emulator, further tests check what it promises beyond a GPU (each in a child process,
//! since a failed launch leaves the context unusable, as on a GPU): a missing barrier gives wrong
//! answers, not lucky ones; memory faults, deadlocked warp exchanges, bad masks, host pointers
//! given to a kernel and writes past the dynamic shared memory fail the launch with a message;
//! a call the emulator does not implement fails with its name.
//!
//! Needs a CUDA device; without one each test prints `SKIPPED: <reason>` and returns.
#![cfg(feature = "cuda")]

mod common;

use cudarc::driver::{CudaFunction, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use factortopy::cuda::Gpu;
use std::sync::Arc;

macro_rules! gpu_or_return {
    ($name:expr) => {
        match common::gpu_or_skip($name) {
            Some(g) => g,
            None => return,
        }
    };
}

/// Compiles `src` as the crate compiles kernels/*.cu (after kernels/prelude.cuh, with the same
/// options) and returns its function `name`.
fn kernel(g: &Arc<Gpu>, src: &str, name: &str) -> CudaFunction {
    let (major, minor) = g.compute_capability;
    let mut options: Vec<String> = factortopy::cuda::module::COMPILE_OPTIONS.iter().map(|s| s.to_string()).collect();
    options.push(format!("--gpu-architecture=compute_{major}{minor}"));
    let opts = CompileOptions { options, name: Some("model_test.cu".into()), ..Default::default() };
    let ptx = compile_ptx_with_opts(factortopy::cuda::module::kernel_source("model_test.cu", src), opts).unwrap_or_else(|e| panic!("compiling the test kernel: {e:?}"));
    let module = g.ctx.load_module(ptx).expect("loading the test module");
    module.load_function(name).expect("the test kernel")
}

fn cfg(grid: (u32, u32, u32), block: (u32, u32, u32), shared: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: grid, block_dim: block, shared_mem_bytes: shared }
}

const WARP_SRC: &str = r#"
#define FULL 0xffffffffu
// out[kind * 64 + t] for t < 64 (two warps).
extern "C" __global__ void warp_ops(const int* in, int* out) {
    const int t = threadIdx.x, lane = t & 31;
    const int v = in[t];
    out[0 * 64 + t] = __shfl_sync(FULL, v, (lane * 7 + 3) & 31);
    out[1 * 64 + t] = __shfl_sync(FULL, v, lane + 5, 8);           // within groups of 8, modulo 8
    out[2 * 64 + t] = __shfl_up_sync(FULL, v, 3);                   // lanes 0..2 keep their own
    out[3 * 64 + t] = __shfl_down_sync(FULL, v, 5, 16);             // per 16-lane half
    out[4 * 64 + t] = __shfl_xor_sync(FULL, v, 9);
    out[5 * 64 + t] = __shfl_xor_sync(FULL, v, 4, 4);               // crosses into the next group: own value
    out[6 * 64 + t] = (int)__ballot_sync(FULL, v % 3 == 0);
    out[7 * 64 + t] = __any_sync(FULL, v == 40) + 2 * __all_sync(FULL, v >= 0);
    out[8 * 64 + t] = (int)__match_any_sync(FULL, v % 4);
    // Partial masks: even lanes exchange among themselves, odd lanes among themselves.
    const unsigned mine = (lane & 1) ? 0xaaaaaaaau : 0x55555555u;
    out[9 * 64 + t] = __shfl_xor_sync(mine, v, 2);
    out[10 * 64 + t] = (int)__ballot_sync(mine, v > 20);
    // Only the first 16 lanes take part (a lane outside the mask would give an undefined value, so
    // none is read: the last four keep their own, past the end of the 16-lane segment).
    if (lane < 16) out[11 * 64 + t] = __shfl_down_sync(0x0000ffffu, v, 4, 16);
    else out[11 * 64 + t] = -7;
    float f = (float)v * 0.5f;
    for (int o = 16; o > 0; o >>= 1) f += __shfl_xor_sync(FULL, f, o);
    out[12 * 64 + t] = (int)f;
}
"#;

/// The values CUDA documents for each exchange of `warp_ops`.
fn warp_ops_expected(input: &[i32]) -> Vec<i32> {
    let mut out = vec![0i32; 13 * 64];
    for w in 0..2 {
        let v = |lane: usize| input[w * 32 + lane];
        for lane in 0..32usize {
            let t = w * 32 + lane;
            let idx = |src: usize, width: usize| v((lane & !(width - 1)) + (src & (width - 1)));
            out[t] = idx((lane * 7 + 3) & 31, 32);
            out[64 + t] = idx(lane + 5, 8);
            out[2 * 64 + t] = if lane >= 3 { v(lane - 3) } else { v(lane) };
            let seg_end = (lane & !15) + 16;
            out[3 * 64 + t] = if lane + 5 < seg_end { v(lane + 5) } else { v(lane) };
            out[4 * 64 + t] = v(lane ^ 9);
            let src = lane ^ 4;
            out[5 * 64 + t] = if src < (lane & !3) + 4 { v(src) } else { v(lane) };
            out[6 * 64 + t] = (0..32).filter(|&l| v(l) % 3 == 0).fold(0u32, |m, l| m | 1 << l) as i32;
            out[7 * 64 + t] = (0..32).any(|l| v(l) == 40) as i32 + 2 * (0..32).all(|l| v(l) >= 0) as i32;
            out[8 * 64 + t] = (0..32).filter(|&l| v(l) % 4 == v(lane) % 4).fold(0u32, |m, l| m | 1 << l) as i32;
            out[9 * 64 + t] = v(lane ^ 2);
            let mine: u32 = if lane & 1 == 1 { 0xaaaa_aaaa } else { 0x5555_5555 };
            out[10 * 64 + t] =
                (0..32).filter(|&l| mine >> l & 1 == 1 && v(l) > 20).fold(0u32, |m, l| m | 1 << l) as i32;
            out[11 * 64 + t] = if lane < 16 { if lane + 4 < 16 { v(lane + 4) } else { v(lane) } } else { -7 };
            out[12 * 64 + t] = (0..32).map(|l| v(l) as f32 * 0.5).sum::<f32>() as i32;
        }
    }
    out
}

#[test]
fn warp_exchanges_follow_cuda_semantics() {
    let g = gpu_or_return!("warp_exchanges_follow_cuda_semantics");
    let f = kernel(&g, WARP_SRC, "warp_ops");
    let input: Vec<i32> = (0..64).map(|i| (i * 37 + 11) % 61).collect();
    let din = g.stream.clone_htod(&input).unwrap();
    let mut dout = g.stream.alloc_zeros::<i32>(13 * 64).unwrap();
    let mut l = g.stream.launch_builder(&f);
    l.arg(&din).arg(&mut dout);
    // SAFETY: warp_ops(const int*, int*) reads 64 ints and writes 13 * 64.
    unsafe { l.launch(cfg((1, 1, 1), (64, 1, 1), 0)) }.unwrap();
    let got = g.stream.clone_dtoh(&dout).unwrap();
    let want = warp_ops_expected(&input);
    for k in 0..13 {
        assert_eq!(&got[k * 64..(k + 1) * 64], &want[k * 64..(k + 1) * 64], "exchange {k}");
    }
}

const BLOCK_SRC: &str = r#"
// Each thread of a 3-D block writes its ids, then, after a barrier, reads its neighbour's entry in
// static shared memory and the sum of all entries through dynamic shared memory seen under two
// names (every extern __shared__ array starts at the same address).
extern "C" __global__ void block_ops(int* ids, int* neighbour, int* total, int* counts) {
    __shared__ int mine[512];
    extern __shared__ int dyn_i[];
    extern __shared__ float dyn_f[];
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int n = blockDim.x * blockDim.y * blockDim.z;
    const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int gt = b * n + t;
    ids[gt * 4 + 0] = threadIdx.x + 10 * threadIdx.y + 100 * threadIdx.z;
    ids[gt * 4 + 1] = blockIdx.x + 10 * blockIdx.y + 100 * blockIdx.z;
    ids[gt * 4 + 2] = blockDim.x + 10 * blockDim.y + 100 * blockDim.z;
    ids[gt * 4 + 3] = gridDim.x + 10 * gridDim.y + 100 * gridDim.z;
    mine[t] = gt;
    dyn_f[t] = (float)t;
    __syncthreads();
    neighbour[gt] = mine[(t + 1) % n];
    if (t == 0) {
        int s = 0;
        for (int i = 0; i < n; ++i) s += (int)__int_as_float(dyn_i[i]);
        total[b] = s;
    }
    const int c = __syncthreads_count(t % 3 == 0);
    if (t == 0) counts[b] = c;
}
"#;

#[test]
fn block_barriers_shared_memory_and_indices() {
    let g = gpu_or_return!("block_barriers_shared_memory_and_indices");
    let f = kernel(&g, BLOCK_SRC, "block_ops");
    let (bx, by, bz) = (5u32, 3, 4); // 60 threads: one full warp and a partial one
    let (gx, gy, gz) = (2u32, 3, 2);
    let n = (bx * by * bz) as usize;
    let nb = (gx * gy * gz) as usize;
    let mut ids = g.stream.alloc_zeros::<i32>(nb * n * 4).unwrap();
    let mut neighbour = g.stream.alloc_zeros::<i32>(nb * n).unwrap();
    let mut total = g.stream.alloc_zeros::<i32>(nb).unwrap();
    let mut counts = g.stream.alloc_zeros::<i32>(nb).unwrap();
    let mut l = g.stream.launch_builder(&f);
    l.arg(&mut ids).arg(&mut neighbour).arg(&mut total).arg(&mut counts);
    // SAFETY: block_ops writes 4 ints per thread, one per thread, one and one per block, and uses
    // n ints of dynamic shared memory.
    unsafe { l.launch(cfg((gx, gy, gz), (bx, by, bz), (n * 4) as u32)) }.unwrap();
    let (ids, neighbour) = (g.stream.clone_dtoh(&ids).unwrap(), g.stream.clone_dtoh(&neighbour).unwrap());
    let (total, counts) = (g.stream.clone_dtoh(&total).unwrap(), g.stream.clone_dtoh(&counts).unwrap());
    for b in 0..nb {
        let (x, y, z) = (b % gx as usize, b / gx as usize % gy as usize, b / (gx * gy) as usize);
        for t in 0..n {
            let (tx, ty, tz) = (t % bx as usize, t / bx as usize % by as usize, t / (bx * by) as usize);
            let gt = b * n + t;
            let want = [tx + 10 * ty + 100 * tz, x + 10 * y + 100 * z, 5 + 30 + 400, 2 + 30 + 200];
            let got: Vec<usize> = ids[gt * 4..gt * 4 + 4].iter().map(|&v| v as usize).collect();
            assert_eq!(got, want, "ids of block {b} thread {t}");
            assert_eq!(neighbour[gt] as usize, b * n + (t + 1) % n, "neighbour of block {b} thread {t}");
        }
        assert_eq!(total[b] as usize, n * (n - 1) / 2, "sum through dynamic shared memory, block {b}");
        assert_eq!(counts[b] as usize, n.div_ceil(3), "__syncthreads_count, block {b}");
    }
}

const HALF_SRC: &str = r#"
// f32 -> f16 and f32 -> bf16 with round-to-nearest-even, and back.
extern "C" __global__ void to_half(const float* x, unsigned short* h, unsigned short* b, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned short hb, bb;
#if defined(FACTORTOPY_CUDA_EMU)
        hb = __half_as_ushort(__float2half_rn(x[i]));
        bb = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
#else
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(hb) : "f"(x[i]));
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(bb) : "f"(x[i]));
#endif
        h[i] = hb;
        b[i] = bb;
    }
}
// Widening with the kernels' own to_f32 (kernels/prelude.cuh).
extern "C" __global__ void from_half(const unsigned short* h, float* f16, float* bf16, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        f16[i] = to_f32(f16_t{h[i]});
        bf16[i] = to_f32(bf16_t{h[i]});
    }
}
"#;

/// Floats that exercise every rounding path: ties to even and odd in both formats, the f16
/// subnormal range and its underflow, the overflow boundary, signed zeros, infinities, and a
/// spread of ordinary values.
fn rounding_cases() -> Vec<f32> {
    let mut v: Vec<f32> = vec![0.0, -0.0, 1.0, -1.0, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, f32::MAX];
    v.extend([65504.0, 65519.0, 65519.99, 65520.0, 65536.0, 1e-8, 2.98e-8, 2.99e-8, 5.96e-8, 6.1e-5, 6.09e-5]);
    for e in -30..20 {
        let base = 2f32.powi(e);
        for k in 0..64u32 {
            // Bit patterns right at and around the f16 (13 dropped bits) and bf16 (16 dropped bits)
            // rounding points.
            let m = f32::from_bits((base.to_bits() & 0xff80_0000) | (k * 0x1000) | ((k & 1) * 0x800));
            v.extend([m, -m, f32::from_bits(m.to_bits() + 1), f32::from_bits(m.to_bits() - 1)]);
            let b = f32::from_bits((base.to_bits() & 0xff80_0000) | (k << 16) | 0x8000);
            v.extend([b, f32::from_bits(b.to_bits() + 1), f32::from_bits(b.to_bits() - 1)]);
        }
    }
    let mut rng = factortopy::rng::Rng::new(9);
    v.extend((0..20_000).map(|_| (rng.normal() * 10f64.powi((rng.uniform_range(-9.0, 6.0)) as i32)) as f32));
    v
}

#[test]
fn f16_and_bf16_conversions_round_to_nearest_even_like_the_half_crate() {
    let g = gpu_or_return!("f16_and_bf16_conversions_round_to_nearest_even_like_the_half_crate");
    let to = kernel(&g, HALF_SRC, "to_half");
    let from = kernel(&g, HALF_SRC, "from_half");
    let x = rounding_cases();
    let n = x.len() as i32;
    let dx = g.stream.clone_htod(&x).unwrap();
    let mut dh = g.stream.alloc_zeros::<u16>(x.len()).unwrap();
    let mut db = g.stream.alloc_zeros::<u16>(x.len()).unwrap();
    let mut l = g.stream.launch_builder(&to);
    l.arg(&dx).arg(&mut dh).arg(&mut db).arg(&n);
    // SAFETY: to_half reads and writes n elements of each buffer.
    unsafe { l.launch(cfg((64, 1, 1), (256, 1, 1), 0)) }.unwrap();
    let (h, b) = (g.stream.clone_dtoh(&dh).unwrap(), g.stream.clone_dtoh(&db).unwrap());
    for (i, &xi) in x.iter().enumerate() {
        assert_eq!(h[i], half::f16::from_f32(xi).to_bits(), "f16 of {xi:e} ({:#010x})", xi.to_bits());
        assert_eq!(b[i], half::bf16::from_f32(xi).to_bits(), "bf16 of {xi:e} ({:#010x})", xi.to_bits());
    }
    // Widening is exact: every one of the 65536 bit patterns, as f16 and as bf16.
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let dall = g.stream.clone_htod(&all).unwrap();
    let mut f16 = g.stream.alloc_zeros::<f32>(all.len()).unwrap();
    let mut bf16 = g.stream.alloc_zeros::<f32>(all.len()).unwrap();
    let m = all.len() as i32;
    let mut l = g.stream.launch_builder(&from);
    l.arg(&dall).arg(&mut f16).arg(&mut bf16).arg(&m);
    // SAFETY: from_half reads and writes m elements of each buffer.
    unsafe { l.launch(cfg((64, 1, 1), (256, 1, 1), 0)) }.unwrap();
    let (f16, bf16) = (g.stream.clone_dtoh(&f16).unwrap(), g.stream.clone_dtoh(&bf16).unwrap());
    for &bits in &all {
        let (a, want) = (f16[bits as usize], half::f16::from_bits(bits).to_f32());
        assert!(a.to_bits() == want.to_bits() || (a.is_nan() && want.is_nan()), "f16 {bits:#06x}: {a:e} vs {want:e}");
        let (a, want) = (bf16[bits as usize], half::bf16::from_bits(bits).to_f32());
        assert!(a.to_bits() == want.to_bits() || (a.is_nan() && want.is_nan()), "bf16 {bits:#06x}: {a:e} vs {want:e}");
    }
}

// ---------------------------------------------------------------------------------------------
// What only the emulator checks. Each case runs this test binary again, filtered to one of the
// `child_*` tests below, with FACTORTOPY_GPU_MODEL_CHILD=1 (they do nothing otherwise).

fn is_child() -> bool {
    std::env::var("FACTORTOPY_GPU_MODEL_CHILD").is_ok_and(|v| v == "1")
}

/// Runs `child` in a fresh process with `env`; returns (success, stderr).
fn run_child(child: &str, env: &[(&str, &str)]) -> (bool, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--nocapture", "--test-threads", "1"])
        .env("FACTORTOPY_GPU_MODEL_CHILD", "1")
        .envs(env.iter().copied())
        .output()
        .expect("running the test binary again");
    let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), err)
}

/// The emulator-only checks need the emulator; on a real GPU they say so and pass.
fn emulator_or_return(name: &str) -> Option<Arc<Gpu>> {
    let g = common::gpu_or_skip(name)?;
    if !common::on_emulator(&g) {
        eprintln!("{name}: {} is a real GPU; this checks the CPU emulator only", g.name);
        return None;
    }
    Some(g)
}

const RACY_SRC: &str = r#"
// Thread 0 sums what every thread wrote to shared memory. With SYNC 0 the barrier is missing.
extern "C" __global__ void block_sum(const float* x, float* out, int sync) {
    __shared__ float s[256];
    s[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
    if (sync) __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0.0f;
        for (int i = 0; i < blockDim.x; ++i) t += s[i];
        out[blockIdx.x] = t;
    }
}
"#;

#[test]
fn child_block_sum() {
    if !is_child() {
        return;
    }
    let g = common::gpu_or_skip("child_block_sum").unwrap();
    let f = kernel(&g, RACY_SRC, "block_sum");
    let x: Vec<f32> = (0..4 * 256).map(|i| (i % 17) as f32).collect();
    let dx = g.stream.clone_htod(&x).unwrap();
    let mut out = g.stream.alloc_zeros::<f32>(4).unwrap();
    let sync: i32 = std::env::var("SYNC").unwrap().parse().unwrap();
    let mut l = g.stream.launch_builder(&f);
    l.arg(&dx).arg(&mut out).arg(&sync);
    // SAFETY: block_sum reads 256 floats per block and writes one.
    unsafe { l.launch(cfg((4, 1, 1), (256, 1, 1), 0)) }.unwrap();
    let got = g.stream.clone_dtoh(&out).unwrap();
    let want: Vec<f32> = x.chunks(256).map(|c| c.iter().sum()).collect();
    println!("RESULT {}", if got == want { "right" } else { "wrong" });
}

/// With the barrier the sum is right in every lane order; without it the emulator gives a wrong
/// answer (shared memory nobody wrote yet reads as NaN) in forward and random order. Reverse order
/// happens to hide this race, which is why a knob chooses the order.
#[test]
fn a_missing_barrier_gives_wrong_answers() {
    let Some(_g) = emulator_or_return("a_missing_barrier_gives_wrong_answers") else { return };
    for order in ["forward", "reverse", "random:3"] {
        for sync in ["1", "0"] {
            let (ok, out) = run_child("child_block_sum", &[("FACTORTOPY_CUDA_EMU_ORDER", order), ("SYNC", sync)]);
            assert!(ok, "{out}");
            let right = out.contains("RESULT right");
            assert!(out.contains("RESULT "), "{out}");
            eprintln!("order {order}, barrier {}: {}", sync == "1", if right { "right" } else { "wrong" });
            if sync == "1" {
                assert!(right, "with the barrier the sum must be right in {order} order");
            } else if order != "reverse" {
                assert!(!right, "without the barrier the sum must come out wrong in {order} order");
            }
        }
    }
}

const FAULT_SRC: &str = r#"
extern "C" __global__ void write_at(float* p, long long offset) { if (threadIdx.x == 0) p[offset] = 1.0f; }
extern "C" __global__ void shfl_after_exit(float* p) {
    if (threadIdx.x == 5) return;
    p[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}
extern "C" __global__ void shfl_bad_mask(float* p) { p[threadIdx.x] = __shfl_sync(0x0000ffffu, 1.0f, 0); }
extern "C" __global__ void shared_overrun(float* p, int n) {
    extern __shared__ float s[];
    s[threadIdx.x] = 0.0f;
    if (threadIdx.x == 0) s[n] = 1.0f;
    __syncthreads();
    p[threadIdx.x] = s[threadIdx.x];
}
"#;

#[test]
fn child_fault() {
    if !is_child() {
        return;
    }
    let g = common::gpu_or_skip("child_fault").unwrap();
    let case = std::env::var("CASE").unwrap();
    let mut buf = g.stream.alloc_zeros::<f32>(1000).unwrap();
    let r = match case.as_str() {
        "out_of_bounds" | "in_bounds" => {
            let f = kernel(&g, FAULT_SRC, "write_at");
            let off: i64 = if case == "in_bounds" { 999 } else { 1000 + 100 };
            let mut l = g.stream.launch_builder(&f);
            l.arg(&mut buf).arg(&off);
            // SAFETY: deliberately out of bounds for "out_of_bounds": the emulator must catch it.
            unsafe { l.launch(cfg((1, 1, 1), (32, 1, 1), 0)) }.map(|_| ())
        }
        "host_pointer" => {
            let f = kernel(&g, FAULT_SRC, "write_at");
            let mut host = vec![0f32; 4];
            let p = host.as_mut_ptr() as u64;
            let off = 0i64;
            let mut l = g.stream.launch_builder(&f);
            l.arg(&p).arg(&off);
            // SAFETY: a host pointer where a device pointer belongs: the emulator must refuse it.
            unsafe { l.launch(cfg((1, 1, 1), (32, 1, 1), 0)) }.map(|_| ())
        }
        "shfl_after_exit" | "shfl_bad_mask" => {
            let f = kernel(&g, FAULT_SRC, &case);
            let mut l = g.stream.launch_builder(&f);
            l.arg(&mut buf);
            // SAFETY: one block of 32 threads writes 32 floats (or fails).
            unsafe { l.launch(cfg((1, 1, 1), (32, 1, 1), 0)) }.map(|_| ())
        }
        "shared_overrun" => {
            let f = kernel(&g, FAULT_SRC, "shared_overrun");
            let n = 64i32;
            let mut l = g.stream.launch_builder(&f);
            l.arg(&mut buf).arg(&n);
            // SAFETY: 64 threads, 64 floats of dynamic shared memory; thread 0 writes one past it.
            unsafe { l.launch(cfg((1, 1, 1), (64, 1, 1), 64 * 4)) }.map(|_| ())
        }
        _ => panic!("unknown case {case}"),
    };
    let r = r.and_then(|_| g.stream.synchronize());
    println!("RESULT {}", match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{e:?}"),
    });
}

/// Faults and misuse fail the launch with a CUDA error and a message that says what happened.
#[test]
fn faults_and_misuse_fail_the_launch_with_a_message() {
    let Some(_g) = emulator_or_return("faults_and_misuse_fail_the_launch_with_a_message") else { return };
    let cases = [
        ("in_bounds", "RESULT ok", ""),
        ("out_of_bounds", "CUDA_ERROR_ILLEGAL_ADDRESS", "past the end of the 4000-byte device allocation"),
        ("host_pointer", "CUDA_ERROR_ILLEGAL_ADDRESS", "not in any device allocation"),
        ("shfl_after_exit", "CUDA_ERROR_LAUNCH_FAILED", "exited"),
        ("shfl_bad_mask", "CUDA_ERROR_LAUNCH_FAILED", "does not include the calling lane"),
        ("shared_overrun", "CUDA_ERROR_LAUNCH_FAILED", "wrote past the 256 bytes of dynamic shared memory"),
    ];
    for (case, result, message) in cases {
        let (ok, out) = run_child("child_fault", &[("CASE", case)]);
        assert!(ok, "{case}: {out}");
        assert!(out.contains(result), "{case}: expected {result}:\n{out}");
        assert!(out.contains(message), "{case}: expected the message '{message}':\n{out}");
        eprintln!("{case}: {}", out.lines().find(|l| l.starts_with("cuda-emu:")).unwrap_or("ok"));
    }
}

#[test]
fn child_unimplemented() {
    if !is_child() {
        return;
    }
    let _g = common::gpu_or_skip("child_unimplemented").unwrap();
    // SAFETY: cuDeviceGetPCIBusId(char*, int, CUdevice) with a valid buffer of the given length.
    let r = unsafe {
        let mut buf = [0 as std::ffi::c_char; 32];
        cudarc::driver::sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), 32, 0)
    };
    println!("RESULT {r:?}");
}

/// A driver call the emulator does not implement fails with CUDA_ERROR_NOT_SUPPORTED and its
/// name on stderr, instead of cudarc panicking over a missing symbol.
#[test]
fn unimplemented_calls_fail_with_their_name() {
    let Some(_g) = emulator_or_return("unimplemented_calls_fail_with_their_name") else { return };
    let (ok, out) = run_child("child_unimplemented", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("RESULT CUDA_ERROR_NOT_SUPPORTED"), "{out}");
    assert!(out.contains("cuDeviceGetPCIBusId is not implemented"), "{out}");
}
