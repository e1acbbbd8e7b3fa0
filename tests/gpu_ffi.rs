//! The C ABI on a CUDA device: DLPack tensors in CUDA memory are read from the device they name
//! (and a tensor whose label does not match where its bytes are is a device error, not a copy
//! from wherever its pointer points), and a fit and a prediction through the C ABI on `cuda:N`
//! give the CPU's results.
//!
//! On factortopy's CPU emulator of a CUDA device (scripts/cuda-emu) the emulated driver counts the
//! bytes it copies, which shows that a CUDA tensor stays on the device for work there and is
//! copied to the host once, when host code first reads it. Needs a CUDA device; without one each test prints `SKIPPED: <reason>`.
#![cfg(feature = "cuda")]

mod common;

use std::ffi::{c_void, CStr, CString};
use std::ptr::{null, null_mut};

use cudarc::driver::DevicePtr;
use factortopy::ffi::*;

macro_rules! gpu_or_return {
    ($name:expr) => {
        match common::gpu_or_skip($name) {
            Some(g) => g,
            None => return,
        }
    };
}

fn last_error() -> String {
    // SAFETY: ft_last_error always returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(ft_last_error()) }.to_string_lossy().into_owned()
}

fn new_features() -> *mut ft_features {
    let mut f = null_mut();
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { ft_features_new(&mut f) }, ft_status::FT_OK);
    f
}

/// Layer `l`'s local values as f32.
fn local_values(f: *const ft_features, l: usize) -> Vec<f32> {
    let mut v = ft_layer_view { local: null(), local_shape: [0; 4], global: null(), global_shape: [0; 2] };
    // SAFETY: live handle, valid out-pointer; NULL buffers ask for the shapes.
    let st = unsafe { ft_features_layer_copy(f, l, &mut v, null_mut(), 0, null_mut(), 0) };
    assert_eq!(st, ft_status::FT_OK, "{}", last_error());
    let mut local = vec![0f32; v.local_shape.iter().product::<i64>() as usize];
    // SAFETY: the buffer holds the capacity passed.
    let st = unsafe { ft_features_layer_copy(f, l, &mut v, local.as_mut_ptr(), local.len(), null_mut(), 0) };
    assert_eq!(st, ft_status::FT_OK, "{}", last_error());
    local
}

fn cuda_tensor(data: *mut c_void, device_id: i32, code: u8, bits: u8, shape: &mut [i64], strides: Option<&mut [i64]>) -> DLTensor {
    DLTensor {
        data,
        device: DLDevice { device_type: 2, device_id },
        ndim: shape.len() as i32,
        dtype: DLDataType { code, bits, lanes: 1 },
        shape: shape.as_mut_ptr(),
        strides: strides.map_or(null_mut(), |s| s.as_mut_ptr()),
        byte_offset: 0,
    }
}

/// The emulated driver's counters (bytes host→device, device→host, device→device, launches), or
/// None on a real driver.
fn emulator_stats() -> Option<[u64; 4]> {
    // SAFETY: dlopen with RTLD_NOLOAD only finds the libcuda cudarc already loaded; dlsym of a
    // symbol the real driver lacks gives NULL; the emulator's cuda_emu_stats writes 4 u64s.
    unsafe {
        let name = CString::new("libcuda.so.1").unwrap();
        let h = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if h.is_null() {
            return None;
        }
        let sym = CString::new("cuda_emu_stats").unwrap();
        let f = libc::dlsym(h, sym.as_ptr());
        if f.is_null() {
            return None;
        }
        let f: unsafe extern "C" fn(*mut u64) = std::mem::transmute(f);
        let mut out = [0u64; 4];
        f(out.as_mut_ptr());
        Some(out)
    }
}

