"""The engine through Python: a device on every call that fits, predicts or observes,
the one-line refusal of a device this build cannot use, ``predict``, DLPack 1.x capsules, and the
callbacks' default device."""

import numpy as np
import pytest

import factortopy as ft
from factortopy import _tensors
from factortopy.callbacks._driver import monitor_device

# A CUDA device this test machine cannot use: any ordinal in a CPU-only build (CI), an absurd
# one otherwise.
UNUSABLE = "cuda:0" if not ft.device_available("cuda:0") else "cuda:1000000"


def test_devices_are_checked_before_any_work(features, brain, fast, tmp_path):
    assert ft.device_available("cpu")
    assert not ft.device_available(UNUSABLE)
    with pytest.raises(ft.BackendError, match="cuda"):
        ft.fit(features, brain, fast, device=UNUSABLE)
    with pytest.raises(ft.BackendError, match="cuda"):
        ft.Monitor(brain, features, ft.MonitorOptions(fast), device=UNUSABLE)
    with pytest.raises(ft.BackendError, match="cuda"):
        ft.rank([features], brain, fast, device=UNUSABLE)
    with pytest.raises(ft.InvalidArgumentError):
        ft.fit(features, brain, fast, device="gpu")
    opts = ft.FitOptions.preset("fast", device="cpu")
    assert opts.device == "cpu" and opts.as_dict()["device"] == "cpu"


def test_predict_from_a_fit_and_from_its_saved_encoder(features, brain, fast, tmp_path):
    result = ft.fit(features, brain, fast)
    pred = result.predict(features)
    n, v = features.n_images, result.summary["n_voxels"]
    assert pred.shape == (n, v) and pred.dtype == np.float32 and np.isfinite(pred).all()
    path = tmp_path / "encoder.safetensors"
    result.save_encoder(path)
    np.testing.assert_array_equal(ft.predict(path, features), pred)
    with pytest.raises(ft.BackendError):
        ft.predict(path, features, device=UNUSABLE)
    with pytest.raises(ft.BackendError):
        result.predict(features, device=UNUSABLE)
    # The saved encoder scored on its held-out images gives the fit's report.
    assert ft.score(path, features, brain, device="cpu").summary == result.summary


def test_torch_devices_name_devices():
    torch = pytest.importorskip("torch")
    assert ft.fitting.device_name(torch.device("cpu")) == "cpu"
    assert ft.fitting.device_name(torch.device("cuda", 1)) == "cuda:1"
    assert ft.fitting.device_name(torch.device("cuda")) == "cuda:0"
    model = torch.nn.Linear(2, 2)
    assert monitor_device(model) == "cpu"


def test_dlpack_1_capsules_are_read(rng):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(rng.standard_normal((6, 4, 3, 3)).astype(np.float32))
    try:
        capsule = x.__dlpack__(max_version=(1, 0))
    except TypeError:
        pytest.skip("this torch exports DLPack 0.x only")
    assert _tensors._capsule_name(capsule) == b"dltensor_versioned"
    borrowed = _tensors.borrow_features(x)
    # The DLTensor inside the versioned struct points at the tensor's own memory.
    assert borrowed.ptr.contents.data == x.data_ptr()
    feats = ft.Features([(x, None)])
    np.testing.assert_array_equal(feats.layer(0)[0], x.numpy())
