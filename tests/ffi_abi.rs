//! The C ABI called from Rust: tensor conversion (dtypes, strides, byte offsets, devices),
//! DLPack ownership, error statuses that leave outputs untouched, and a small fit → score →
//! monitor round trip through the handles.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};

use factortopy::ffi::*;

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

/// Layer `l`'s values as f32 copies (whatever precision the set keeps them in), its shape and
/// its global token.
fn layer(f: *const ft_features, l: usize) -> (Vec<f32>, Vec<i64>, Option<Vec<f32>>) {
    let mut v = ft_layer_view { local: null(), local_shape: [0; 4], global: null(), global_shape: [0; 2] };
    // SAFETY: live handle, valid out-pointer; NULL buffers ask for the shapes.
    let st = unsafe { ft_features_layer_copy(f, l, &mut v, null_mut(), 0, null_mut(), 0) };
    assert_eq!(st, ft_status::FT_OK, "{}", last_error());
    let mut local = vec![0f32; v.local_shape.iter().product::<i64>() as usize];
    let mut global = vec![0f32; (v.global_shape[0] * v.global_shape[1]) as usize];
    // SAFETY: the buffers hold the capacities passed.
    let st = unsafe {
        ft_features_layer_copy(f, l, &mut v, local.as_mut_ptr(), local.len(), global.as_mut_ptr(), global.len())
    };
    assert_eq!(st, ft_status::FT_OK, "{}", last_error());
    (local, v.local_shape.to_vec(), (v.global_shape[0] > 0).then_some(global))
}

/// Layer `l` through the borrowed f32 view (layers given as f32 only).
fn layer_view(f: *const ft_features, l: usize) -> ft_status {
    let mut v = ft_layer_view { local: null(), local_shape: [0; 4], global: null(), global_shape: [0; 2] };
    // SAFETY: live handle, valid out-pointer.
    unsafe { ft_features_layer(f, l, &mut v) }
}

fn view(data: *const c_void, dtype: ft_dtype, shape: &[i64], strides: Option<&[i64]>) -> ft_tensor {
    ft_tensor {
        data,
        dtype: dtype as i32,
        ndim: shape.len(),
        shape: shape.as_ptr(),
        strides: strides.map_or(null(), |s| s.as_ptr()),
    }
}

fn dl(data: *mut c_void, code: u8, bits: u8, shape: &mut [i64], strides: Option<&mut [i64]>, offset: u64) -> DLTensor {
    DLTensor {
        data,
        device: DLDevice { device_type: 1, device_id: 0 },
        ndim: shape.len() as i32,
        dtype: DLDataType { code, bits, lanes: 1 },
        shape: shape.as_mut_ptr(),
        strides: strides.map_or(null_mut(), |s| s.as_mut_ptr()),
        byte_offset: offset,
    }
}

#[test]
fn dtypes_convert_exactly_where_representable() {
    let vals: Vec<f32> = (0..2 * 3 * 2 * 2).map(|i| (i as f32 - 10.0) * 0.25).collect();
    let shape = [2i64, 3, 2, 2];
    let f16: Vec<u16> = vals.iter().map(|&x| half::f16::from_f32(x).to_bits()).collect();
    let bf16: Vec<u16> = vals.iter().map(|&x| half::bf16::from_f32(x).to_bits()).collect();
    let f = new_features();
    for (data, dt) in [
        (vals.as_ptr() as *const c_void, ft_dtype::FT_F32),
        (f16.as_ptr() as *const c_void, ft_dtype::FT_F16),
        (bf16.as_ptr() as *const c_void, ft_dtype::FT_BF16),
    ] {
        let t = view(data, dt, &shape, None);
        // SAFETY: the view describes live memory.
        assert_eq!(unsafe { ft_features_add_layer(f, &t, null()) }, ft_status::FT_OK, "{}", last_error());
    }
    for l in 0..3 {
        let (local, s, global) = layer(f, l);
        assert_eq!(local, vals, "layer {l}");
        assert_eq!(s, shape);
        assert!(global.is_none());
    }
    // 16-bit layers stay 16-bit in the set: the borrowed f32 view is for f32 layers only.
    assert_eq!(layer_view(f, 0), ft_status::FT_OK);
    assert_eq!(layer_view(f, 1), ft_status::FT_ERR_DTYPE);
    assert!(last_error().contains("f16"), "{}", last_error());
    assert_eq!(layer_view(f, 2), ft_status::FT_ERR_DTYPE);
    // SAFETY: live handle, freed once.
    unsafe { ft_features_free(f) };
}

