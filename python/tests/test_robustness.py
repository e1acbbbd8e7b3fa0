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
