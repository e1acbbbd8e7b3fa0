//! The C ABI entry points that hosts holding data in memory need (the Python package uses each):
//! brains from arrays, brain files and descriptions, feature metadata and files, planting a
//! brain on given features, presets, ranking, and the monitor's state as bytes.

use std::ffi::{c_void, CStr, CString};
use std::path::Path;
use std::ptr::{null, null_mut};

use factortopy::data::{Brain, Features};
use factortopy::ffi::*;

fn last_error() -> String {
    // SAFETY: ft_last_error always returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(ft_last_error()) }.to_string_lossy().into_owned()
}

fn cpath(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

fn view(data: &[f32], shape: &[i64]) -> ft_tensor {
    ft_tensor {
        data: data.as_ptr() as *const c_void,
        dtype: ft_dtype::FT_F32 as i32,
        ndim: shape.len(),
        shape: shape.as_ptr(),
        strides: null(),
    }
}

/// Small planted data written by the library's generator.
fn synth(dir: &Path, seed: u64) {
    // SAFETY: valid options and a NUL-terminated path.
    unsafe {
        let mut so = std::mem::zeroed::<ft_synth_options>();
        assert_eq!(ft_synth_options_default(&mut so), ft_status::FT_OK);
        so.n_images = 120;
        so.n_voxels = 90;
        so.n_layers = 4;
        so.width = 8;
        so.grid = 3;
        so.noise_ceiling = 0.9;
        so.seed = seed;
        assert_eq!(ft_synth_write(cpath(dir).as_ptr(), &so), ft_status::FT_OK, "{}", last_error());
    }
}

fn take_string(p: *mut std::ffi::c_char) -> String {
    // SAFETY: `p` is a string from the library, freed once here.
    unsafe {
        let s = CStr::from_ptr(p).to_str().unwrap().to_string();
        ft_string_free(p);
        s
    }
}

#[test]
fn a_brain_from_arrays_is_the_brain_loaded_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 1);
    let file = dir.path().join("brain.safetensors");
    let raw = Brain::load_with(&file, false).unwrap();
    let (n, v) = (raw.n_images() as i64, raw.n_voxels() as i64);
    let meta = serde_json::json!({
        "roi_names": raw.roi_names,
        "roi_levels": raw.roi_levels,
        "subject": raw.subject,
        "stimulus_ids": raw.stimulus_ids,
    })
    .to_string();
    let meta = CString::new(meta).unwrap();
    let (rs, cs) = ([n, v], [v, 3]);
    let responses = view(&raw.responses.data, &rs);
    let coords = view(&raw.coords.data, &cs);
    let nc = raw.noise_ceiling.clone().unwrap();
    let ncs = [v];
    let nct = view(&nc, &ncs);
    let flat = raw.flat.clone().unwrap();
    let fs = [v, 2];
    let flatt = view(&flat.data, &fs);
    let arrays = ft_brain_arrays {
        responses: &responses,
        coords: &coords,
        roi: raw.roi.as_ptr(),
        roi_len: raw.roi.len(),
        noise_ceiling: &nct,
        flat: &flatt,
        metadata_json: meta.as_ptr(),
        zscore: 1,
    };
    // SAFETY: every pointer above is live for the calls; handles are freed once.
    unsafe {
        let (mut from_arrays, mut from_file) = (null_mut(), null_mut());
        assert_eq!(ft_brain_new(&arrays, &mut from_arrays), ft_status::FT_OK, "{}", last_error());
        assert_eq!(ft_brain_load(cpath(&file).as_ptr(), &mut from_file), ft_status::FT_OK);
        // Deterministic serialisation: the same brain saves to the same bytes.
        let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
        assert_eq!(ft_brain_save(from_arrays, cpath(&a).as_ptr()), ft_status::FT_OK, "{}", last_error());
        assert_eq!(ft_brain_save(from_file, cpath(&b).as_ptr()), ft_status::FT_OK);
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "the saved brains differ");

        let mut info = null_mut();
        assert_eq!(ft_brain_info_json(from_arrays, &mut info), ft_status::FT_OK);
        let info: serde_json::Value = serde_json::from_str(&take_string(info)).unwrap();
        assert_eq!(info["n_images"], n);
        assert_eq!(info["n_voxels"], v);
        assert_eq!(info["has_noise_ceiling"], true);
        let sizes: Vec<usize> = serde_json::from_value(info["roi_sizes"].clone()).unwrap();
        let labelled = raw.roi.iter().filter(|&&r| r >= 0).count();
        assert_eq!(sizes.iter().sum::<usize>(), labelled);
        for (k, size) in sizes.iter().enumerate() {
            assert_eq!(*size, raw.roi.iter().filter(|&&r| r == k as i32).count());
        }
        ft_brain_free(from_arrays);
        ft_brain_free(from_file);
    }
}

