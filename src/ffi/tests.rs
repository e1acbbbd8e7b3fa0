//! Unit tests of the boundary machinery; the end-to-end C ABI tests are in tests/ffi_*.rs and
//! tests/c/.

use super::*;
use std::ffi::CStr;

fn last_error() -> String {
    // SAFETY: ft_last_error returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(ft_last_error()) }.to_string_lossy().into_owned()
}

#[test]
fn version_constants_match_cargo_toml() {
    assert_eq!(FT_VERSION_MAJOR.to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
    assert_eq!(FT_VERSION_MINOR.to_string(), env!("CARGO_PKG_VERSION_MINOR"));
    assert_eq!(FT_VERSION_PATCH.to_string(), env!("CARGO_PKG_VERSION_PATCH"));
    assert_eq!(FT_VERSION_STRING, env!("CARGO_PKG_VERSION"));
    // SAFETY: static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(ft_version()) };
    assert_eq!(v.to_str().unwrap(), FT_VERSION_STRING);
}

#[test]
fn panics_become_a_status_and_a_message() {
    let s = guard(|| panic!("boom {}", 42));
    assert_eq!(s, ft_status::FT_ERR_PANIC);
    let e = last_error();
    assert!(e.contains("boom 42") && e.contains("panic"), "{e}");
    let s = guard(|| Err(FfiError::invalid("bad thing")));
    assert_eq!(s, ft_status::FT_ERR_INVALID_ARGUMENT);
    assert_eq!(last_error(), "bad thing");
    assert_eq!(guard(|| Ok(())), ft_status::FT_OK);
    assert_eq!(last_error(), "");
    assert_eq!(guard_value(7, || panic!("x")), 7);
}

#[test]
fn last_error_is_per_thread() {
    let _ = guard(|| Err(FfiError::invalid("main thread error")));
    let other = std::thread::spawn(|| {
        let _ = guard(|| Err(FfiError::invalid("other thread error")));
        last_error()
    })
    .join()
    .unwrap();
    assert_eq!(other, "other thread error");
    assert_eq!(last_error(), "main thread error");
}

#[test]
fn error_kinds_map_to_statuses() {
    use crate::error::Error;
    // Every variant: a shape or dtype problem in a file is the file's content (FT_ERR_DATA),
    // in a tensor the caller passed FT_ERR_SHAPE / FT_ERR_DTYPE; a device that cannot be used
    // is FT_ERR_BACKEND, as the header says; the message is the error's, unchanged.
    let cases = [
        (Error::data("f", "x"), ft_status::FT_ERR_DATA),
        (Error::shape_in("f", "t", "x"), ft_status::FT_ERR_DATA),
        (Error::dtype_in("f", "t", "x"), ft_status::FT_ERR_DATA),
        (Error::shape("t", "x"), ft_status::FT_ERR_SHAPE),
        (Error::dtype("t", "x"), ft_status::FT_ERR_DTYPE),
        (Error::Device { tensor: "t".into(), msg: "x".into() }, ft_status::FT_ERR_DEVICE),
        (Error::device_unavailable("cuda:0", "x"), ft_status::FT_ERR_BACKEND),
        (Error::io("f", std::io::Error::other("x")), ft_status::FT_ERR_IO),
        (Error::io("f", std::io::Error::from(std::io::ErrorKind::NotFound)), ft_status::FT_ERR_IO),
        (Error::mismatch("x"), ft_status::FT_ERR_MISMATCH),
        (Error::invalid("x"), ft_status::FT_ERR_INVALID_ARGUMENT),
        (Error::invalid_arg("lr", "x"), ft_status::FT_ERR_INVALID_ARGUMENT),
        (Error::Numeric("x".into()), ft_status::FT_ERR_NUMERIC),
        (Error::Backend("x".into()), ft_status::FT_ERR_BACKEND),
        (Error::Cuda("x".into()), ft_status::FT_ERR_BACKEND),
        (Error::Memory("x".into()), ft_status::FT_ERR_MEMORY),
    ];
    for (e, s) in cases {
        let msg = e.to_string();
        let f = FfiError::from(e);
        assert_eq!((f.status, f.msg.as_str()), (s, msg.as_str()));
    }
    for k in 0..12 {
        // SAFETY: static NUL-terminated strings.
        let name = unsafe { CStr::from_ptr(ft_status_name(k)) }.to_str().unwrap();
        assert!(name.starts_with("FT_"), "{name}");
    }
    // SAFETY: as above.
    assert_eq!(unsafe { CStr::from_ptr(ft_status_name(99)) }.to_str().unwrap(), "FT_UNKNOWN_STATUS");
}

#[test]
fn strings_round_trip_and_free_accepts_null() {
    let p = c_string("a\0b".to_string());
    // SAFETY: `p` is a live library string.
    assert_eq!(unsafe { CStr::from_ptr(p) }.to_str().unwrap(), "a b");
    // SAFETY: freed once; NULL accepted.
    unsafe {
        ft_string_free(p);
        ft_string_free(std::ptr::null_mut());
    }
}

/// Overlapping calls the header forbids are detected in the one place policed handles are
/// borrowed: while a call holds a feature set exclusively (adding a layer), every other call on
/// it is `FT_ERR_BUSY` and does nothing; reads may overlap each other, but not a write; the flag
/// is released when the call ends, whatever its outcome.
#[test]
fn overlapping_calls_on_a_handle_are_busy_not_raced() {
    let mut f: *mut ft_features = std::ptr::null_mut();
    // SAFETY: `out` is valid for writes; the handle is freed once at the end.
    assert_eq!(unsafe { ft_features_new(&mut f) }, ft_status::FT_OK);
    let (mut n, mut l) = (7usize, 7usize);
    let meta = c"{\"model\": \"m\"}";
    // SAFETY: `f` is live until the end of the test; the out-pointers are valid for writes.
    let shape = |n: &mut usize, l: &mut usize| unsafe { ft_features_shape(f, n, l) };
    // SAFETY: `f` is live; `json` is NUL-terminated.
    let set_meta = |json: &CStr| unsafe { ft_features_set_metadata(f, json.as_ptr()) };
    {
        let _writer = exclusive(f, "features").unwrap();
        assert_eq!(shape(&mut n, &mut l), ft_status::FT_ERR_BUSY);
        assert!(last_error().contains("`features` is in use"), "{}", last_error());
        assert_eq!((n, l), (7, 7), "a busy call wrote its outputs");
        assert_eq!(set_meta(meta), ft_status::FT_ERR_BUSY);
        assert!(exclusive(f, "features").is_err() && shared(f, "features").is_err());
    }
    {
        let _reader = shared(f, "features").unwrap();
        assert_eq!(shape(&mut n, &mut l), ft_status::FT_OK, "{}", last_error());
        assert_eq!((n, l), (0, 0));
        assert_eq!(set_meta(meta), ft_status::FT_ERR_BUSY);
    }
    // Released on every path: a failed call (bad JSON) leaves the handle usable.
    assert_eq!(set_meta(c"{"), ft_status::FT_ERR_INVALID_ARGUMENT);
    assert_eq!(set_meta(meta), ft_status::FT_OK, "{}", last_error());
    assert!(exclusive(f, "features").is_ok());
    // SAFETY: static NUL-terminated strings.
    let name = unsafe { CStr::from_ptr(ft_status_name(ft_status::FT_ERR_BUSY as i32)) };
    assert_eq!(name.to_str().unwrap(), "FT_ERR_BUSY");
    // SAFETY: freed once.
    unsafe { ft_features_free(f) };
}

#[test]
fn a_config_that_follows_the_data_resolves_the_auto_schedule_for_it() {
    use crate::ffi::config::Settings;
    use crate::model::Preset;
    let s = Settings::new(Preset::Auto, 0).unwrap();
    for n in [200, 1_000, 10_000] {
        assert_eq!(s.fit_for(n), Preset::Auto.config(n), "{n} images");
    }
    // A config made for a size keeps that size's schedule whatever the data.
    let fixed = Settings::new(Preset::Auto, 1_000).unwrap();
    assert_eq!(fixed.fit_for(10_000), Preset::Auto.config(1_000));
    // A schedule field set explicitly is kept; the others follow the data.
    let mut cfg = std::ptr::null_mut();
    // SAFETY: a valid out-pointer; the handle is freed below.
    assert_eq!(unsafe { ft_fit_config_new(std::ptr::null(), 0, &mut cfg) }, ft_status::FT_OK);
    // SAFETY: `cfg` is a live handle.
    assert_eq!(unsafe { ft_fit_config_set_lr(cfg, 0.5) }, ft_status::FT_OK);
    // SAFETY: `cfg` is a live handle; nothing else uses it.
    let settings = unsafe { &*<ft_fit_config as Policed>::inner_of(cfg) };
    let fit = settings.fit_for(10_000);
    assert_eq!(fit.lr, 0.5);
    assert_eq!(fit.max_epochs, Preset::Auto.config(10_000).max_epochs);
    // SAFETY: `cfg` came from `ft_fit_config_new` and is freed once.
    unsafe { ft_fit_config_free(cfg) };
}

#[test]
fn a_refused_setting_leaves_the_config_unchanged_and_names_the_setter() {
    let mut cfg = std::ptr::null_mut();
    // SAFETY: a valid out-pointer; the handle is freed below.
    assert_eq!(unsafe { ft_fit_config_new(c"design".as_ptr(), 0, &mut cfg) }, ft_status::FT_OK);
    let json = |cfg| {
        let mut out = std::ptr::null_mut();
        // SAFETY: `cfg` is live; `out` is a valid out-pointer; the string is freed below.
        assert_eq!(unsafe { ft_fit_config_json(cfg, &mut out) }, ft_status::FT_OK);
        // SAFETY: a string from the library, freed once.
        let s = unsafe { std::ffi::CStr::from_ptr(out) }.to_str().unwrap().to_string();
        // SAFETY: as above.
        unsafe { ft_string_free(out) };
        s
    };
    let before = json(cfg);
    // SAFETY: `cfg` is a live handle.
    assert_eq!(unsafe { ft_fit_config_set_batch_size(cfg, 0) }, ft_status::FT_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("ft_fit_config_set_batch_size"), "{}", last_error());
    // SAFETY: `cfg` is a live handle.
    assert_eq!(unsafe { ft_fit_config_set_device(cfg, c"tpu".as_ptr()) }, ft_status::FT_ERR_INVALID_ARGUMENT);
    assert_eq!(json(cfg), before);
    // SAFETY: `cfg` is a live handle.
    assert_eq!(unsafe { ft_fit_config_set_batch_size(cfg, 16) }, ft_status::FT_OK);
    let after: serde_json::Value = serde_json::from_str(&json(cfg)).unwrap();
    assert_eq!(after["batch_size"], 16);
    assert_eq!(after["set"], serde_json::json!(["batch_size"]));
    assert_eq!(after["resample"], "bilinear");
    // SAFETY: `cfg` came from `ft_fit_config_new` and is freed once.
    unsafe { ft_fit_config_free(cfg) };
}
