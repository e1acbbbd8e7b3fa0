#!/usr/bin/env python3
"""Part of scripts/gpu_check.sh: `observe` on features given as CUDA torch tensors (DLPack, copied
to the host once by a CUDA build of the library) equals `observe` on the same features as numpy
arrays, and a monitor on cuda:0 agrees with one on the CPU. Needs torch with CUDA and
FACTORTOPY_LIB pointing at a library built with `--features cuda`."""

import sys
import tempfile
import time

import numpy as np
import torch

import factortopy as ft


def main() -> int:
    assert torch.cuda.is_available(), "PyTorch sees no CUDA device"
    d = tempfile.mkdtemp()
    ft.synth.write(d, n_images=300, n_voxels=400, n_layers=4, width=16, grid=4, noise_ceiling=0.8, seed=11)
    brain = ft.Brain.load(f"{d}/brain.safetensors")
    ref = ft.Features.load(f"{d}/features.safetensors")
    layers = [ref.layer(i) for i in range(ref.n_layers)]
    opts = ft.MonitorOptions(ft.FitOptions.preset("fast", grid=4, d=16, max_epochs=8), held_out_fraction=0.2)
    t = time.time()
    on_gpu = ft.Monitor(brain, ref, opts, device="cuda:0")
    print(f"reference fit on cuda:0: {time.time() - t:.1f} s")
    path = f"{d}/encoder.safetensors"
    on_cpu = ft.Monitor(brain, ref, opts, device="cpu")
    rng = np.random.default_rng(0)
    worst = 0.0
    for step, sigma in enumerate([0.0, 0.5, 1.0]):
        noisy = [(loc + sigma * rng.standard_normal(loc.shape).astype(np.float32), glo) for loc, glo in layers]
        host = ft.Features(noisy)
        cuda = ft.Features(
            [(torch.from_numpy(loc).cuda(), None if glo is None else torch.from_numpy(glo).cuda()) for loc, glo in noisy]
        )
        for i in range(host.n_layers):
            np.testing.assert_array_equal(cuda.layer(i)[0], host.layer(i)[0])
        a = on_gpu.observe(step, cuda).summary
        b = on_gpu.observe(step, host).summary
        c = on_cpu.observe(step, host).summary
        print(f"sigma {sigma}: forgetting cuda-tensors {a['forgetting']:.6f} host {b['forgetting']:.6f} cpu-monitor {c['forgetting']:.6f}")
        assert a["forgetting"] == b["forgetting"], "CUDA tensors and host arrays give the same observation"
        worst = max(worst, abs(b["retention"] - c["retention"]))
    print(f"largest retention gap GPU vs CPU monitor: {worst:.2e}")
    del path
    return 0 if worst < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