#[test]
fn bad_brain_arrays_are_clear_errors_and_write_nothing() {
    let (n, v) = (6usize, 4usize);
    let mut resp: Vec<f32> = (0..n * v).map(|i| ((i * 7) % 5) as f32).collect();
    let coords = vec![0.5f32; v * 3];
    let roi = [0i32, 0, 1, -1];
    let (rs, cs) = ([n as i64, v as i64], [v as i64, 3]);
    let names = CString::new(r#"{"roi_names": ["V1", "V2"]}"#).unwrap();
    let try_new = |resp: &[f32], roi: &[i32], meta: *const std::ffi::c_char| -> (ft_status, String) {
        let r = view(resp, &rs);
        let c = view(&coords, &cs);
        let arrays = ft_brain_arrays {
            responses: &r,
            coords: &c,
            roi: roi.as_ptr(),
            roi_len: roi.len(),
            noise_ceiling: null(),
            flat: null(),
            metadata_json: meta,
            zscore: 1,
        };
        let sentinel = 0x10 as *mut ft_brain;
        let mut out = sentinel;
        // SAFETY: live arrays; `out` valid for writes.
        let st = unsafe { ft_brain_new(&arrays, &mut out) };
        if st == ft_status::FT_OK {
            // SAFETY: a new handle, freed once.
            unsafe { ft_brain_free(out) };
        } else {
            assert_eq!(out, sentinel, "output written on error");
        }
        (st, last_error())
    };
    assert_eq!(try_new(&resp, &roi, names.as_ptr()).0, ft_status::FT_OK, "{}", last_error());
    let (st, msg) = try_new(&resp, &roi, null());
    assert_eq!(st, ft_status::FT_ERR_INVALID_ARGUMENT);
    assert!(msg.contains("roi_names"), "{msg}");
    let (st, msg) = try_new(&resp, &roi[..3], names.as_ptr());
    assert_eq!(st, ft_status::FT_ERR_DATA);
    assert!(msg.contains("`roi` has 3 entries"), "{msg}");
    let (st, msg) = try_new(&resp, &[0, 0, 2, -1], names.as_ptr());
    assert_eq!(st, ft_status::FT_ERR_DATA);
    assert!(msg.contains("value 2"), "{msg}");
    let typo = CString::new(r#"{"roi_name": ["V1", "V2"]}"#).unwrap();
    let (st, msg) = try_new(&resp, &roi, typo.as_ptr());
    assert_eq!(st, ft_status::FT_ERR_INVALID_ARGUMENT);
    assert!(msg.contains("roi_name"), "{msg}");
    for i in 0..n {
        resp[i * v + 1] = 3.0;
    }
    let (st, msg) = try_new(&resp, &roi, names.as_ptr());
    assert_eq!(st, ft_status::FT_ERR_DATA);
    assert!(msg.contains("voxel 1 has zero variance"), "{msg}");
    resp[5] = f32::NAN;
    let (st, msg) = try_new(&resp, &roi, names.as_ptr());
    assert_eq!(st, ft_status::FT_ERR_DATA);
    assert!(msg.contains("non-finite"), "{msg}");
    let mut out = null_mut();
    // SAFETY: NULL arrays is checked.
    assert_eq!(unsafe { ft_brain_new(null(), &mut out) }, ft_status::FT_ERR_NULL);
}

/// Hostile lengths: a C length argument far beyond what its pointer can hold is a length error
/// (`FT_ERR_INVALID_ARGUMENT` naming the argument), checked before anything is read or
/// allocated, never a caught capacity-overflow panic.
#[test]
fn huge_c_length_arguments_are_length_errors() {
    let (n, v) = (6usize, 4usize);
    let resp: Vec<f32> = (0..n * v).map(|i| ((i * 7) % 5) as f32).collect();
    let coords = vec![0.5f32; v * 3];
    let roi = [0i32, 0, 1, -1];
    let (rs, cs) = ([n as i64, v as i64], [v as i64, 3]);
    let names = CString::new(r#"{"roi_names": ["V1", "V2"]}"#).unwrap();
    let (r, c) = (view(&resp, &rs), view(&coords, &cs));
    let mut arrays = ft_brain_arrays {
        responses: &r,
        coords: &c,
        roi: roi.as_ptr(),
        roi_len: usize::MAX / 2,
        noise_ceiling: null(),
        flat: null(),
        metadata_json: names.as_ptr(),
        zscore: 1,
    };
    // SAFETY: the refused length is checked before `roi` is read; the handles below come from
    // the library and are freed once.
    unsafe {
        let mut brain = null_mut();
        for len in [usize::MAX / 2, usize::MAX, (1usize << 31) + 1] {
            arrays.roi_len = len;
            assert_eq!(ft_brain_new(&arrays, &mut brain), ft_status::FT_ERR_INVALID_ARGUMENT, "{}", last_error());
            assert!(last_error().contains("roi_len") && last_error().contains(&len.to_string()), "{}", last_error());
            assert!(brain.is_null());
        }
        arrays.roi_len = roi.len();
        assert_eq!(ft_brain_new(&arrays, &mut brain), ft_status::FT_OK, "{}", last_error());
        let junk = [1u8, 2, 3];
        let mut mon = null_mut();
        assert_eq!(ft_monitor_load_bytes(junk.as_ptr(), usize::MAX / 2, brain, &mut mon), ft_status::FT_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("monitor state bytes"), "{}", last_error());
        assert!(mon.is_null());
        let nets = [null::<ft_features>()];
        let mut out = null_mut();
        assert_eq!(ft_rank(nets.as_ptr(), usize::MAX / 2, brain, null(), 0, &mut out), ft_status::FT_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("n_networks"), "{}", last_error());
        assert!(out.is_null());
        ft_brain_free(brain);
    }
}

#[test]
fn features_metadata_and_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 2);
    // SAFETY: handles from the library, freed once; strings NUL-terminated.
    unsafe {
        let mut f = null_mut();
        let src = cpath(&dir.path().join("features.safetensors"));
        assert_eq!(ft_features_load(src.as_ptr(), &mut f), ft_status::FT_OK);
        let bad = CString::new(r#"{"layer_names": ["a", "b"]}"#).unwrap();
        assert_eq!(ft_features_set_metadata(f, bad.as_ptr()), ft_status::FT_ERR_MISMATCH);
        assert!(last_error().contains("4 layers"), "{}", last_error());
        let not_json = CString::new("{model: x}").unwrap();
        assert_eq!(ft_features_set_metadata(f, not_json.as_ptr()), ft_status::FT_ERR_INVALID_ARGUMENT);
        let ok = CString::new(r#"{"model": "net-a", "layer_names": ["s1", "s2", "s3", "s4"]}"#).unwrap();
        assert_eq!(ft_features_set_metadata(f, ok.as_ptr()), ft_status::FT_OK, "{}", last_error());
        let out = dir.path().join("copy.safetensors");
        assert_eq!(ft_features_save(f, cpath(&out).as_ptr()), ft_status::FT_OK, "{}", last_error());
        let back = Features::load(&out).unwrap();
        let orig = Features::load(&dir.path().join("features.safetensors")).unwrap();
        assert_eq!(back.model, "net-a");
        assert_eq!(back.layer_names, ["s1", "s2", "s3", "s4"]);
        for (a, b) in back.layers.iter().zip(&orig.layers) {
            assert_eq!(a.local.data, b.local.data);
        }
        // An empty feature set cannot be saved.
        let mut empty = null_mut();
        ft_features_new(&mut empty);
        let e = dir.path().join("empty.safetensors");
        assert_ne!(ft_features_save(empty, cpath(&e).as_ptr()), ft_status::FT_OK);
        assert!(!e.exists());
        ft_features_free(empty);
        ft_features_free(f);
    }
}

#[test]
fn a_brain_planted_on_given_features_fits_them() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 3);
    let planted = dir.path().join("planted");
    // SAFETY: handles from the library, freed once; strings NUL-terminated.
    unsafe {
        let mut f = null_mut();
        assert_eq!(
            ft_features_load(cpath(&dir.path().join("features.safetensors")).as_ptr(), &mut f),
            ft_status::FT_OK
        );
        let mut so = std::mem::zeroed::<ft_synth_options>();
        ft_synth_options_default(&mut so);
        so.n_voxels = 70;
        so.grid = 3;
        so.seed = 9;
        assert_eq!(ft_synth_plant(f, &so, null(), null_mut()), ft_status::FT_ERR_NULL);
        let mut brain = null_mut();
        assert_eq!(ft_synth_plant(f, &so, cpath(&planted).as_ptr(), &mut brain), ft_status::FT_OK, "{}", last_error());
        let (mut n, mut v) = (0, 0);
        ft_brain_shape(brain, &mut n, &mut v);
        assert_eq!((n, v), (120, 70));
        assert!(planted.join("brain.safetensors").exists() && planted.join("truth.safetensors").exists());
        // The handle is the written file, z-scored.
        let mut loaded = null_mut();
        assert_eq!(
            ft_brain_load(cpath(&planted.join("brain.safetensors")).as_ptr(), &mut loaded),
            ft_status::FT_OK
        );
        let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
        ft_brain_save(brain, cpath(&a).as_ptr());
        ft_brain_save(loaded, cpath(&b).as_ptr());
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "the saved brains differ");
        ft_brain_free(loaded);
        ft_brain_free(brain);
        ft_features_free(f);
    }
}

