"""The engine on a CUDA device through Python: fit, score and predict with ``device="cuda:0"``
give the CPU's results. Runs where ``ft.device_available("cuda:0")``: a real GPU, or (in CI)
factortopy's CPU emulator of one, with ``FACTORTOPY_LIB`` pointing at a ``--features cuda`` build
and ``LD_LIBRARY_PATH`` at the emulator (scripts/cuda-emu, docs/gpu.md). Needs only numpy."""

import numpy as np
import pytest

import factortopy as ft

CUDA = "cuda:0"

pytestmark = pytest.mark.skipif(
    not ft.device_available(CUDA), reason="no usable CUDA device (a --features cuda build and a GPU or the emulator)"
)


def test_fit_score_and_predict_on_cuda_match_the_cpu(features, brain, tmp_path):
    opts = ft.FitOptions.preset("fast", grid=3, d=8, max_epochs=8, lr=3e-3, batch_size=16, reg_steps=30)
    gpu = ft.fit(features, brain, opts, device=CUDA)
    cpu = ft.fit(features, brain, opts, device="cpu")
    assert abs(gpu.summary["r2_mean"] - cpu.summary["r2_mean"]) < 1e-3, (gpu.summary, cpu.summary)
    np.testing.assert_allclose(cpu.predict(features, device=CUDA), cpu.predict(features), rtol=0, atol=1e-4)
    path = tmp_path / "encoder.safetensors"
    cpu.save_encoder(path)
    scored = ft.score(path, features, brain, device=CUDA).summary
    assert abs(scored["r2_mean"] - cpu.summary["r2_mean"]) < 1e-4
    np.testing.assert_allclose(ft.predict(path, features, device=CUDA), cpu.predict(features), rtol=0, atol=1e-4)


def test_a_monitor_fits_and_observes_on_cuda(features, brain, fast):
    # The reference fit runs on the device (the fast preset's fit is too chaotic to compare with the
    # CPU's voxel for voxel; tests/gpu_monitor.rs does that at a stable setting).
    on_gpu = ft.Monitor(brain, features, ft.MonitorOptions(fast), device=CUDA)
    report = on_gpu.observe(0, features)
    assert report.summary["retention"] == 1.0


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """f32 values rounded to the nearest bf16 (ties to even), as the bf16 bit patterns."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def _rounded(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` rounded to ``dtype`` ("f32", "f16", "bf16"), as f32: the values a layer of that
    precision holds."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "f16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        return (_bf16_bits(x).astype(np.uint32) << 16).view(np.float32)
    return x


class _DeviceArray:
    """An array in CUDA memory, allocated and filled through the driver the library uses (the
    emulated one in CI), exported with ``__dlpack__`` as a CUDA tensor: what a framework's CUDA
    activations look like to the library. f32 by default, or f16 or bf16 (the values rounded to
    nearest); ``channels_last`` lays a ``[N, C, H, W]`` map out as ``[N, H, W, C]`` in memory and
    describes it with strides, as a channels-last framework tensor."""

    def __init__(self, driver, host: np.ndarray, dtype: str = "f32", channels_last: bool = False):
        import ctypes

        from factortopy._lib import DLDataType, DLDevice, DLTensor

        shape = np.shape(host)
        if channels_last:
            host = np.transpose(host, (0, 2, 3, 1))
        host = np.ascontiguousarray(host, dtype=np.float32)
        data = {"f32": host, "f16": host.astype(np.float16), "bf16": _bf16_bits(host)}[dtype]
        self._driver = driver
        self._ptr = ctypes.c_uint64()
        assert driver.cuMemAlloc_v2(ctypes.byref(self._ptr), ctypes.c_size_t(data.nbytes)) == 0
        assert driver.cuMemcpyHtoD_v2(self._ptr, data.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(data.nbytes)) == 0
        self._shape = (ctypes.c_int64 * len(shape))(*shape)
        self._strides = None
        if channels_last:
            n, c, h, w = shape
            self._strides = (ctypes.c_int64 * 4)(h * w * c, 1, w * c, c)

        class Managed(ctypes.Structure):
            _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]

        code, bits = {"f32": (2, 32), "f16": (2, 16), "bf16": (4, 16)}[dtype]
        self._managed = Managed(
            DLTensor(
                ctypes.c_void_p(self._ptr.value), DLDevice(2, 0), len(shape), DLDataType(code, bits, 1), self._shape, self._strides, 0
            ),
            None,
            None,
        )

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA, device 0

    def __dlpack__(self, **_kwargs):
        import ctypes

        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(self._managed), b"dltensor", None)

    def __del__(self):
        self._driver.cuMemFree_v2(self._ptr)


def _driver():
    """The CUDA driver already loaded by the library, with the device's primary context current."""
    import ctypes

    driver = ctypes.CDLL("libcuda.so.1")
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    assert driver.cuInit(0) == 0
    assert driver.cuDeviceGet(ctypes.byref(dev), 0) == 0
    assert driver.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
    assert driver.cuCtxSetCurrent(ctx) == 0
    driver.cuMemcpyHtoD_v2.argtypes = [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t]
    driver.cuMemFree_v2.argtypes = [ctypes.c_uint64]
    return driver