#[test]
fn cuda_dlpack_tensors_are_read_from_device_memory() {
    let g = gpu_or_return!("cuda_dlpack_tensors_are_read_from_device_memory");
    let dev = g.ordinal as i32;
    let values: Vec<f32> = (0..2 * 3 * 4 * 4).map(|i| (i as f32 * 0.37).sin()).collect();
    let f = new_features();

    // f32, row-major, in device memory.
    let buf = g.stream.clone_htod(&values).unwrap();
    let (ptr, _sync) = buf.device_ptr(&g.stream);
    let mut shape = [2i64, 3, 4, 4];
    let t = cuda_tensor(ptr as *mut c_void, dev, 2, 32, &mut shape, None);
    let before = emulator_stats();
    // SAFETY: the tensor describes live device memory of cuda:dev.
    assert_eq!(unsafe { ft_features_add_layer_dlpack(f, &t, null()) }, ft_status::FT_OK, "{}", last_error());
    let added = emulator_stats();
    if let (Some(a), Some(b)) = (before, added) {
        // The layer stays on the device: only the first-non-finite slots (16 bytes) come back.
        assert!(b[1] - a[1] <= 16, "adding a CUDA layer copied {} bytes device→host", b[1] - a[1]);
        assert_eq!(b[0] - a[0], 0, "bytes copied host→device");
    }
    assert_eq!(local_values(f, 0), values);
    if let (Some(a), Some(b)) = (added, emulator_stats()) {
        // Host code reading it gets one device-to-host copy of the layer, made once.
        assert_eq!(b[1] - a[1], (values.len() * 4) as u64, "bytes copied device→host by the first host read");
    }
    let read = emulator_stats();
    assert_eq!(local_values(f, 0), values);
    if let (Some(a), Some(b)) = (read, emulator_stats()) {
        assert_eq!(b[1] - a[1], 0, "a second host read copied the layer again");
    }

    // bf16 with transposed strides (channels last), a byte offset into the buffer.
    let bits: Vec<u16> = values.iter().map(|&x| half::bf16::from_f32(x).to_bits()).collect();
    // Lay the [2, 3, 4, 4] tensor out as [2, 4, 4, 3] in memory, after 5 padding elements.
    let mut nhwc = vec![0u16; 5 + bits.len()];
    for n in 0..2 {
        for c in 0..3 {
            for y in 0..4 {
                for x in 0..4 {
                    nhwc[5 + ((n * 4 + y) * 4 + x) * 3 + c] = bits[((n * 3 + c) * 4 + y) * 4 + x];
                }
            }
        }
    }
    let buf16 = g.stream.clone_htod(&nhwc).unwrap();
    let (ptr16, _sync16) = buf16.device_ptr(&g.stream);
    let mut shape = [2i64, 3, 4, 4];
    let mut strides = [48i64, 1, 12, 3];
    let mut t = cuda_tensor(ptr16 as *mut c_void, dev, 4, 16, &mut shape, Some(&mut strides));
    t.byte_offset = 10;
    // SAFETY: as above.
    assert_eq!(unsafe { ft_features_add_layer_dlpack(f, &t, null()) }, ft_status::FT_OK, "{}", last_error());
    let want: Vec<f32> = bits.iter().map(|&b| half::bf16::from_bits(b).to_f32()).collect();
    assert_eq!(local_values(f, 1), want);
    // SAFETY: live handle.
    unsafe { ft_features_free(f) };
}

#[test]
fn mislabelled_cuda_tensors_are_device_errors() {
    let g = gpu_or_return!("mislabelled_cuda_tensors_are_device_errors");
    let dev = g.ordinal as i32;
    let f = new_features();
    let mut host = vec![1f32; 24];
    let mut shape = [2i64, 3, 2, 2];
    // Host memory labelled as CUDA memory.
    let t = cuda_tensor(host.as_mut_ptr().cast(), dev, 2, 32, &mut shape, None);
    // SAFETY: a valid description; the library must not read it as device memory.
    assert_eq!(unsafe { ft_features_add_layer_dlpack(f, &t, null()) }, ft_status::FT_ERR_DEVICE);
    let e = last_error();
    assert!(e.contains("CUDA device") && e.contains("cpu()"), "{e}");

    // Device memory, but fewer bytes than the shape says.
    let small = g.stream.alloc_zeros::<f32>(20).unwrap();
    let (ptr, _sync) = small.device_ptr(&g.stream);
    let t = cuda_tensor(ptr as *mut c_void, dev, 2, 32, &mut shape, None);
    // SAFETY: as above (rejected before the copy).
    assert_eq!(unsafe { ft_features_add_layer_dlpack(f, &t, null()) }, ft_status::FT_ERR_DEVICE);
    assert!(last_error().contains("run past"), "{}", last_error());

    // The right memory, the wrong device.
    let t = cuda_tensor(ptr as *mut c_void, dev + 1_000_000, 2, 32, &mut shape, None);
    // SAFETY: as above.
    assert_eq!(unsafe { ft_features_add_layer_dlpack(f, &t, null()) }, ft_status::FT_ERR_DEVICE);
    assert!(last_error().contains("cannot be used"), "{}", last_error());
    // SAFETY: live handle, nothing was added.
    unsafe {
        let (mut images, mut layers) = (99usize, 99usize);
        assert_eq!(ft_features_shape(f, &mut images, &mut layers), ft_status::FT_OK);
        assert_eq!(layers, 0);
        ft_features_free(f);
    }
}