#[test]
fn presets_and_ranking_put_the_real_network_above_its_reversal() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 4);
    // SAFETY: handles from the library, freed once; strings NUL-terminated; views of live data.
    unsafe {
        let mut fast = std::mem::zeroed::<ft_fit_options>();
        let name = CString::new("fast").unwrap();
        assert_eq!(ft_fit_options_preset(name.as_ptr(), &mut fast), ft_status::FT_OK);
        assert_eq!((fast.lr, fast.batch_size, fast.reg_steps, fast.patience), (1e-2, 32, 300, 3));
        let mut design = std::mem::zeroed::<ft_fit_options>();
        let mut default = std::mem::zeroed::<ft_fit_options>();
        ft_fit_options_preset(c"design".as_ptr(), &mut design);
        ft_fit_options_default(&mut default);
        assert_eq!((design.lr, design.batch_size), (default.lr, default.batch_size));
        let before = design.lr;
        assert_eq!(ft_fit_options_preset(c"quick".as_ptr(), &mut design), ft_status::FT_ERR_INVALID_ARGUMENT);
        assert_eq!(design.lr, before);

        let mut brain = null_mut();
        ft_brain_load(cpath(&dir.path().join("brain.safetensors")).as_ptr(), &mut brain);
        let mut real = null_mut();
        ft_features_load(cpath(&dir.path().join("features.safetensors")).as_ptr(), &mut real);
        ft_features_set_metadata(real, c"{\"model\": \"real\"}".as_ptr());
        // The same layers in reverse depth order: its hierarchy slope must come out negative.
        let mut reversed = null_mut();
        ft_features_new(&mut reversed);
        let mut nl = 0;
        let mut ni = 0;
        ft_features_shape(real, &mut ni, &mut nl);
        for l in (0..nl).rev() {
            let mut lv = std::mem::zeroed::<ft_layer_view>();
            ft_features_layer(real, l, &mut lv);
            let t = ft_tensor {
                data: lv.local as *const c_void,
                dtype: 0,
                ndim: 4,
                shape: lv.local_shape.as_ptr(),
                strides: null(),
            };
            assert_eq!(ft_features_add_layer(reversed, &t, null()), ft_status::FT_OK, "{}", last_error());
        }
        ft_features_set_metadata(reversed, c"{\"model\": \"reversed\"}".as_ptr());

        let nets = [reversed as *const ft_features, real as *const ft_features];
        let mut opts = fast;
        opts.grid = 3;
        let mut out = null_mut();
        assert_eq!(ft_rank(nets.as_ptr(), 0, brain, &opts, 1, &mut out), ft_status::FT_ERR_INVALID_ARGUMENT);
        assert_eq!(ft_rank(nets.as_ptr(), 2, brain, &opts, 7, &mut out), ft_status::FT_ERR_INVALID_ARGUMENT);
        let with_null = [real as *const ft_features, null()];
        assert_eq!(ft_rank(with_null.as_ptr(), 2, brain, &opts, 1, &mut out), ft_status::FT_ERR_NULL);
        assert!(last_error().contains("networks[1]"), "{}", last_error());
        assert!(out.is_null());
        assert_eq!(ft_rank(nets.as_ptr(), 2, brain, &opts, ft_rank_method::FT_RANK_RIDGE as i32, &mut out), ft_status::FT_OK, "{}", last_error());
        let ranking: serde_json::Value = serde_json::from_str(&take_string(out)).unwrap();
        assert_eq!(ranking["method"], "ridge");
        let rows = ranking["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["name"], "real", "{ranking}");
        assert_eq!(rows[0]["index"], 1);
        assert!(rows[0]["slope"].as_f64().unwrap() > 0.0);
        assert!(rows[1]["slope"].as_f64().unwrap() < 0.0, "{ranking}");
        ft_features_free(reversed);
        ft_features_free(real);
        ft_brain_free(brain);
    }
}