#[test]
fn strides_and_byte_offsets_are_honoured() {
    // Logical [N=2, C=3, H=2, W=2] stored channels-last [N, H, W, C].
    let (n, c, h, w) = (2usize, 3usize, 2usize, 2usize);
    let logical: Vec<f32> = (0..n * c * h * w).map(|i| i as f32).collect();
    let mut nhwc = vec![0f32; logical.len()];
    for i in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    nhwc[((i * h + y) * w + x) * c + ch] = logical[((i * c + ch) * h + y) * w + x];
                }
            }
        }
    }
    let shape = [2i64, 3, 2, 2];
    let strides = [(h * w * c) as i64, 1, (w * c) as i64, c as i64];
    let f = new_features();
    let t = view(nhwc.as_ptr().cast(), ft_dtype::FT_F32, &shape, Some(&strides));
    // A global token read backwards along channels (negative stride) from its last element.
    let g_rev: Vec<f32> = vec![2.0, 1.0, 0.0, 5.0, 4.0, 3.0];
    let gshape = [2i64, 3];
    let gstrides = [3i64, -1];
    let g = view(g_rev[2..].as_ptr().cast(), ft_dtype::FT_F32, &gshape, Some(&gstrides));
    // SAFETY: views describe live memory.
    assert_eq!(unsafe { ft_features_add_layer(f, &t, &g) }, ft_status::FT_OK, "{}", last_error());
    let (local, _, global) = layer(f, 0);
    assert_eq!(local, logical);
    assert_eq!(global.unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);

    // DLPack: bf16 data 6 bytes into a buffer, strides given equal to row-major.
    let mut buf = vec![0u8; 6];
    for x in &logical {
        buf.extend_from_slice(&half::bf16::from_f32(*x).to_bits().to_le_bytes());
    }
    let mut s = shape;
    let mut st = [12i64, 4, 2, 1];
    let d = dl(buf.as_mut_ptr().cast(), 4, 16, &mut s, Some(&mut st), 6);
    // SAFETY: the tensor describes live memory.
    assert_eq!(unsafe { ft_features_add_layer_dlpack(f, &d, null()) }, ft_status::FT_OK, "{}", last_error());
    assert_eq!(layer(f, 1).0, logical);
    // SAFETY: live handle.
    unsafe { ft_features_free(f) };
}

#[test]
fn devices_and_dtypes_are_clear_errors_and_change_nothing() {
    let mut data = vec![1f32; 24];
    let f = new_features();
    let mut shape = [2i64, 3, 2, 2];
    let mut d = dl(data.as_mut_ptr().cast(), 2, 32, &mut shape, None, 0);
    for (dev, want) in [(2, "CUDA device"), (13, "CUDA managed"), (10, "ROCm"), (8, "Metal")] {
        d.device.device_type = dev;
        // SAFETY: valid tensor description (never read: wrong device).
        assert_eq!(unsafe { ft_features_add_layer_dlpack(f, &d, null()) }, ft_status::FT_ERR_DEVICE);
        let e = last_error();
        assert!(e.contains(want) && e.contains("cpu()"), "{e}");
    }
    d.device.device_type = 3; // pinned host memory is readable
    d.dtype = DLDataType { code: 0, bits: 64, lanes: 1 };
    // SAFETY: as above.
    assert_eq!(unsafe { ft_features_add_layer_dlpack(f, &d, null()) }, ft_status::FT_ERR_DTYPE);
    assert!(last_error().contains("int64"), "{}", last_error());
    d.dtype = DLDataType { code: 2, bits: 64, lanes: 1 };
    // SAFETY: as above.
    assert_eq!(unsafe { ft_features_add_layer_dlpack(f, &d, null()) }, ft_status::FT_ERR_DTYPE);
    assert!(last_error().contains("float64"), "{}", last_error());
    d.dtype = DLDataType { code: 2, bits: 32, lanes: 1 };
    let mut huge = [i64::MAX, 2, 2, 2];
    d.shape = huge.as_mut_ptr();
    // SAFETY: as above (rejected before any read).
    assert_eq!(unsafe { ft_features_add_layer_dlpack(f, &d, null()) }, ft_status::FT_ERR_SHAPE);
    d.shape = shape.as_mut_ptr();
    d.shape = null_mut();
    // SAFETY: as above.
    assert_eq!(unsafe { ft_features_add_layer_dlpack(f, &d, null()) }, ft_status::FT_ERR_NULL);
    d.shape = shape.as_mut_ptr();
    // SAFETY: valid, CPU-readable.
    assert_eq!(unsafe { ft_features_add_layer_dlpack(f, &d, null()) }, ft_status::FT_OK);
    assert_eq!(last_error(), "");
    let (mut n, mut l) = (0, 0);
    // SAFETY: live handle, valid out-pointers.
    assert_eq!(unsafe { ft_features_shape(f, &mut n, &mut l) }, ft_status::FT_OK);
    assert_eq!((n, l), (2, 1));
    // SAFETY: live handle.
    unsafe { ft_features_free(f) };
}