/// A non-finite value in a CUDA tensor is refused with the error the same values get as a host
/// tensor: the first bad element in row-major order, by its index in the caller's shape and its
/// value, whatever the strides, wherever it lies in memory and in whichever block it is found.
#[test]
fn non_finite_cuda_tensors_name_their_first_bad_element() {
    let g = gpu_or_return!("non_finite_cuda_tensors_name_their_first_bad_element");
    let dev = g.ordinal as i32;
    // Adds the layer (local, global) to a fresh set; returns the FT_ERR_DATA message.
    let refused = |local: &DLTensor, global: Option<&DLTensor>| -> String {
        let f = new_features();
        // SAFETY: the tensors describe live memory of the device they name; live handle.
        let st = unsafe { ft_features_add_layer_dlpack(f, local, global.map_or(null(), |t| t as *const DLTensor)) };
        let e = last_error();
        // SAFETY: live handle.
        unsafe { ft_features_free(f) };
        assert_eq!(st, ft_status::FT_ERR_DATA, "{e}");
        e
    };
    let on_host = |mut t: DLTensor| {
        t.device = DLDevice { device_type: 1, device_id: 0 };
        t
    };

    // f32, contiguous, over many blocks: bad values in several blocks, the first one in none of
    // the first blocks nor at the start of a block's range.
    let mut shape = [4i64, 8, 32, 32];
    let mut values: Vec<f32> = (0..4 * 8 * 32 * 32).map(|i| (i as f32 * 0.37).sin()).collect();
    values[30_000] = f32::NAN;
    values[20_001] = f32::NEG_INFINITY;
    values[5_003] = f32::INFINITY; // [0, 4, 28, 11]
    values[5_004] = f32::NAN;
    let buf = g.stream.clone_htod(&values).unwrap();
    let (ptr, _sync) = buf.device_ptr(&g.stream);
    let t = cuda_tensor(ptr as *mut c_void, dev, 2, 32, &mut shape, None);
    let e = refused(&t, None);
    assert_eq!(e, "layer 0: the local map has a non-finite value (inf) at index [0, 4, 28, 11]");
    let mut host_shape = shape;
    assert_eq!(e, refused(&on_host(cuda_tensor(values.as_mut_ptr().cast(), 0, 2, 32, &mut host_shape, None)), None));

    // bf16 channels-last: memory order is not row-major order. (0, 2, 0, 0) sits at memory
    // offset 2, before (0, 0, 0, 1) at offset 3, but comes after it in row-major order.
    let dims = [2usize, 3, 4, 4];
    let mut small: Vec<f32> = (0..2 * 3 * 4 * 4).map(|i| (i as f32 * 0.37).cos()).collect();
    small[2 * 16] = f32::NAN; // (0, 2, 0, 0)
    small[1] = f32::INFINITY; // (0, 0, 0, 1)
    small[48] = f32::NEG_INFINITY; // (1, 0, 0, 0)
    let (mut bits, strides) = channels_last_bf16(&small, dims);
    let buf16 = g.stream.clone_htod(&bits).unwrap();
    let (ptr16, _sync16) = buf16.device_ptr(&g.stream);
    let mut shape = [2i64, 3, 4, 4];
    let mut s = strides;
    let t = cuda_tensor(ptr16 as *mut c_void, dev, 4, 16, &mut shape, Some(&mut s));
    let e = refused(&t, None);
    assert_eq!(e, "layer 0: the local map has a non-finite value (inf) at index [0, 0, 0, 1]");
    let (mut host_shape, mut host_strides) = (shape, strides);
    let host = cuda_tensor(bits.as_mut_ptr().cast(), 0, 4, 16, &mut host_shape, Some(&mut host_strides));
    assert_eq!(e, refused(&on_host(host), None));

    // A finite local map and a column-major global token [2, 3]: [1, 0] is at memory offset 1,
    // [0, 2] at 4, and [0, 2] comes first in row-major order.
    let finite: Vec<f32> = small.iter().map(|v| if v.is_finite() { *v } else { 0.5 }).collect();
    let buf_local = g.stream.clone_htod(&finite).unwrap();
    let (ptr_local, _sync_local) = buf_local.device_ptr(&g.stream);
    let mut global = vec![0.25f32; 6];
    global[1] = f32::INFINITY; // [1, 0]
    global[4] = f32::NAN; // [0, 2]
    let buf_global = g.stream.clone_htod(&global).unwrap();
    let (ptr_global, _sync_global) = buf_global.device_ptr(&g.stream);
    let mut shape = [2i64, 3, 4, 4];
    let (mut gshape, mut gstrides) = ([2i64, 3], [1i64, 2]);
    let local_t = cuda_tensor(ptr_local as *mut c_void, dev, 2, 32, &mut shape, None);
    let global_t = cuda_tensor(ptr_global as *mut c_void, dev, 2, 32, &mut gshape, Some(&mut gstrides));
    let e = refused(&local_t, Some(&global_t));
    assert_eq!(e, "layer 0: the global token has a non-finite value (NaN) at index [0, 2]");
    let mut finite_host = finite.clone();
    let (mut host_shape, mut host_gshape, mut host_gstrides) = (shape, gshape, gstrides);
    let host_local = on_host(cuda_tensor(finite_host.as_mut_ptr().cast(), 0, 2, 32, &mut host_shape, None));
    let host_global =
        on_host(cuda_tensor(global.as_mut_ptr().cast(), 0, 2, 32, &mut host_gshape, Some(&mut host_gstrides)));
    assert_eq!(e, refused(&host_local, Some(&host_global)));
}

