//! `fit` writes every picture, `plot` redraws them from the saved fit (all, a chosen few, at a
//! chosen size, from a ridge fit), `score --fit-dir` writes a fit directory for a saved encoder,
//! and the C ABI's `ft_plot` does what `plot` does.

use std::ffi::{CStr, CString};
use std::path::Path;

use factortopy::ffi::{ft_brain, ft_brain_free, ft_brain_load, ft_plot, ft_status, ft_string_free};

use crate::common::cli::{ok, run, s};

fn png_size(path: &Path) -> (u32, u32) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let info = png::Decoder::new(file).read_info().unwrap().info().clone();
    (info.width, info.height)
}

const ALL: [&str; 7] =
    ["layer_map.png", "space_map.png", "scale_map.png", "r2_map.png", "channel_map.png", "profile.png", "overview.png"];

#[test]
fn fit_writes_every_picture_and_plot_redraws_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&["synth", "--out", s(&data), "--images", "120", "--voxels", "140", "--layers", "3", "--width", "8", "--grid", "4", "--seed", "2"]);
    let (f, b) = (data.join("features.safetensors"), data.join("brain.safetensors"));
    let fit = tmp.path().join("fit");
    let common = ["--preset", "fast", "--grid", "4", "--dim", "8", "--epochs", "1", "--quiet"];
    let mut args = vec!["fit", "--features", s(&f), "--brain", s(&b), "--out", s(&fit)];
    args.extend(common);
    let stdout = ok(&args);
    for name in ALL {
        assert!(fit.join(name).is_file(), "fit did not write {name}");
        assert!(stdout.contains(name), "fit did not print {name}");
    }
    assert_eq!(png_size(&fit.join("layer_map.png")), (800, 600));
    let (ow, oh) = png_size(&fit.join("overview.png"));
    assert_eq!((ow, oh), (3 * 600, 44 + 2 * 450));

    // --no-plots: the same files without pictures.
    let bare = tmp.path().join("bare");
    let mut args = vec!["fit", "--features", s(&f), "--brain", s(&b), "--out", s(&bare), "--no-plots"];
    args.extend(common);
    ok(&args);
    assert!(bare.join("report.json").is_file() && bare.join("selectors.safetensors").is_file());
    assert!(ALL.iter().all(|n| !bare.join(n).exists()), "--no-plots wrote a picture");

    // plot: a few maps at another size into another directory, from the picture-less fit.
    let out = tmp.path().join("redrawn");
    let stdout = ok(&["plot", s(&bare), "--brain", s(&b), "--maps", "r2,channels,overview", "--out", s(&out), "--size", "640x480", "--groups", "5"]);
    assert!(stdout.contains("r2:") && stdout.contains("channels:"), "{stdout}");
    assert_eq!(png_size(&out.join("r2_map.png")), (640, 480));
    assert_eq!(png_size(&out.join("channel_map.png")), (640, 480));
    assert!(out.join("overview.png").is_file() && !out.join("layer_map.png").exists());
    // The same picture twice from the same fit: byte-identical (the grouping is seeded).
    let again = tmp.path().join("again");
    ok(&["plot", s(&bare), "--brain", s(&b), "--maps", "channels", "--out", s(&again), "--size", "640x480", "--groups", "5"]);
    assert_eq!(std::fs::read(out.join("channel_map.png")).unwrap(), std::fs::read(again.join("channel_map.png")).unwrap());

    // Bad requests: one error line, nothing drawn.
    for (extra, words) in [
        (vec!["--maps", "layer,colour"], vec!["unknown map `colour`"]),
        (vec!["--size", "20x20"], vec!["20x20"]),
        (vec!["--groups", "0"], vec!["channel groups"]),
    ] {
        let bad = tmp.path().join("bad");
        let mut args = vec!["plot", s(&bare), "--brain", s(&b), "--out", s(&bad)];
        args.extend(extra);
        let o = run(&args);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(words.iter().all(|w| err.contains(w)), "{err}");
        assert!(ALL.iter().all(|n| !bad.join(n).exists()));
    }

    // A ridge fit has no image location, scale or channel readout: those maps are left out by
    // default and refused when asked for.
    let ridge = tmp.path().join("ridge");
    ok(&["fit", "--method", "ridge", "--features", s(&f), "--brain", s(&b), "--out", s(&ridge), "--alphas", "0:2:3", "--folds", "2", "--quiet"]);
    let redrawn = tmp.path().join("ridge_plots");
    ok(&["plot", s(&ridge), "--brain", s(&b), "--out", s(&redrawn)]);
    for name in ["layer_map.png", "r2_map.png", "profile.png", "overview.png"] {
        assert!(redrawn.join(name).is_file(), "{name}");
    }
    for name in ["space_map.png", "scale_map.png", "channel_map.png"] {
        assert!(!redrawn.join(name).exists(), "{name}");
    }
    let o = run(&["plot", s(&ridge), "--brain", s(&b), "--maps", "space", "--out", s(&redrawn)]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("ridge"));

    // score --fit-dir: the directory fit writes, for a saved encoder.
    let scored = tmp.path().join("scored");
    ok(&["score", "--encoder", s(&fit.join("encoder.safetensors")), "--features", s(&f), "--brain", s(&b), "--fit-dir", s(&scored)]);
    let json = |p: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let (a, b2) = (json(&scored.join("report.json")), json(&fit.join("report.json")));
    for key in ["hierarchy", "r2", "pearson", "rois"] {
        assert!(a[key] == b2[key], "score --fit-dir and fit disagree on `{key}`");
    }
    assert!(
        std::fs::read(scored.join("channel_map.png")).unwrap() == std::fs::read(fit.join("channel_map.png")).unwrap(),
        "the channel maps of score --fit-dir and fit differ"
    );

    // The C ABI: the same call, checked arguments.
    let brain_path = CString::new(s(&b)).unwrap();
    let fit_dir = CString::new(s(&bare)).unwrap();
    let maps = CString::new("layer,profile").unwrap();
    let abi_out = tmp.path().join("abi");
    let out_dir = CString::new(s(&abi_out)).unwrap();
    let mut brain: *mut ft_brain = std::ptr::null_mut();
    let mut json: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: valid strings and out-pointers; the handle and string are freed below.
    unsafe {
        assert_eq!(ft_brain_load(brain_path.as_ptr(), &mut brain), ft_status::FT_OK);
        let st = ft_plot(fit_dir.as_ptr(), brain, maps.as_ptr(), out_dir.as_ptr(), 700, 500, 0, &mut json);
        assert_eq!(st, ft_status::FT_OK);
        let listed: serde_json::Value = serde_json::from_str(CStr::from_ptr(json).to_str().unwrap()).unwrap();
        ft_string_free(json);
        assert_eq!(listed[0]["map"], "layer");
        assert_eq!(listed[1]["map"], "profile");
        assert_eq!(png_size(&abi_out.join("layer_map.png")), (700, 500));
        let st = ft_plot(std::ptr::null(), brain, std::ptr::null(), std::ptr::null(), 0, 0, 0, &mut json);
        assert_eq!(st, ft_status::FT_ERR_NULL);
        let st = ft_plot(fit_dir.as_ptr(), brain, std::ptr::null(), out_dir.as_ptr(), 700, 0, 0, &mut json);
        assert_eq!(st, ft_status::FT_ERR_INVALID_ARGUMENT);
        let st = ft_plot(fit_dir.as_ptr(), std::ptr::null(), std::ptr::null(), std::ptr::null(), 0, 0, 0, &mut json);
        assert_eq!(st, ft_status::FT_ERR_NULL);
        ft_brain_free(brain);
    }
}