static DELETED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count_delete(t: *mut DLManagedTensor) {
    DELETED.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `t` came from Box::into_raw in `managed`, along with its shape and data.
    unsafe {
        let b = Box::from_raw(t);
        drop(Box::from_raw(b.manager_ctx as *mut (Vec<i64>, Vec<f32>)));
    }
}

fn managed(shape: Vec<i64>, fill: f32) -> *mut DLManagedTensor {
    let n: i64 = shape.iter().product();
    let mut owned = Box::new((shape, vec![fill; n.max(0) as usize]));
    let t = dl(owned.1.as_mut_ptr().cast(), 2, 32, &mut owned.0, None, 0);
    Box::into_raw(Box::new(DLManagedTensor {
        dl_tensor: t,
        manager_ctx: Box::into_raw(owned).cast(),
        deleter: Some(count_delete),
    }))
}

#[test]
fn managed_tensors_are_deleted_exactly_once_whatever_happens() {
    let f = new_features();
    let before = DELETED.load(Ordering::SeqCst);
    // SAFETY: fresh managed tensors whose ownership passes to the call.
    unsafe {
        assert_eq!(ft_features_add_layer_dlpack_managed(f, managed(vec![2, 3, 2, 2], 1.0), managed(vec![2, 3], 2.0)), ft_status::FT_OK);
        assert_eq!(ft_features_add_layer_dlpack_managed(f, managed(vec![2, 3, 2], 1.0), null_mut()), ft_status::FT_ERR_SHAPE);
        assert_eq!(ft_features_add_layer_dlpack_managed(f, managed(vec![2, 3, 2, 2], f32::NAN), null_mut()), ft_status::FT_ERR_DATA);
        assert_eq!(ft_features_add_layer_dlpack_managed(null_mut(), managed(vec![2, 3, 2, 2], 1.0), null_mut()), ft_status::FT_ERR_NULL);
        assert_eq!(ft_features_add_layer_dlpack_managed(f, null_mut(), managed(vec![2, 3], 1.0)), ft_status::FT_ERR_NULL);
        let same = managed(vec![2, 3, 2, 2], 1.0);
        assert_eq!(ft_features_add_layer_dlpack_managed(f, same, same), ft_status::FT_ERR_SHAPE);
    }
    assert_eq!(DELETED.load(Ordering::SeqCst) - before, 2 + 1 + 1 + 1 + 1 + 1);
    let (_, _, g) = layer(f, 0);
    assert_eq!(g.unwrap(), vec![2.0; 6]);
    // SAFETY: live handle.
    unsafe { ft_features_free(f) };
}