/// A fit through the C ABI on the GPU against the same fit on the CPU (held-out R² to 1e-3), and
/// `ft_fit_predict` on the GPU against the CPU.
#[test]
fn fit_and_predict_through_the_c_abi_on_cuda() {
    let g = gpu_or_return!("fit_and_predict_through_the_c_abi_on_cuda");
    let tmp = tempfile::tempdir().unwrap();
    let d = CString::new(tmp.path().to_str().unwrap()).unwrap();
    let path = |n: &str| CString::new(tmp.path().join(n).to_str().unwrap()).unwrap();
    let cuda = CString::new(format!("cuda:{}", g.ordinal)).unwrap();
    let cpu = CString::new("cpu").unwrap();
    // SAFETY: every handle below is live until freed; out-pointers are valid.
    unsafe {
        assert_eq!(ft_device_check(cuda.as_ptr()), ft_status::FT_OK, "{}", last_error());
        let mut so = std::mem::zeroed::<ft_synth_options>();
        assert_eq!(ft_synth_options_default(&mut so), ft_status::FT_OK);
        so.n_images = 160;
        so.n_voxels = 120;
        so.n_layers = 3;
        so.width = 8;
        so.grid = 3;
        so.noise_ceiling = 0.9;
        so.seed = 4;
        assert_eq!(ft_synth_write(d.as_ptr(), &so), ft_status::FT_OK, "{}", last_error());
        let (mut brain, mut feats) = (null_mut(), null_mut());
        assert_eq!(ft_brain_load(path("brain.safetensors").as_ptr(), &mut brain), ft_status::FT_OK);
        assert_eq!(ft_features_load(path("features.safetensors").as_ptr(), &mut feats), ft_status::FT_OK);
        let mut fo = std::mem::zeroed::<ft_fit_options>();
        ft_fit_options_default(&mut fo);
        fo.d = 8;
        fo.grid = 3;
        fo.max_epochs = 8;
        fo.batch_size = 16;
        fo.lr = 3e-3;
        fo.reg_steps = 30;
        fo.val_fraction = 0.2;
        let fit_on = |device: &CString| {
            let mut fit = null_mut();
            assert_eq!(ft_fit_new_on(feats, brain, &fo, device.as_ptr(), &mut fit), ft_status::FT_OK, "{}", last_error());
            let mut sum = std::mem::zeroed::<ft_fit_summary>();
            assert_eq!(ft_fit_report_summary(fit, &mut sum), ft_status::FT_OK);
            (fit, sum)
        };
        let (fit_gpu, sg) = fit_on(&cuda);
        let (fit_cpu, sc) = fit_on(&cpu);
        assert!((sg.r2_mean - sc.r2_mean).abs() < 1e-3, "held-out R² {} (GPU) vs {} (CPU)", sg.r2_mean, sc.r2_mean);
        assert!(sg.r2_mean > 0.0, "{}", sg.r2_mean);
        let n = (160 * 120) as usize;
        let (mut pg, mut pc) = (vec![0f32; n], vec![0f32; n]);
        assert_eq!(ft_fit_predict(fit_cpu, feats, brain, cuda.as_ptr(), pg.as_mut_ptr(), n), ft_status::FT_OK, "{}", last_error());
        assert_eq!(ft_fit_predict(fit_cpu, feats, brain, cpu.as_ptr(), pc.as_mut_ptr(), n), ft_status::FT_OK, "{}", last_error());
        let scale = pc.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
        let err = pg.iter().zip(&pc).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        assert!(err < 1e-4, "predictions on {cuda:?} differ from the CPU's by {err:.3e}");
        ft_fit_free(fit_gpu);
        ft_fit_free(fit_cpu);
        ft_features_free(feats);
        ft_brain_free(brain);
    }
}

/// Layer `l`'s shape, local values and global values (if any) as f32.
fn layer_values(f: *const ft_features, l: usize) -> ([usize; 4], Vec<f32>, Option<Vec<f32>>) {
    let mut v = ft_layer_view { local: null(), local_shape: [0; 4], global: null(), global_shape: [0; 2] };
    // SAFETY: live handle, valid out-pointer; NULL buffers ask for the shapes.
    let st = unsafe { ft_features_layer_copy(f, l, &mut v, null_mut(), 0, null_mut(), 0) };
    assert_eq!(st, ft_status::FT_OK, "{}", last_error());
    let shape = v.local_shape.map(|d| d as usize);
    let mut local = vec![0f32; shape.iter().product()];
    let mut global = vec![0f32; shape[0] * shape[1]];
    // SAFETY: the buffers hold the capacities passed.
    let st = unsafe {
        ft_features_layer_copy(f, l, &mut v, local.as_mut_ptr(), local.len(), global.as_mut_ptr(), global.len())
    };
    assert_eq!(st, ft_status::FT_OK, "{}", last_error());
    let has_global = v.global_shape[0] > 0;
    (shape, local, has_global.then_some(global))
}

