"""The package over the C ABI: numpy in, reports out, files, fits, ranking, monitor state, and
the errors of bad input as Python exceptions."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import factortopy as ft


def planted_numpy_brain(features, rng, n_per_roi=12):
    """An independent planting in numpy: early ROIs read linear mixtures of layer 0's pooled
    features, late ones of the last layer's; the fit must find that order."""
    names = ["V1", "V2", "V3", "hV4", "FFA"]
    n_layers = features.n_layers
    pooled = [features.layer(l)[0].mean(axis=(2, 3)) for l in range(n_layers)]
    reads = [0, 0, n_layers // 2, n_layers - 1, n_layers - 1]
    cols, roi, coords = [], [], []
    for r, layer in enumerate(reads):
        x = pooled[layer]
        x = (x - x.mean(0)) / x.std(0)
        for k in range(n_per_roi):
            signal = x @ rng.normal(size=x.shape[1])
            signal /= signal.std()
            cols.append(signal + 0.5 * rng.normal(size=signal.shape))
            roi.append(r)
            coords.append([r * 10.0 + rng.normal(), k * 0.5, 0.0])
    return np.stack(cols, axis=1), np.array(coords), np.array(roi), names


def test_numpy_round_trip_recovers_the_planted_order(features, rng, fast):
    responses, coords, roi, names = planted_numpy_brain(features, rng)
    brain = ft.Brain(responses, coords, roi, names, subject="numpy")
    assert brain.shape == (features.n_images, responses.shape[1])
    assert brain.info["roi_sizes"] == [12] * 5
    # Features rebuilt from numpy copies of the library's own layers fit exactly as the original.
    copy = ft.Features([features.layer(l) for l in range(features.n_layers)])
    a = ft.fit(features, brain, fast)
    b = ft.fit(copy, brain, fast)
    assert a.summary == b.summary
    report = a.report
    assert report["subject"] == "numpy"
    assert report["hierarchy"]["slope"] > 0.3, report["hierarchy"]
    assert [r["name"] for r in report["rois"]] == names
    depths = [r["mean_depth"] for r in report["rois"]]
    assert depths[0] < depths[-1], depths


def test_brain_arrays_are_validated(rng):
    n, v = 20, 6
    resp = rng.normal(size=(n, v))
    coords = rng.normal(size=(v, 3))
    roi = np.array([0, 0, 1, 1, -1, 1])
    ft.Brain(resp, coords, roi, ["V1", "V2"])
    bad = resp.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ft.DataError, match="non-finite"):
        ft.Brain(bad, coords, roi, ["V1", "V2"])
    const = resp.copy()
    const[:, 4] = 1.5
    with pytest.raises(ft.DataError, match="voxel 4 has zero variance"):
        ft.Brain(const, coords, roi, ["V1", "V2"])
    ft.Brain(const, coords, roi, ["V1", "V2"], zscore=False)
    with pytest.raises(ft.DataError, match="coords"):
        ft.Brain(resp, coords[:, :2], roi, ["V1", "V2"])
    with pytest.raises(ft.DataError, match="value 2"):
        ft.Brain(resp, coords, np.array([0, 0, 2, 1, -1, 1]), ["V1", "V2"])
    with pytest.raises(ft.DataError, match="no voxel belongs to an ROI"):
        ft.Brain(resp, coords, -np.ones(v, dtype=int), ["V1", "V2"])
    with pytest.raises(ValueError, match="integer"):
        ft.Brain(resp, coords, roi.astype(float), ["V1", "V2"])


def test_feature_errors_become_exceptions_and_change_nothing(rng):
    f = ft.Features()
    f.add_layer(rng.normal(size=(5, 4, 3, 3)).astype(np.float32))
    with pytest.raises(ft.ShapeError, match="has 6 images but layer 0 has 5"):
        f.add_layer(np.zeros((6, 4, 3, 3), np.float32))
    with pytest.raises(ft.ShapeError, match="4 dimensions"):
        f.add_layer(np.zeros((5, 4, 3), np.float32))
    with pytest.raises(ft.ShapeError, match="global token"):
        f.add_layer(np.zeros((5, 4, 3, 3), np.float32), np.zeros((5, 3), np.float32))
    x = np.zeros((5, 2, 2, 2), np.float32)
    x[1, 1, 0, 1] = np.inf
    with pytest.raises(ft.DataError, match=r"non-finite value \(inf\) at index \[1, 1, 0, 1\]"):
        f.add_layer(x)
    with pytest.raises(TypeError, match="floating-point"):
        f.add_layer(np.zeros((5, 2, 2, 2), np.complex64))
    assert f.shape == (5, 1)
    # f64 and read-only arrays are accepted (f64 is converted to f32).
    ro = rng.normal(size=(5, 2, 2, 2))
    ro.setflags(write=False)
    f.add_layer(ro)
    np.testing.assert_allclose(f.layer(1)[0], ro.astype(np.float32))
    with pytest.raises(ft.MismatchError, match="layer_names has 1 names"):
        f.set_metadata(layer_names=["only-one"])
    f.close()
    with pytest.raises(ValueError, match="closed"):
        f.add_layer(ro)