#[test]
fn null_arguments_are_errors_and_outputs_stay_untouched() {
    let sentinel = 0x10 as *mut ft_brain;
    let mut b = sentinel;
    // SAFETY: every pointer is NULL, valid or never dereferenced on the error path.
    unsafe {
        assert_eq!(ft_brain_load(null(), &mut b), ft_status::FT_ERR_NULL);
        assert!(last_error().contains("`path`"));
        let missing = CString::new("/nonexistent/brain.safetensors").unwrap();
        assert_eq!(ft_brain_load(missing.as_ptr(), &mut b), ft_status::FT_ERR_IO);
        assert!(last_error().contains("/nonexistent/brain.safetensors"));
        assert_eq!(b, sentinel);
        assert_eq!(ft_brain_load(missing.as_ptr(), null_mut()), ft_status::FT_ERR_NULL);
        let mut fo = std::mem::zeroed::<ft_fit_options>();
        assert_eq!(ft_fit_options_default(null_mut()), ft_status::FT_ERR_NULL);
        assert_eq!(ft_fit_options_default(&mut fo), ft_status::FT_OK);
        assert_eq!(fo.d, 128);
        // The default stays DESIGN §3.5 (frozen); the schedule for N images is its own call.
        assert_eq!((fo.lr, fo.batch_size, fo.reg_steps, fo.patience, fo.max_epochs), (1e-3, 8, 2000, 5, 40));
        assert_eq!(ft_fit_options_for_images(800, null_mut()), ft_status::FT_ERR_NULL);
        assert_eq!(ft_fit_options_for_images(800, &mut fo), ft_status::FT_OK);
        assert_eq!((fo.lr, fo.batch_size, fo.reg_steps, fo.patience, fo.max_epochs), (1e-2, 32, 150, 3, 40));
        let mut mo = std::mem::zeroed::<ft_monitor_options>();
        assert_eq!(ft_monitor_options_for_images(800, &mut mo), ft_status::FT_OK);
        assert_eq!((mo.fit.patience, mo.fit.max_epochs), (3, 40));
        let auto = CString::new("auto").unwrap();
        assert_eq!(ft_fit_options_preset(auto.as_ptr(), &mut fo), ft_status::FT_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("ft_fit_options_for_images"));
        let mut r = 0x10 as *mut ft_step_report;
        assert_eq!(ft_monitor_observe(null_mut(), 0, null(), &mut r), ft_status::FT_ERR_NULL);
        assert_eq!(r, 0x10 as *mut ft_step_report);
        let mut s: *mut c_char = null_mut();
        assert_eq!(ft_step_report_json(null(), &mut s), ft_status::FT_ERR_NULL);
        assert!(s.is_null());
        ft_brain_free(null_mut());
        ft_features_free(null_mut());
        ft_fit_free(null_mut());
        ft_monitor_free(null_mut());
        ft_step_report_free(null_mut());
        ft_string_free(null_mut());
    }
}

