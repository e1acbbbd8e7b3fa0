"""Bad input from Python: values outside the C types' range raise instead of wrapping, options the
library would misuse are refused, sizes past memory give an error (not a dead interpreter), and
undefined scores come back as None."""

import math

import numpy as np
import pytest

import factortopy as ft


@pytest.mark.parametrize(
    "field,value",
    [("max_epochs", -1), ("d", 2**32), ("batch_size", -8), ("seed", -1), ("grid", 1.5), ("patience", True)],
)
def test_fit_options_out_of_c_range_raise(field, value):
    with pytest.raises(ft.InvalidArgumentError, match=field):
        ft.FitOptions(**{field: value})


def test_monitor_and_synth_options_out_of_range_raise(tmp_path):
    with pytest.raises(ft.InvalidArgumentError, match="refit_every"):
        ft.MonitorOptions(refit_every=-1)
    with pytest.raises(ft.InvalidArgumentError, match="n_voxels"):
        ft.synth.write(tmp_path, n_voxels=-5)


def test_nan_and_huge_options_are_refused_at_validation(features, brain):
    with pytest.raises(ft.InvalidArgumentError, match="val_fraction"):
        ft.fit(features, brain, val_fraction=math.nan)
    with pytest.raises(ft.InvalidArgumentError, match="lr"):
        ft.fit(features, brain, lr=math.nan)
    with pytest.raises(ft.InvalidArgumentError, match="grid"):
        ft.fit(features, brain, grid=4_000_000_000)


def test_roi_labels_above_int32_raise(rng):
    roi = np.array([0, 2**31 + 1, 0, 0], dtype=np.int64)
    with pytest.raises(ft.InvalidArgumentError, match="int32"):
        ft.Brain(rng.normal(size=(6, 4)), rng.normal(size=(4, 3)), roi, ["V1"])


def test_synth_sizes_past_memory_are_an_error_not_an_abort(tmp_path):
    with pytest.raises(ft.InvalidArgumentError, match="elements"):
        ft.synth.write(tmp_path / "x", n_voxels=2**40, n_images=2**20)
    assert not (tmp_path / "x" / "brain.safetensors").exists()


def test_zero_stride_view_past_memory_is_a_shape_error():
    # 2**20 x 2**20 x 16 elements from one float: refused before the copy allocates.
    x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(2**20, 2**20, 4, 4), strides=(0, 0, 0, 0))
    with pytest.raises(ft.ShapeError, match="elements"):
        ft.Features([x], model="zero-stride")


def test_resample_sizes_are_checked_and_a_tall_output_costs_only_itself():
    one = np.ones((1, 1, 1, 1), dtype=np.float32)
    # A legitimate 256 MiB output: one pixel to 2**26 × 1 by area is that pixel everywhere.
    tall = ft.resampling.resample(one * 3.0, (2**26, 1), "area")
    assert tall.shape == (1, 1, 2**26, 1) and tall.min() == 3.0 and tall.max() == 3.0
    del tall
    for size, needle in [((0, 0), "positive"), ((-1, 4), "output height"), ((4, 2**64), "output width"),
                         ((2.5, 4), "output height"), ((2**40, 1), "at most")]:
        with pytest.raises(ft.InvalidArgumentError, match=needle):
            ft.resampling.resample(one, size)
    # No maps: still a size the library refuses.
    with pytest.raises(ft.InvalidArgumentError, match="at most"):
        ft.resampling.resample(np.ones((0, 1, 1, 1), dtype=np.float32), (2**40, 1))


def test_plot_integers_are_range_checked_before_ctypes_narrows_them(tmp_path, brain):
    # 2**32 + 800 would reach C as 800 and 2**32 + 3 groups as 3: refused first, by name.
    for kwargs, needle in [({"size": (2**32 + 800, 600)}, "size width"), ({"size": (800, -600)}, "size height"),
                           ({"groups": 2**32 + 3}, "groups"), ({"size": (800.5, 600)}, "size width"),
                           ({"groups": 0}, "positive"), ({"size": (800,)}, "width, height")]:
        with pytest.raises(ft.InvalidArgumentError, match=needle):
            ft.plot(tmp_path, brain, **kwargs)


def test_one_monitor_used_from_two_threads_waits_instead_of_racing(features, brain, fast):
    import threading

    mon = ft.Monitor(brain, features, ft.MonitorOptions(fast))
    errors, steps = [], list(range(1, 7))

    def observe(mine):
        try:
            for step in mine:
                mon.observe(step, features)
                assert isinstance(mon.history, list)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=observe, args=(steps[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r["step"] for r in mon.history) == steps
    assert issubclass(ft.BusyError, ft.FactortopyError) and ft.BusyError.status == "FT_ERR_BUSY"