def test_files_and_metadata_round_trip(tmp_path, features, brain):
    features.set_metadata(model="netA", layer_names=["a", "b", "c"])
    features.save(tmp_path / "f.safetensors")
    back = ft.Features.load(tmp_path / "f.safetensors")
    assert back.shape == features.shape
    for l in range(3):
        np.testing.assert_array_equal(back.layer(l)[0], features.layer(l)[0])
    brain.save(tmp_path / "b.safetensors")
    assert ft.Brain.load(tmp_path / "b.safetensors").info == brain.info
    with pytest.raises(ft.FactortopyIOError, match="No such file"):
        ft.Features.load(tmp_path / "missing.safetensors")
    (tmp_path / "trunc.safetensors").write_bytes((tmp_path / "f.safetensors").read_bytes()[:100])
    with pytest.raises(ft.DataError, match="truncated or corrupt"):
        ft.Features.load(tmp_path / "trunc.safetensors")


def test_fit_score_and_saved_encoder(tmp_path, features, brain, fast):
    result = ft.fit(features, brain, fast)
    s = result.summary
    assert (s["n_images"], s["n_voxels"], s["n_layers"]) == (160, 120, 3)
    assert s["r2_mean"] > 0.1 and s["slope"] > 0
    assert json.loads(json.dumps(result.report))["hierarchy"]["slope"] == pytest.approx(s["slope"])
    result.save_encoder(tmp_path / "enc.safetensors")
    scored = ft.score(tmp_path / "enc.safetensors", features, brain)
    assert scored.summary["r2_mean"] == pytest.approx(s["r2_mean"], abs=1e-9)
    with pytest.raises(TypeError, match="unknown fit option"):
        ft.fit(features, brain, learning_rate=0.1)
    with pytest.raises(ft.InvalidArgumentError, match="val_fraction"):
        ft.fit(features, brain, fast, val_fraction=1.5)
    with pytest.raises(ft.InvalidArgumentError, match="unknown preset"):
        ft.FitOptions.preset("turbo")


def test_default_options_follow_the_probe_set_size():
    # The default schedule is set when the fit starts, from the number of images:
    # lr 1e-2, batch 32, warm-up 150 steps; 800 images (720 train, 23 steps an epoch) give
    # patience 3 and at most 40 epochs, 10 000 images patience 2 and 5 epochs.
    o = ft.FitOptions()
    assert o.lr is None and o.max_epochs is None and o.grid == 8
    c = o.struct(800)
    assert (c.lr, c.batch_size, c.reg_steps, c.patience, c.max_epochs) == (1e-2, 32, 150, 3, 40)
    assert (o.struct(10_000).patience, o.struct(10_000).max_epochs) == (2, 5)
    # Overrides win over the schedule; "design" is DESIGN §3.5 at any size.
    assert ft.FitOptions(max_epochs=7).struct(800).max_epochs == 7
    d = ft.FitOptions.preset("design").struct(800)
    assert (d.lr, d.batch_size, d.reg_steps, d.patience, d.max_epochs) == (1e-3, 8, 2000, 5, 40)
    assert (o.resample, ft.FitOptions.preset("design").resample) == ("auto", "bilinear")


def test_rank_orders_the_real_network_above_its_reversal(features, brain, fast):
    reversed_ = ft.Features([features.layer(l)[0] for l in reversed(range(features.n_layers))])
    ranking = ft.rank({"reversed": reversed_, "real": features}, brain, fast, method="ridge")
    rows = ranking["rows"]
    assert [r["name"] for r in rows] == ["real", "reversed"]
    assert rows[0]["slope"] > 0 > rows[1]["slope"]
    with pytest.raises(ValueError, match="unknown rank method"):
        ft.rank([features], brain, method="lasso")


def test_grid_resampling_is_an_option_saved_with_the_encoder(tmp_path, features, brain, fast):
    # The design preset keeps DESIGN §3.1's bilinear resampling; every other preset uses auto.
    assert ft.FitOptions.preset("design").resample == "bilinear"
    assert ft.FitOptions().resample == "auto" and fast.resample == "auto"
    assert ft.FitOptions.preset("fast", resample="area").as_dict()["resample"] == "area"
    with pytest.raises(ValueError, match="unknown resampling"):
        ft.FitOptions(resample="nearest")
    # grid 4 on the generator's 6×6 and 3×3 maps: area and bilinear give different fits, and
    # scoring the saved encoder uses the method it was fitted with.
    area = ft.fit(features, brain, fast, grid=4, max_epochs=3, resample="area")
    bilinear = ft.fit(features, brain, fast, grid=4, max_epochs=3, resample="bilinear")
    assert area.report["settings"]["fit"]["resample"] == "area"
    assert area.summary["r2_mean"] != bilinear.summary["r2_mean"]
    area.save_encoder(tmp_path / "area.safetensors")
    scored = ft.score(tmp_path / "area.safetensors", features, brain)
    assert scored.summary["r2_mean"] == area.summary["r2_mean"]
    # The report says how many voxels' layer choices are ambiguous, per ROI.
    assert area.report["ambiguity"]["margin"] == 0.1
    assert all(0 <= r["ambiguous"] <= 1 for r in area.report["rois"] if r["n_voxels"])