def _device_to_host_bytes(driver):
    """Bytes the emulated driver has copied device to host so far (None on a real driver)."""
    import ctypes

    try:
        stats = driver.cuda_emu_stats
    except AttributeError:
        return None
    out = (ctypes.c_uint64 * 4)()
    stats(out)
    return out[1]


def _step_stays_on_the_device(monitor, driver, on_host, on_device, layers):
    """A monitor step on the CUDA features ``on_device`` gives the report of one on the host
    features ``on_host``, and copies less than a quarter of the ``layers``' local maps' bytes to
    the host (counted by the emulated driver)."""
    want = monitor.observe(1, on_host)
    before = _device_to_host_bytes(driver)
    got = monitor.observe(2, on_device)
    after = _device_to_host_bytes(driver)
    if before is not None:
        local_bytes = sum(np.asarray(local).size * 4 for local, _ in layers)
        assert after - before < local_bytes // 4, (after - before, local_bytes)
    assert abs(got.summary["retention"] - want.summary["retention"]) < 1e-4, (got.summary, want.summary)
    np.testing.assert_allclose(got.cka, want.cka, rtol=0, atol=1e-5)


def test_a_monitor_step_on_cuda_tensors_stays_on_the_device(features, brain, fast):
    # A training framework's CUDA activations given as the features of a monitor step on the same
    # device: the same report as the host arrays, and the local maps never come to the host.
    monitor = ft.Monitor(brain, features, ft.MonitorOptions(fast), device=CUDA)
    driver = _driver()
    layers = [features.layer(i) for i in range(features.n_layers)]
    on_device = ft.Features()
    for local, glob in layers:
        tensors = [_DeviceArray(driver, local), None if glob is None else _DeviceArray(driver, glob)]
        on_device.add_layer(*tensors)
        # The library keeps its own copy: the caller's device memory is freed now.
        del tensors
    _step_stays_on_the_device(monitor, driver, features, on_device, layers)



def test_collected_cuda_layers_go_to_the_library_as_cuda_tensors(features, brain, fast, monkeypatch):
    # What collect(keep_on_device=True) hands to_features on a CUDA model: each layer's tensors in
    # CUDA memory, here f32, f16 and channels-last bf16. They reach the library as CUDA tensors
    # (the device check passes, and the monitor step on the device brings no local map to the
    # host), each layer's tensors are freed once the library has its copy, and the library holds
    # the collected values. hooks.to_features is this function; it imports no torch, which cannot
    # make tensors on the emulated device.
    import weakref

    from factortopy._collected import to_features

    monitor = ft.Monitor(brain, features, ft.MonitorOptions(fast), device=CUDA)
    driver = _driver()
    layers = [features.layer(i) for i in range(features.n_layers)]
    kinds = [("f32", False), ("f16", False), ("bf16", True)][: len(layers)]
    assert len(kinds) == len(layers) == 3
    rounded = [(_rounded(l, d), None if g is None else _rounded(g, d)) for (l, g), (d, _) in zip(layers, kinds)]
    collected = [
        (f"layer{i}", _DeviceArray(driver, l, d, cl), None if g is None else _DeviceArray(driver, g, d))
        for i, ((l, g), (d, cl)) in enumerate(zip(layers, kinds))
    ]
    refs = [[weakref.ref(t) for t in (l, g) if t is not None] for _, l, g in collected]
    add, alive = ft.Features.add_layer, []

    def counting(self, local, global_=None):
        alive.append([any(r() is not None for r in layer) for layer in refs])
        return add(self, local, global_)

    monkeypatch.setattr(ft.Features, "add_layer", counting)
    on_device = to_features(collected, "net")
    monkeypatch.undo()
    assert collected == [] and alive == [[True, True, True], [False, True, True], [False, False, True]]
    assert not any(r() is not None for layer in refs for r in layer)

    _step_stays_on_the_device(monitor, driver, ft.Features(rounded), on_device, layers)
    for i, (local, glob) in enumerate(rounded):
        got_local, got_glob = on_device.layer(i)
        np.testing.assert_array_equal(got_local, local)
        if glob is not None:
            np.testing.assert_array_equal(got_glob, glob)
