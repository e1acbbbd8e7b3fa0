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