def test_receptive_field_size_of_planted_voxels(tmp_path, features):
    files = []
    for name, prf in (("point", 0), ("cell", None), ("wide", 0.5)):
        b = ft.synth.plant(features, n_voxels=60, grid=3, seed=1, prf_size=prf, directory=tmp_path / name)
        assert b.shape == (160, 60)
        files.append((tmp_path / name / "brain.safetensors").read_bytes())
    assert files[0] != files[1] and files[1] != files[2]
    # Same seed and size: the same brain.
    ft.synth.plant(features, n_voxels=60, grid=3, seed=1, directory=tmp_path / "again")
    assert (tmp_path / "again" / "brain.safetensors").read_bytes() == files[1]
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="prf_size"):
            ft.synth.plant(features, n_voxels=60, grid=3, prf_size=bad)


def test_planting_on_given_features(tmp_path, features):
    b = ft.synth.plant(features, n_voxels=70, grid=3, seed=2, directory=tmp_path / "planted")
    assert b.shape == (160, 70)
    assert (tmp_path / "planted" / "truth.safetensors").is_file()
    with pytest.raises(ValueError, match="unknown scenario"):
        ft.synth.plant(features, "sideways")


def test_monitor_state_history_and_errors(tmp_path, features, brain, fast, synth_dir):
    mon = ft.Monitor(brain, features, ft.MonitorOptions(fast, forgetting_threshold=0.5))
    mon.set_history_file(tmp_path / "history.jsonl")
    r0 = mon.observe(0, features)
    assert r0.retention == 1.0 and r0.forgetting == 0.0 and not r0.should_stop
    assert r0.cka == pytest.approx([1.0, 1.0, 1.0])
    assert r0.as_dict()["step"] == 0
    # A damaged network: layers replaced by noise forget.
    rng = np.random.default_rng(1)
    noisy = ft.Features([features.layer(l)[0] + rng.normal(scale=3.0, size=features.layer(l)[0].shape).astype(np.float32) for l in range(3)])
    r1 = mon.observe(10, noisy)
    assert r1.forgetting > 0.2 and r1.should_stop and r1.min_cka < 0.9
    charts = mon.write_curves(tmp_path / "charts")
    for path in charts.values():
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    empty = ft.Monitor(brain, features, ft.MonitorOptions(fast))
    with pytest.raises(ft.InvalidArgumentError, match="no observations"):
        empty.write_curves(tmp_path / "none")
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [0, 10]
    data = mon.to_bytes()
    mon.save(tmp_path / "state.safetensors")
    assert (tmp_path / "state.safetensors").read_bytes() == data
    back = ft.Monitor.from_bytes(data, brain)
    assert back.history == mon.history
    loaded = ft.Monitor.load(tmp_path / "state.safetensors", brain)
    assert len(loaded.history) == 2
    other_dir = tmp_path / "other"
    ft.synth.write(other_dir, n_images=160, n_voxels=120, n_layers=3, width=8, grid=3, seed=99)
    other = ft.Brain.load(other_dir / "brain.safetensors")
    with pytest.raises(ft.MismatchError, match="different brain"):
        ft.Monitor.from_bytes(data, other)
    with pytest.raises(ft.DataError, match="monitor state bytes"):
        ft.Monitor.from_bytes(b"not a state", brain)
    with pytest.raises(ft.MismatchError, match="1 layers, the reference features have 3"):
        mon.observe(20, ft.Features([np.zeros((3, 8, 2, 2), np.float32)]))
    assert len(mon.history) == 2


def test_missing_library_is_a_clear_error(tmp_path):
    env = dict(os.environ, FACTORTOPY_LIB=str(tmp_path / "nowhere.so"))
    code = "import factortopy as ft\ntry:\n    ft.library_version()\nexcept ft.LibraryNotFoundError as e:\n    print('ERR', e)\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "ERR FACTORTOPY_LIB=" in out and "nowhere.so" in out
    assert ft.library_version() == ft.__version__


def test_without_a_library_anywhere_the_error_lists_where_it_looked(tmp_path):
    import shutil
    from pathlib import Path

    pkg = Path(ft.__file__).parent
    shutil.copytree(pkg, tmp_path / "factortopy", ignore=shutil.ignore_patterns("*.so", "*.dylib", "*.dll", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("FACTORTOPY_LIB", "CARGO_TARGET_DIR")}
    env["PYTHONPATH"] = str(tmp_path)
    code = "import factortopy as ft\ntry:\n    ft.library_version()\nexcept ft.LibraryNotFoundError as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "could not find its shared library" in out, out
    assert str(tmp_path / "factortopy") in out and "cargo build --release" in out, out