#[test]
fn monitor_state_bytes_are_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 5);
    // SAFETY: handles from the library, freed once; strings NUL-terminated.
    unsafe {
        let mut brain = null_mut();
        ft_brain_load(cpath(&dir.path().join("brain.safetensors")).as_ptr(), &mut brain);
        let mut f = null_mut();
        ft_features_load(cpath(&dir.path().join("features.safetensors")).as_ptr(), &mut f);
        let mut mo = std::mem::zeroed::<ft_monitor_options>();
        ft_monitor_options_default(&mut mo);
        ft_fit_options_preset(c"fast".as_ptr(), &mut mo.fit);
        mo.fit.grid = 3;
        mo.fit.d = 8;
        mo.fit.max_epochs = 60;
        let mut mon = null_mut();
        assert_eq!(ft_monitor_new(brain, f, &mo, &mut mon), ft_status::FT_OK, "{}", last_error());
        let mut rep = null_mut();
        assert_eq!(ft_monitor_observe(mon, 0, f, &mut rep), ft_status::FT_OK);
        ft_step_report_free(rep);

        let (mut data, mut len) = (null_mut(), 0usize);
        assert_eq!(ft_monitor_save_bytes(mon, &mut data, &mut len), ft_status::FT_OK);
        let bytes = std::slice::from_raw_parts(data, len).to_vec();
        let file = dir.path().join("state.safetensors");
        ft_monitor_save(mon, cpath(&file).as_ptr());
        assert_eq!(bytes, std::fs::read(&file).unwrap());

        let mut back = null_mut();
        assert_eq!(ft_monitor_load_bytes(data, len, brain, &mut back), ft_status::FT_OK, "{}", last_error());
        ft_bytes_free(data, len);
        let (mut h1, mut h2) = (null_mut(), null_mut());
        ft_monitor_history_json(mon, &mut h1);
        ft_monitor_history_json(back, &mut h2);
        assert_eq!(take_string(h1), take_string(h2));

        let junk = [1u8, 2, 3];
        let mut none = null_mut();
        assert_eq!(ft_monitor_load_bytes(junk.as_ptr(), 3, brain, &mut none), ft_status::FT_ERR_DATA);
        assert!(last_error().contains("monitor state bytes"), "{}", last_error());
        assert!(none.is_null());
        assert_eq!(ft_monitor_load_bytes(null(), 0, brain, &mut none), ft_status::FT_ERR_NULL);
        ft_bytes_free(null_mut(), 0);
        ft_monitor_free(back);
        ft_monitor_free(mon);
        ft_features_free(f);
        ft_brain_free(brain);
    }
}