#[test]
fn fit_score_and_monitor_through_handles() {
    let dir = tempfile::tempdir().unwrap();
    let d = CString::new(dir.path().to_str().unwrap()).unwrap();
    let path = |name: &str| CString::new(dir.path().join(name).to_str().unwrap()).unwrap();
    // SAFETY: all handles below are created by the library and freed once at the end.
    unsafe {
        let mut so = std::mem::zeroed::<ft_synth_options>();
        assert_eq!(ft_synth_options_default(&mut so), ft_status::FT_OK);
        so.n_images = 200;
        so.n_voxels = 150;
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
        fo.reg_steps = 50;
        fo.val_fraction = 0.2;
        let mut fit = null_mut();
        assert_eq!(ft_fit_new(feats, brain, &fo, &mut fit), ft_status::FT_OK, "{}", last_error());
        let mut sum = std::mem::zeroed::<ft_fit_summary>();
        assert_eq!(ft_fit_report_summary(fit, &mut sum), ft_status::FT_OK);
        assert_eq!((sum.n_images, sum.n_voxels, sum.n_layers), (200, 150, 3));
        assert!(sum.r2_mean > 0.0, "{}", sum.r2_mean);
        let mut json = null_mut();
        assert_eq!(ft_fit_report_json(fit, &mut json), ft_status::FT_OK);
        let report = CStr::from_ptr(json).to_str().unwrap().to_string();
        ft_string_free(json);
        assert!(report.contains("\"hierarchy\"") && report.contains("\"rois\""));
        let enc = path("encoder.safetensors");
        assert_eq!(ft_fit_save_encoder(fit, enc.as_ptr()), ft_status::FT_OK);

        // Scoring the saved encoder reproduces the fit's held-out R².
        let mut scored = null_mut();
        assert_eq!(ft_fit_load(enc.as_ptr(), feats, brain, 0, &mut scored), ft_status::FT_OK, "{}", last_error());
        let mut s2 = std::mem::zeroed::<ft_fit_summary>();
        ft_fit_report_summary(scored, &mut s2);
        assert!((s2.r2_mean - sum.r2_mean).abs() < 1e-9, "{} vs {}", s2.r2_mean, sum.r2_mean);

        // A monitor around the saved encoder: retention 1 at step 0.
        let mut mo = std::mem::zeroed::<ft_monitor_options>();
        ft_monitor_options_default(&mut mo);
        mo.fit = fo;
        let mut mon = null_mut();
        assert_eq!(ft_monitor_new_from_encoder(brain, feats, enc.as_ptr(), &mo, &mut mon), ft_status::FT_OK, "{}", last_error());
        let mut rep = null_mut();
        assert_eq!(ft_monitor_observe(mon, 0, feats, &mut rep), ft_status::FT_OK);
        let mut ss = std::mem::zeroed::<ft_step_summary>();
        assert_eq!(ft_step_report_summary(rep, &mut ss), ft_status::FT_OK);
        assert_eq!(ss.retention, 1.0);
        assert_eq!(ss.n_layers, 3);
        assert!(!ss.refitted && ss.slope.is_nan());
        let mut cka = [0f64; 3];
        assert_eq!(ft_step_report_cka(rep, cka.as_mut_ptr(), 3), ft_status::FT_OK);
        assert!(cka.iter().all(|c| (c - 1.0).abs() < 1e-9));
        assert_eq!(ft_step_report_cka(rep, null_mut(), 3), ft_status::FT_ERR_NULL);

        // A monitor state cannot be loaded for a different brain.
        let state = path("monitor.safetensors");
        assert_eq!(ft_monitor_save(mon, state.as_ptr()), ft_status::FT_OK);
        so.seed = 5;
        let d2 = tempfile::tempdir().unwrap();
        let d2c = CString::new(d2.path().to_str().unwrap()).unwrap();
        assert_eq!(ft_synth_write(d2c.as_ptr(), &so), ft_status::FT_OK);
        let mut other = null_mut();
        let ob = CString::new(d2.path().join("brain.safetensors").to_str().unwrap()).unwrap();
        assert_eq!(ft_brain_load(ob.as_ptr(), &mut other), ft_status::FT_OK);
        let mut m2 = 0x10 as *mut ft_monitor;
        assert_eq!(ft_monitor_load(state.as_ptr(), other, &mut m2), ft_status::FT_ERR_MISMATCH);
        assert!(last_error().contains("different brain"), "{}", last_error());
        assert_eq!(m2, 0x10 as *mut ft_monitor);

        ft_brain_free(other);
        ft_step_report_free(rep);
        ft_monitor_free(mon);
        ft_fit_free(scored);
        ft_fit_free(fit);
        ft_features_free(feats);
        ft_brain_free(brain);
    }
}

