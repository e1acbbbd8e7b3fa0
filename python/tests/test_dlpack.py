"""Features go into the library without a copy on the Python side: the C function receives the
caller's own data pointer (spied on at the ctypes boundary), with strides for non-contiguous views
and the caller's dtype (f16/bf16 kept)."""

import ctypes

import numpy as np
import pytest
import torch

import factortopy as ft
from factortopy import _lib


@pytest.fixture()
def seen(monkeypatch):
    """Records (data pointer, dtype bits, strides) of every local map the library receives."""
    lib = _lib.lib()
    real = lib.ft_features_add_layer_dlpack
    calls = []

    def spy(handle, local, global_):
        t = local.contents
        strides = None if not t.strides else [t.strides[i] for i in range(t.ndim)]
        calls.append((t.data + t.byte_offset, t.dtype.bits, t.dtype.code, strides))
        return real(handle, local, global_)

    monkeypatch.setattr(lib, "ft_features_add_layer_dlpack", spy)
    return calls


def test_torch_tensors_are_read_in_place(seen):
    x = torch.randn(4, 6, 5, 3)
    f = ft.Features([x])
    assert seen[0][0] == x.data_ptr()
    np.testing.assert_array_equal(f.layer(0)[0], x.numpy())


def test_strided_views_are_not_made_contiguous(seen):
    base = torch.randn(4, 5, 6, 3)
    view = base.permute(0, 3, 2, 1)[:, :, 1:5, ::2]  # [4, 3, 4, 3], non-contiguous
    assert not view.is_contiguous()
    f = ft.Features([view])
    assert seen[0][0] == view.data_ptr()
    assert seen[0][3] == list(view.stride())
    np.testing.assert_array_equal(f.layer(0)[0], view.contiguous().numpy())


def test_half_precision_is_passed_as_is(seen):
    x = torch.randn(3, 2, 4, 4)
    f = ft.Features([x.to(torch.bfloat16), x.to(torch.float16)])
    assert [(bits, code) for _, bits, code, _ in seen] == [(16, 4), (16, 2)]
    np.testing.assert_array_equal(f.layer(0)[0], x.to(torch.bfloat16).float().numpy())
    np.testing.assert_array_equal(f.layer(1)[0], x.to(torch.float16).float().numpy())


def test_numpy_arrays_including_read_only_are_read_in_place(seen):
    a = np.random.default_rng(0).normal(size=(3, 4, 2, 2)).astype(np.float32)
    a.setflags(write=False)
    ft.Features([a[:, ::2]])
    assert seen[0][0] == a[:, ::2].ctypes.data
    assert seen[0][3] == [s // 4 for s in a[:, ::2].strides]


def test_tensors_requiring_grad_are_detached_not_copied(seen):
    w = torch.randn(2, 3, 2, 2, requires_grad=True)
    f = ft.Features([w])
    assert seen[0][0] == w.data_ptr()
    assert w.requires_grad and f.n_layers == 1


def test_the_callers_tensor_outlives_the_borrow():
    x = torch.randn(2, 3, 2, 2)
    before = x.clone()
    for _ in range(50):
        ft.Features([x, x[:, :2]])
    assert torch.equal(x, before)


def test_device_memory_is_a_clear_error():
    # A DLTensor that claims to live on a CUDA device (kDLCUDA = 2): rejected before any read.
    shape = (ctypes.c_int64 * 4)(1, 1, 1, 1)
    t = _lib.DLTensor(
        data=ctypes.c_void_p(0x1000),
        device=_lib.DLDevice(2, 0),
        ndim=4,
        dtype=_lib.DLDataType(2, 32, 1),
        shape=shape,
        strides=None,
        byte_offset=0,
    )
    f = ft.Features()
    with pytest.raises(ft.DeviceError, match="CUDA"):
        _lib.call("ft_features_add_layer_dlpack", f.handle, ctypes.byref(t), None)
    assert f.n_layers == 0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * ctypes.sizeof(ctypes.c_void_p) * 512  # pages of 4 KiB


def test_16_bit_tensors_stay_16_bit_in_the_library():
    # 64 MiB of bf16: kept as f32 it would take 128 MiB of the library's memory.
    x = torch.randn(2048, 256, 8, 8).to(torch.bfloat16)
    nbytes = x.numel() * x.element_size()
    before = _rss_bytes()
    f = ft.Features([x])
    grew = _rss_bytes() - before
    assert grew < 1.4 * nbytes, f"the library took {grew / 2**20:.0f} MiB for {nbytes / 2**20:.0f} MiB of bf16"
    np.testing.assert_array_equal(f.layer(0)[0][:2], x[:2].float().numpy())


def test_an_opened_file_fits_as_the_loaded_file_does(tmp_path):
    rng = np.random.default_rng(3)
    layers = [rng.standard_normal((60, 8, 4, 4)).astype(np.float16) for _ in range(2)]
    path = tmp_path / "features.safetensors"
    ft.Features(layers, model="toy").save(path)
    brain = ft.synth.plant(ft.Features.load(path), n_voxels=80, grid=4, seed=1)
    opened, loaded = ft.Features.open(path), ft.Features.load(path)
    assert opened.shape == loaded.shape == (60, 2)
    for l in range(2):
        np.testing.assert_array_equal(opened.layer(l)[0], loaded.layer(l)[0])
    fast = ft.FitOptions.preset("fast", grid=4, d=8, max_epochs=2)
    a = ft.fit(opened, brain, fast).report
    b = ft.fit(loaded, brain, fast).report
    assert a["hierarchy"] == b["hierarchy"] and a["r2"] == b["r2"]