/// `[N, C, H, W]` values laid out channels-last (`[N, H, W, C]` in memory) as bf16 bits, with
/// the strides that describe them as `[N, C, H, W]`.
fn channels_last_bf16(values: &[f32], [n, c, h, w]: [usize; 4]) -> (Vec<u16>, [i64; 4]) {
    let mut out = vec![0u16; values.len()];
    for i in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    out[((i * h + y) * w + x) * c + ch] =
                        half::bf16::from_f32(values[((i * c + ch) * h + y) * w + x]).to_bits();
                }
            }
        }
    }
    (out, [(h * w * c) as i64, 1, (w * c) as i64, c as i64])
}

/// Layers given as CUDA DLPack tensors stay on the device for work on that device: a monitor
/// step and a prediction on cuda:0 read them without copying the features to the host (the
/// emulated driver counts every device→host byte), and give what the same layers given as host
/// tensors give. One layer comes without its global token (its spatial mean is taken on the
/// device), one as a strided channels-last bf16 tensor; the grid differs from every layer's size,
/// so each layer is resampled (down and up), in common units (the encoder's units are applied on
/// the device).
#[test]
fn cuda_layers_stay_on_the_device_for_cuda_work() {
    let g = gpu_or_return!("cuda_layers_stay_on_the_device_for_cuda_work");
    let dev = g.ordinal as i32;
    let tmp = tempfile::tempdir().unwrap();
    let d = CString::new(tmp.path().to_str().unwrap()).unwrap();
    let path = |n: &str| CString::new(tmp.path().join(n).to_str().unwrap()).unwrap();
    let cuda = CString::new(format!("cuda:{}", g.ordinal)).unwrap();
    let n_images = 160usize;
    let n_voxels = 120usize;
    // SAFETY: every handle below is live until freed; out-pointers and buffers are valid; the
    // device buffers outlive the calls that read them.
    unsafe {
        let mut so = std::mem::zeroed::<ft_synth_options>();
        assert_eq!(ft_synth_options_default(&mut so), ft_status::FT_OK);
        so.n_images = n_images;
        so.n_voxels = n_voxels;
        so.n_layers = 3;
        so.width = 8;
        so.grid = 3;
        so.noise_ceiling = 0.9;
        so.seed = 4;
        assert_eq!(ft_synth_write(d.as_ptr(), &so), ft_status::FT_OK, "{}", last_error());
        let (mut brain, mut file) = (null_mut(), null_mut());
        assert_eq!(ft_brain_load(path("brain.safetensors").as_ptr(), &mut brain), ft_status::FT_OK);
        assert_eq!(ft_features_load(path("features.safetensors").as_ptr(), &mut file), ft_status::FT_OK);

        // The same layers twice: as host tensors and as CUDA tensors.
        let (host, on_device) = (new_features(), new_features());
        let (mut wide_buffers, mut half_buffers) = (Vec::new(), Vec::new());
        let mut local_bytes = 0u64;
        let before_add = emulator_stats();
        for l in 0..3 {
            let (shape, local, global) = layer_values(file, l);
            let global = if l == 1 { None } else { global };
            let mut dims = shape.map(|x| x as i64);
            let mut gdims = [shape[0] as i64, shape[1] as i64];
            local_bytes += (local.len() * 4) as u64;
            if l == 2 {
                // bf16, channels last, on both paths (the host one compact).
                let (nhwc, strides) = channels_last_bf16(&local, shape);
                let compact: Vec<u16> = local.iter().map(|&x| half::bf16::from_f32(x).to_bits()).collect();
                let ht = ft_tensor { data: compact.as_ptr().cast(), dtype: 2, ndim: 4, shape: dims.as_ptr(), strides: null() };
                let gbits: Vec<u16> = global.as_ref().unwrap().iter().map(|&x| half::bf16::from_f32(x).to_bits()).collect();
                let hg = ft_tensor { data: gbits.as_ptr().cast(), dtype: 2, ndim: 2, shape: gdims.as_ptr(), strides: null() };
                assert_eq!(ft_features_add_layer(host, &ht, &hg), ft_status::FT_OK, "{}", last_error());
                let buf = g.stream.clone_htod(&nhwc).unwrap();
                let gbuf = g.stream.clone_htod(&gbits).unwrap();
                let mut strides = strides;
                {
                    let (p, _s) = buf.device_ptr(&g.stream);
                    let (gp, _gs) = gbuf.device_ptr(&g.stream);
                    let t = cuda_tensor(p as *mut c_void, dev, 4, 16, &mut dims, Some(&mut strides));
                    let gt = cuda_tensor(gp as *mut c_void, dev, 4, 16, &mut gdims, None);
                    assert_eq!(ft_features_add_layer_dlpack(on_device, &t, &gt), ft_status::FT_OK, "{}", last_error());
                }
                half_buffers.push(buf);
                half_buffers.push(gbuf);
                continue;
            }
            let ht = ft_tensor { data: local.as_ptr().cast(), dtype: 0, ndim: 4, shape: dims.as_ptr(), strides: null() };
            let hg = global.as_ref().map(|gv| ft_tensor { data: gv.as_ptr().cast(), dtype: 0, ndim: 2, shape: gdims.as_ptr(), strides: null() });
            assert_eq!(
                ft_features_add_layer(host, &ht, hg.as_ref().map_or(null(), |t| t as *const ft_tensor)),
                ft_status::FT_OK,
                "{}",
                last_error()
            );
            let buf = g.stream.clone_htod(&local).unwrap();
            let gbuf = global.as_ref().map(|gv| g.stream.clone_htod(gv).unwrap());
            {
                let (p, _s) = buf.device_ptr(&g.stream);
                let t = cuda_tensor(p as *mut c_void, dev, 2, 32, &mut dims, None);
                let gt = gbuf.as_ref().map(|gb| {
                    let (gp, _gs) = gb.device_ptr(&g.stream);
                    cuda_tensor(gp as *mut c_void, dev, 2, 32, &mut gdims, None)
                });
                let gptr = gt.as_ref().map_or(null(), |t| t as *const DLTensor);
                assert_eq!(ft_features_add_layer_dlpack(on_device, &t, gptr), ft_status::FT_OK, "{}", last_error());
            }
            wide_buffers.push(buf);
            wide_buffers.extend(gbuf);
        }
        // The library keeps its own copies: the caller's buffers can go.
        drop((wide_buffers, half_buffers));
        let copied_back = |a: Option<[u64; 4]>, b: Option<[u64; 4]>| a.zip(b).map(|(a, b)| b[1] - a[1]);
        if let Some(back) = copied_back(before_add, emulator_stats()) {
            // Per layer only its two first-non-finite slots (16 bytes) come back.
            assert!(back <= 3 * 16, "adding CUDA layers copied {back} bytes to the host");
        }

        // A monitor on cuda:0, in common units and bilinear to a 4×4 grid (6×6 and 3×3 layers).
        let mut mo = std::mem::zeroed::<ft_monitor_options>();
        assert_eq!(ft_monitor_options_for_images(n_images, &mut mo), ft_status::FT_OK);
        mo.fit.d = 8;
        mo.fit.grid = 4;
        mo.fit.max_epochs = 8;
        mo.fit.batch_size = 16;
        mo.fit.lr = 3e-3;
        mo.fit.reg_steps = 30;
        mo.refit_every = 0;
        let method = CString::new("bilinear,common").unwrap();
        let mut mon = null_mut();
        let st = ft_monitor_new_resampled(brain, host, &mo, cuda.as_ptr(), method.as_ptr(), &mut mon);
        assert_eq!(st, ft_status::FT_OK, "{}", last_error());
        let observe = |step: u64, f: *mut ft_features| {
            let mut rep = null_mut();
            assert_eq!(ft_monitor_observe(mon, step, f, &mut rep), ft_status::FT_OK, "{}", last_error());
            let mut s = std::mem::zeroed::<ft_step_summary>();
            assert_eq!(ft_step_report_summary(rep, &mut s), ft_status::FT_OK);
            let mut cka = [0f64; 3];
            assert_eq!(ft_step_report_cka(rep, cka.as_mut_ptr(), 3), ft_status::FT_OK, "{}", last_error());
            ft_step_report_free(rep);
            (s, cka)
        };
        let (want, want_cka) = observe(1, host);
        let before = emulator_stats();
        let (got, got_cka) = observe(2, on_device);
        if let Some(back) = copied_back(before, emulator_stats()) {
            // The held-out predictions and the layers' global tokens come back; the local maps
            // (which these are a small part of) do not.
            assert!(back < local_bytes / 4, "a monitor step on CUDA layers copied {back} bytes to the host (local maps: {local_bytes})");
        }
        assert!((got.r2 - want.r2).abs() < 1e-4, "held-out R² {} (CUDA layers) vs {} (host layers)", got.r2, want.r2);
        assert!((got.retention - want.retention).abs() < 1e-4, "retention {} vs {}", got.retention, want.retention);
        for l in 0..3 {
            assert!((got_cka[l] - want_cka[l]).abs() < 1e-5, "layer {l} CKA {} vs {}", got_cka[l], want_cka[l]);
        }
        assert!(want.r2 > 0.0, "{}", want.r2);
        ft_monitor_free(mon);

        // A prediction on cuda:0 of an encoder fitted with area resampling in common units.
        let mut fo = std::mem::zeroed::<ft_fit_options>();
        ft_fit_options_default(&mut fo);
        fo.d = 8;
        fo.grid = 2;
        fo.max_epochs = 2;
        fo.batch_size = 16;
        fo.reg_steps = 10;
        fo.val_fraction = 0.2;
        let area = CString::new("area,common").unwrap();
        let mut fit = null_mut();
        let st = ft_fit_new_resampled(host, brain, &fo, cuda.as_ptr(), area.as_ptr(), &mut fit);
        assert_eq!(st, ft_status::FT_OK, "{}", last_error());
        let n = n_images * n_voxels;
        let (mut from_device, mut from_host) = (vec![0f32; n], vec![0f32; n]);
        assert_eq!(ft_fit_predict(fit, host, brain, cuda.as_ptr(), from_host.as_mut_ptr(), n), ft_status::FT_OK, "{}", last_error());
        let before = emulator_stats();
        assert_eq!(ft_fit_predict(fit, on_device, brain, cuda.as_ptr(), from_device.as_mut_ptr(), n), ft_status::FT_OK, "{}", last_error());
        if let Some(back) = copied_back(before, emulator_stats()) {
            // The predictions come back, and nothing else of any size.
            assert!(back <= (n * 4) as u64 + 4096, "a prediction on CUDA layers copied {back} bytes to the host");
        }
        let scale = from_host.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
        let err = from_device.iter().zip(&from_host).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        assert!(err < 1e-5, "predictions from CUDA layers differ from the host layers' by {err:.3e}");

        // A fit on cuda:0 from the CUDA layers, in common units: prepared, put in units and
        // trained on the device. Without the layer margins it copies to the host what the same
        // fit from host layers copies (losses, validation predictions, parameters) and none of
        // the features; the margins read their sample of images' prepared values, no more.
        let set = |st: ft_status| assert_eq!(st, ft_status::FT_OK, "{}", last_error());
        let mut cfg = null_mut();
        set(ft_fit_config_new(null(), n_images, &mut cfg));
        set(ft_fit_config_set_d(cfg, 8));
        set(ft_fit_config_set_grid(cfg, 2));
        set(ft_fit_config_set_max_epochs(cfg, 4));
        set(ft_fit_config_set_batch_size(cfg, 16));
        set(ft_fit_config_set_reg_steps(cfg, 10));
        set(ft_fit_config_set_val_fraction(cfg, 0.2));
        set(ft_fit_config_set_resample(cfg, c"area".as_ptr()));
        set(ft_fit_config_set_layer_units(cfg, c"common".as_ptr()));
        set(ft_fit_config_set_device(cfg, cuda.as_ptr()));
        let fit_from = |f: *mut ft_features| {
            let mut fit = null_mut();
            let before = emulator_stats();
            assert_eq!(ft_fit_with(cfg, f, brain, &mut fit), ft_status::FT_OK, "{}", last_error());
            let back = copied_back(before, emulator_stats());
            let mut sum = std::mem::zeroed::<ft_fit_summary>();
            assert_eq!(ft_fit_report_summary(fit, &mut sum), ft_status::FT_OK);
            let mut pred = vec![0f32; n];
            assert_eq!(ft_fit_predict(fit, host, brain, cuda.as_ptr(), pred.as_mut_ptr(), n), ft_status::FT_OK, "{}", last_error());
            ft_fit_free(fit);
            (sum, pred, back)
        };
        // The prepared values of every image: 3 layers of 8 channels on a 2×2 grid, plus tokens.
        let prepared_bytes = (n_images * 3 * 8 * (4 + 1) * 4) as u64;
        for margins in [false, true] {
            set(ft_fit_config_set_bootstrap(cfg, if margins { 50 } else { 0 }));
            let (want, want_pred, host_back) = fit_from(host);
            let (got, got_pred, device_back) = fit_from(on_device);
            if let (Some(h), Some(d)) = (host_back, device_back) {
                // The layer units' channel sums (2·C f64 per layer part) are all a fit adds; the
                // margins' sample here is every image.
                let allowed = h + 4096 + if margins { prepared_bytes } else { 0 };
                assert!(d <= allowed, "a fit on CUDA layers (margins: {margins}) copied {d} bytes to the host, the same fit on host layers {h}");
            }
            assert!((got.r2_mean - want.r2_mean).abs() < 1e-4, "held-out R² {} (CUDA layers) vs {} (host layers)", got.r2_mean, want.r2_mean);
            let scale = want_pred.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
            let err = got_pred.iter().zip(&want_pred).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
            assert!(err < 1e-4, "a fit from CUDA layers predicts {err:.3e} away from the same fit from host layers");
        }
        // A saved encoder scored on cuda:0 from the CUDA layers: the held-out images and the
        // margins' sample are prepared on the device, and the margins read only that sample.
        let mut trained = null_mut();
        assert_eq!(ft_fit_with(cfg, host, brain, &mut trained), ft_status::FT_OK, "{}", last_error());
        let saved = path("encoder.safetensors");
        assert_eq!(ft_fit_save_encoder(trained, saved.as_ptr()), ft_status::FT_OK, "{}", last_error());
        ft_fit_free(trained);
        let mut score_cfg = null_mut();
        set(ft_fit_config_new(null(), 0, &mut score_cfg));
        set(ft_fit_config_set_device(score_cfg, cuda.as_ptr()));
        set(ft_fit_config_set_bootstrap(score_cfg, 50));
        let score_from = |f: *mut ft_features| {
            let mut scored = null_mut();
            let before = emulator_stats();
            let st = ft_fit_load_with(score_cfg, saved.as_ptr(), f, brain, &mut scored);
            assert_eq!(st, ft_status::FT_OK, "{}", last_error());
            let back = copied_back(before, emulator_stats());
            let mut sum = std::mem::zeroed::<ft_fit_summary>();
            assert_eq!(ft_fit_report_summary(scored, &mut sum), ft_status::FT_OK);
            ft_fit_free(scored);
            (sum, back)
        };
        let (want, host_back) = score_from(host);
        let (got, device_back) = score_from(on_device);
        if let (Some(h), Some(d)) = (host_back, device_back) {
            assert!(d <= h + prepared_bytes + 4096, "scoring CUDA layers copied {d} bytes to the host, host layers {h}");
        }
        assert!((got.r2_mean - want.r2_mean).abs() < 1e-5, "scored R² {} (CUDA layers) vs {} (host layers)", got.r2_mean, want.r2_mean);
        assert!((got.slope - want.slope).abs() < 1e-4 || (got.slope.is_nan() && want.slope.is_nan()), "slope {} vs {}", got.slope, want.slope);
        ft_fit_config_free(score_cfg);
        ft_fit_config_free(cfg);

        // A monitor whose reference fit and refit read the CUDA layers on cuda:0.
        mo.refit_every = 1;
        mo.refit_max_steps = 5;
        let monitor_on = |f: *mut ft_features| {
            let before = emulator_stats();
            let mut mon = null_mut();
            let st = ft_monitor_new_resampled(brain, f, &mo, cuda.as_ptr(), method.as_ptr(), &mut mon);
            assert_eq!(st, ft_status::FT_OK, "{}", last_error());
            let mut rep = null_mut();
            assert_eq!(ft_monitor_observe(mon, 1, f, &mut rep), ft_status::FT_OK, "{}", last_error());
            let back = copied_back(before, emulator_stats());
            let mut s = std::mem::zeroed::<ft_step_summary>();
            assert_eq!(ft_step_report_summary(rep, &mut s), ft_status::FT_OK);
            ft_step_report_free(rep);
            ft_monitor_free(mon);
            (s, back)
        };
        let (want, host_back) = monitor_on(host);
        let (got, device_back) = monitor_on(on_device);
        assert!(want.refitted && got.refitted);
        if let (Some(h), Some(d)) = (host_back, device_back) {
            // The CKA reads the global tokens [N, C] of the reference and of the observed
            // features on the host; the layer units' sums add 2·C f64 per layer part.
            let tokens = (n_images * 3 * 8 * 4) as u64;
            assert!(d <= h + 2 * tokens + 4096, "a monitor with a refit on CUDA layers copied {d} bytes to the host, on host layers {h}");
        }
        assert!((got.reference_r2 - want.reference_r2).abs() < 1e-4, "reference R² {} vs {}", got.reference_r2, want.reference_r2);
        assert!((got.refit_r2 - want.refit_r2).abs() < 1e-4, "refit R² {} vs {}", got.refit_r2, want.refit_r2);

        // Host work on the CUDA layers copies each to the host once, and sees the same values.
        for l in 0..3 {
            assert_eq!(layer_values(on_device, l), layer_values(host, l), "layer {l}");
        }
        ft_fit_free(fit);
        ft_features_free(on_device);
        ft_features_free(host);
        ft_features_free(file);
        ft_brain_free(brain);
    }
}

/// A device copy is checked against the device's free memory before anything is allocated: a
/// subject-scale layer that does not fit is one line naming the tensor and the bytes.
#[test]
fn device_copies_are_checked_against_free_memory() {
    let g = gpu_or_return!("device_copies_are_checked_against_free_memory");
    // More than the whole device: it cannot fit whatever the other tests hold.
    let (_free, total) = g.mem_info().unwrap();
    let need = total as u128 + 1;
    let what = "the library's f32 copy of the CUDA tensor local [10000, 768, 14, 14]";
    factortopy::cuda::resident::check_room(&g, 1024, what).unwrap();
    let e = factortopy::cuda::resident::check_room(&g, need, what).unwrap_err().to_string();
    assert!(e.contains(what) && e.contains(&format!("needs {need} bytes")) && e.contains("free"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}