#[test]
fn grid_resampling_is_chosen_saved_and_reused_through_the_c_abi() {
    use factortopy::model::encoder_file::load_encoder;
    use factortopy::model::Resample;
    let dir = tempfile::tempdir().unwrap();
    let d = CString::new(dir.path().to_str().unwrap()).unwrap();
    let path = |name: &str| CString::new(dir.path().join(name).to_str().unwrap()).unwrap();
    let resampled = |r: &str| -> Option<String> {
        let name = CString::new(r).unwrap();
        let mut out: *const c_char = null();
        // SAFETY: valid arguments; the string written is static.
        let st = unsafe { ft_fit_options_preset_resample(name.as_ptr(), &mut out) };
        // SAFETY: on success `out` points to a static NUL-terminated string.
        (st == ft_status::FT_OK).then(|| unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_string())
    };
    assert_eq!(resampled("design").as_deref(), Some("bilinear"));
    assert_eq!(resampled("fast").as_deref(), Some("auto"));
    assert_eq!(resampled("paper"), None);
    // SAFETY: all handles below are created by the library and freed once at the end.
    unsafe {
        let mut so = std::mem::zeroed::<ft_synth_options>();
        assert_eq!(ft_synth_options_default(&mut so), ft_status::FT_OK);
        (so.n_images, so.n_voxels, so.n_layers, so.width, so.grid, so.seed) = (80, 60, 2, 4, 3, 2);
        assert_eq!(ft_synth_write(d.as_ptr(), &so), ft_status::FT_OK, "{}", last_error());
        let (mut brain, mut feats) = (null_mut(), null_mut());
        assert_eq!(ft_brain_load(path("brain.safetensors").as_ptr(), &mut brain), ft_status::FT_OK);
        assert_eq!(ft_features_load(path("features.safetensors").as_ptr(), &mut feats), ft_status::FT_OK);
        let mut fo = std::mem::zeroed::<ft_fit_options>();
        assert_eq!(ft_fit_options_preset(c"fast".as_ptr(), &mut fo), ft_status::FT_OK);
        // Grid 4: the 6×6 early map shrinks by a non-integer ratio, the 3×3 one grows.
        (fo.d, fo.grid, fo.max_epochs, fo.val_fraction) = (8, 4, 1, 0.25);

        let cases: [(Option<&CStr>, Resample); 4] = [
            (Some(c"area"), Resample::Area),
            (Some(c"bilinear"), Resample::Bilinear),
            (None, Resample::Auto),
            (Some(c"auto"), Resample::Auto),
        ];
        let mut r2 = Vec::new();
        for (i, (name, want)) in cases.iter().enumerate() {
            let mut fit = null_mut();
            let name_ptr = name.map_or(null(), |n| n.as_ptr());
            let st = ft_fit_new_resampled(feats, brain, &fo, null(), name_ptr, &mut fit);
            assert_eq!(st, ft_status::FT_OK, "{}", last_error());
            let enc = path(&format!("encoder{i}.safetensors"));
            assert_eq!(ft_fit_save_encoder(fit, enc.as_ptr()), ft_status::FT_OK);
            let (loaded, _) = load_encoder(std::path::Path::new(enc.to_str().unwrap())).unwrap();
            assert_eq!(loaded.spec.resample, *want);
            // Scoring the saved encoder prepares the features as the fit did: same R².
            let mut scored = null_mut();
            assert_eq!(ft_fit_load(enc.as_ptr(), feats, brain, 0, &mut scored), ft_status::FT_OK, "{}", last_error());
            let (mut a, mut b) = (std::mem::zeroed::<ft_fit_summary>(), std::mem::zeroed::<ft_fit_summary>());
            ft_fit_report_summary(fit, &mut a);
            ft_fit_report_summary(scored, &mut b);
            assert_eq!(a.r2_mean.to_bits(), b.r2_mean.to_bits(), "{want:?}");
            r2.push(a.r2_mean);
            ft_fit_free(scored);
            ft_fit_free(fit);
        }
        // The method changes the fit (area vs bilinear), and NULL is auto.
        assert_ne!(r2[0], r2[1]);
        assert_eq!(r2[2].to_bits(), r2[3].to_bits());
        // The older entry point prepares features as it always did (DESIGN §3: bilinear, raw
        // units), which the resampled one names "bilinear,raw"; a method alone is in common units.
        let summary = |fit: *mut ft_fit| {
            let mut s = std::mem::zeroed::<ft_fit_summary>();
            ft_fit_report_summary(fit, &mut s);
            ft_fit_free(fit);
            s.r2_mean
        };
        let mut fit = null_mut();
        assert_eq!(ft_fit_new_on(feats, brain, &fo, null(), &mut fit), ft_status::FT_OK, "{}", last_error());
        let old = summary(fit);
        let mut fit = null_mut();
        let st = ft_fit_new_resampled(feats, brain, &fo, null(), c"bilinear,raw".as_ptr(), &mut fit);
        assert_eq!(st, ft_status::FT_OK, "{}", last_error());
        assert_eq!(summary(fit).to_bits(), old.to_bits());
        assert_ne!(old.to_bits(), r2[1].to_bits());
        // An unknown method is refused before any work, leaving `out` untouched.
        let mut untouched = 0x10 as *mut ft_fit;
        let st = ft_fit_new_resampled(feats, brain, &fo, null(), c"nearest".as_ptr(), &mut untouched);
        assert_eq!(st, ft_status::FT_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("nearest"), "{}", last_error());
        assert_eq!(untouched, 0x10 as *mut ft_fit);
        ft_features_free(feats);
        ft_brain_free(brain);
    }
}

/// `ft_resample` with every size argument; `out` of `capacity` floats pre-filled with a
/// sentinel so that an error can be seen to write nothing.
#[allow(clippy::too_many_arguments)]
fn resample_c(
    input: &[f32],
    input_len: usize,
    nchw: [usize; 4],
    out_hw: (usize, usize),
    rule: Option<&CStr>,
    capacity: usize,
) -> (ft_status, Vec<f32>) {
    let mut out = vec![-7.0f32; capacity.max(1)];
    let [n, c, h, w] = nchw;
    // SAFETY: `input` is valid for `input_len` reads whenever the call may read it (the error
    // cases below pass lengths the library refuses before reading); `out` holds `capacity`.
    let st = unsafe {
        ft_resample(
            input.as_ptr(),
            input_len,
            n,
            c,
            h,
            w,
            out_hw.0,
            out_hw.1,
            rule.map_or(null(), |r| r.as_ptr()),
            out.as_mut_ptr(),
            capacity,
        )
    };
    out.truncate(capacity);
    (st, out)
}

#[test]
fn resampling_through_the_c_abi_is_the_encoders() {
    use factortopy::data::Array;
    use factortopy::model::resample::{resample, resample_to};
    use factortopy::model::Resample;
    // Hand-worked: a 4×4 map to 2×2 by area is the mean of each 2×2 block; to 1×3 by area the
    // rows are averaged (the map's column means, 4 → 3 split at thirds).
    let x: Vec<f32> = (0..16).map(|i| i as f32).collect();
    let (st, out) = resample_c(&x, 16, [1, 1, 4, 4], (2, 2), Some(c"area"), 4);
    assert_eq!(st, ft_status::FT_OK, "{}", last_error());
    assert_eq!(out, vec![2.5, 4.5, 10.5, 12.5]);
    let (st, out) = resample_c(&x, 16, [1, 1, 4, 4], (1, 3), Some(c"area"), 3);
    assert_eq!(st, ft_status::FT_OK, "{}", last_error());
    // Column means 6, 7, 8, 9; cells cover [0, 4/3), [4/3, 8/3), [8/3, 4).
    let want = [(6.0 + 7.0 / 3.0) * 0.75, (2.0 / 3.0 * 7.0 + 2.0 / 3.0 * 8.0) * 0.75, (8.0 / 3.0 + 9.0) * 0.75];
    for (g, w) in out.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{out:?} vs {want:?}");
    }

    // Bit for bit what the encoder computes from the same maps, for every rule, at the fit's
    // square grid and at rectangular sizes; NULL is auto.
    let (n, c, h, w) = (3, 2, 13, 9);
    let data: Vec<f32> = (0..n * c * h * w).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
    let arr = Array::new(vec![n, c, h, w], data.clone()).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (name, rule) in [(Some(c"bilinear"), Resample::Bilinear), (Some(c"area"), Resample::Area), (Some(c"auto"), Resample::Auto), (None, Resample::Auto)] {
        let (st, out) = resample_c(&data, data.len(), [n, c, h, w], (8, 8), name, n * c * 64);
        assert_eq!(st, ft_status::FT_OK, "{}", last_error());
        assert_eq!(bits(&out), bits(&resample(&arr, 8, rule).unwrap().data), "{rule}");
        let (st, out) = resample_c(&data, data.len(), [n, c, h, w], (5, 11), name, n * c * 55 + 3);
        assert_eq!(st, ft_status::FT_OK, "{}", last_error());
        assert_eq!(bits(&out[..n * c * 55]), bits(&resample_to(&arr, (5, 11), rule).unwrap().data), "{rule}");
        assert!(out[n * c * 55..].iter().all(|&v| v == -7.0), "wrote past the output");
    }

    // Errors: a status, a message, nothing written.
    let fails = |(st, out): (ft_status, Vec<f32>), want: ft_status, needle: &str| {
        assert_eq!(st, want, "{}", last_error());
        assert!(last_error().contains(needle), "`{needle}` not in: {}", last_error());
        assert!(out.iter().all(|&v| v == -7.0), "an error wrote into out");
    };
    let ok = [n, c, h, w];
    let len = data.len();
    let mut out = [0.0f32; 4];
    // SAFETY: NULL pointers are refused before anything is read or written.
    let st = unsafe { ft_resample(null(), 16, 1, 1, 4, 4, 2, 2, null(), out.as_mut_ptr(), 4) };
    assert_eq!(st, ft_status::FT_ERR_NULL);
    assert!(last_error().contains("input"), "{}", last_error());
    // SAFETY: as above.
    let st = unsafe { ft_resample(x.as_ptr(), 16, 1, 1, 4, 4, 2, 2, null(), null_mut(), 4) };
    assert_eq!(st, ft_status::FT_ERR_NULL);
    assert!(last_error().contains("out"), "{}", last_error());
    fails(resample_c(&data, len - 1, ok, (8, 8), None, n * c * 64), ft_status::FT_ERR_SHAPE, "input holds");
    fails(resample_c(&data, len, ok, (8, 8), None, n * c * 64 - 1), ft_status::FT_ERR_SHAPE, "out holds");
    fails(resample_c(&data, len, [n, c, 0, w], (8, 8), None, n * c * 64), ft_status::FT_ERR_SHAPE, "positive");
    fails(resample_c(&data, len, ok, (0, 8), None, n * c * 64), ft_status::FT_ERR_SHAPE, "positive");
    fails(resample_c(&data, len, ok, (8, 0), None, n * c * 64), ft_status::FT_ERR_SHAPE, "positive");
    fails(resample_c(&data, len, [usize::MAX, c, h, w], (8, 8), None, 8), ft_status::FT_ERR_INVALID_ARGUMENT, "overflows");
    fails(resample_c(&data, len, ok, (usize::MAX, 2), None, 8), ft_status::FT_ERR_INVALID_ARGUMENT, "overflows");
    fails(resample_c(&data, len, ok, (8, 8), Some(c"nearest"), n * c * 64), ft_status::FT_ERR_INVALID_ARGUMENT, "nearest");
    let bad_utf8 = CString::new(vec![0xffu8, 0xfe]).unwrap();
    fails(resample_c(&data, len, ok, (8, 8), Some(&bad_utf8), n * c * 64), ft_status::FT_ERR_INVALID_ARGUMENT, "UTF-8");
    let mut nan = data.clone();
    nan[17] = f32::NAN;
    fails(resample_c(&nan, len, ok, (8, 8), None, n * c * 64), ft_status::FT_ERR_DATA, "value 17");
    // A working row (height × output width) beyond the one-array limit is refused before any
    // allocation: a 2¹⁶ × 1 map to 1 × 2¹⁶ would need 2³² floats of it.
    let tall = vec![1.0f32; 1 << 16];
    fails(resample_c(&tall, 1 << 16, [1, 1, 1 << 16, 1], (1, 1 << 16), None, 1 << 16), ft_status::FT_ERR_INVALID_ARGUMENT, "row buffer");
    // No maps (N = 0) is a valid, empty call.
    let (st, _) = resample_c(&data, 0, [0, c, h, w], (8, 8), None, 0);
    assert_eq!(st, ft_status::FT_OK, "{}", last_error());
    // Hostile sizes with no maps: nothing to compute, but one map of the requested size is over
    // the one-array limit (an unchecked table of 2⁴⁰ taps would abort), and sizes whose
    // per-map product wraps are refused rather than divided by.
    fails(resample_c(&data, 0, [0, c, h, w], (1 << 40, 1), None, 0), ft_status::FT_ERR_INVALID_ARGUMENT, "output map");
    fails(resample_c(&data, 0, [0, 1, 1 << 32, 1 << 32], (8, 8), None, 0), ft_status::FT_ERR_INVALID_ARGUMENT, "input map");
    fails(resample_c(&data, 0, [0, 1, 4, 4], (1 << 32, 1 << 32), None, 0), ft_status::FT_ERR_INVALID_ARGUMENT, "output map");
    // A tall output of a legitimate size costs only itself: one pixel to 2²² × 1 by area is
    // that pixel everywhere.
    let (st, out) = resample_c(&[2.5], 1, [1, 1, 1, 1], (1 << 22, 1), Some(c"area"), 1 << 22);
    assert_eq!(st, ft_status::FT_OK, "{}", last_error());
    assert!(out.iter().all(|&v| v == 2.5));
}

#[test]
fn the_committed_header_declares_the_version_of_cargo_toml() {
    let h = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/factortopy.h")).unwrap();
    for (name, v) in [
        ("FT_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("FT_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("FT_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(h.contains(&format!("#define {name} {v}\n")), "{name} {v} missing from include/factortopy.h");
    }
    // Every exported function is declared in the header.
    for f in ["ft_monitor_observe", "ft_features_add_layer_dlpack_managed", "ft_step_report_json", "ft_last_error", "ft_version"] {
        assert!(h.contains(&format!(" {f}(")), "{f} missing from the header");
    }
}
