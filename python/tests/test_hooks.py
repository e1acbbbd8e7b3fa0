"""Feature collection with forward hooks: ViT-like token outputs become square maps plus a CLS
global token, CNN maps stay as they are, and the model's modes and gradients are left alone;
resizing to the fit grid as batches arrive gives what the library computes from full maps, and
bounds host memory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import factortopy as ft
from factortopy.hooks import collect, collect_features, prefix_token_count, to_grid, to_layer


class TinyViT(nn.Module):
    """Patch embedding (4×4 patches of a 16×16 image: 16 tokens), a CLS token, two blocks."""

    def __init__(self, dim=12, prefix=1):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, prefix, dim))
        self.blocks = nn.ModuleList([nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.Dropout(0.5)) for _ in range(2)])
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1)
        for b in self.blocks:
            t = t + b(t)
        return self.head(t[:, 0])


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_vit_tokens_become_a_grid_and_a_cls_token():
    torch.manual_seed(0)
    m = TinyViT()
    x = torch.randn(10, 3, 16, 16)
    got = collect(m, x, ["blocks.0", "blocks.1"], batch_size=4)
    assert [(n, tuple(l.shape), tuple(g.shape)) for n, l, g in got] == [
        ("blocks.0", (10, 12, 4, 4), (10, 12)),
        ("blocks.1", (10, 12, 4, 4), (10, 12)),
    ]
    # Independent computation of block 0's output: token k+1 is patch (k // 4, k % 4).
    m.eval()
    with torch.no_grad():
        t = m.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([m.cls.expand(10, -1, -1), t], dim=1)
        out0 = m.blocks[0](t)
    _, local, glob = got[0]
    torch.testing.assert_close(glob, out0[:, 0])
    torch.testing.assert_close(local[:, :, 2, 1], out0[:, 1 + 2 * 4 + 1])
    feats = collect_features(m, x, {"early": "blocks.0", "late": m.blocks[1]}, model_name="tiny-vit")
    assert feats.shape == (10, 2)
    np.testing.assert_allclose(feats.layer(0)[1], glob.numpy(), rtol=1e-6)


def test_cnn_maps_are_kept_and_pooled_vectors_become_1x1():
    torch.manual_seed(0)
    m = TinyCNN()
    x = torch.randn(7, 3, 12, 12)
    got = collect(m, x, ["features.2", "features.4", "pool"], batch_size=3)
    shapes = [(tuple(l.shape), None if g is None else tuple(g.shape)) for _, l, g in got]
    assert shapes == [((7, 8, 12, 12), None), ((7, 16, 6, 6), None), ((7, 16, 1, 1), None)]
    pooled = collect(m, x, {"fc": "fc"})[0]
    assert tuple(pooled[1].shape) == (7, 4, 1, 1) and tuple(pooled[2].shape) == (7, 4)
    small = collect(m, x, ["features.2"], max_grid=4)[0][1]
    assert tuple(small.shape) == (7, 8, 4, 4)
    torch.testing.assert_close(small[:, :, 0, 0], got[0][1][:, :, :3, :3].mean(dim=(2, 3)))


def test_modes_are_restored_and_no_gradients_are_kept():
    m = TinyCNN()
    m.train()
    m.features[1].eval()  # a mixed state, e.g. frozen batch norm
    out = collect(m, torch.randn(4, 3, 8, 8), ["features.4"])
    assert m.training and m.features[0].training and not m.features[1].training
    assert not out[0][1].requires_grad
    assert all(len(mod._forward_hooks) == 0 for mod in m.modules())

    def boom(model, batch):
        assert not model.training and not torch.is_grad_enabled()
        raise RuntimeError("forward failed")

    with pytest.raises(RuntimeError, match="forward failed"):
        collect(m, torch.randn(4, 3, 8, 8), ["features.4"], forward=boom)
    assert m.training and not m.features[1].training
    assert all(len(mod._forward_hooks) == 0 for mod in m.modules())


def test_batches_from_a_loader_and_unknown_layers():
    m = TinyCNN()
    data = torch.randn(6, 3, 8, 8)
    loader = [(data[:4], torch.zeros(4)), (data[4:], torch.zeros(2))]
    a = collect(m, loader, ["features.4"])[0][1]
    b = collect(m, data, ["features.4"], batch_size=6)[0][1]
    torch.testing.assert_close(a, b)
    with pytest.raises(KeyError, match="no module named 'features.9'"):
        collect(m, data, ["features.9"])
    with pytest.raises(RuntimeError, match="never ran"):
        m.unused = nn.Linear(2, 2)
        collect(m, data, ["unused"])


def test_prefix_tokens():
    assert prefix_token_count(197) == 1  # ViT-B/16 at 224: CLS + 14×14
    assert prefix_token_count(198) == 2  # DeiT: CLS + distillation
    assert prefix_token_count(196) == 0  # no CLS (Swin stages, pooled ViTs)
    assert prefix_token_count(201) == 5  # CLS + 4 registers
    with pytest.raises(ValueError, match="not a square grid"):
        prefix_token_count(18, prefix_tokens=1)
    two = TinyViT(prefix=2)
    local, glob = to_layer(torch.randn(3, 18, 5))
    assert tuple(local.shape) == (3, 5, 4, 4) and tuple(glob.shape) == (3, 5)
    got = collect(two, torch.randn(2, 3, 16, 16), ["blocks.0"])[0]
    assert tuple(got[1].shape) == (2, 12, 4, 4)


def design_resize(x: np.ndarray, g: int) -> np.ndarray:
    """DESIGN §3.1 written out independently: bilinear, source = (dst + 0.5)·in/out − 0.5 clamped
    at 0, upper tap clamped at the last index, no antialiasing."""

    def taps(n_in):
        out = []
        for o in range(g):
            src = max((o + 0.5) * n_in / g - 0.5, 0.0)
            i0 = min(int(np.floor(src)), n_in - 1)
            out.append((i0, min(i0 + 1, n_in - 1), src - i0))
        return out

    h, w = x.shape[-2:]
    y = np.zeros(x.shape[:-2] + (g, g))
    for oy, (y0, y1, wy) in enumerate(taps(h)):
        for ox, (x0, x1, wx) in enumerate(taps(w)):
            top = x[..., y0, x0] * (1 - wx) + x[..., y0, x1] * wx
            bot = x[..., y1, x0] * (1 - wx) + x[..., y1, x1] * wx
            y[..., oy, ox] = top * (1 - wy) + bot * wy
    return y


def area_resize(x: np.ndarray, gh: int, gw: int) -> np.ndarray:
    """Exact area averages written out independently of the library: every pixel replicated into
    a gh×gw block of sub-pixels, then each output cell the plain mean of its h×w block of
    sub-pixels (no fractional weights), in f64."""
    h, w = x.shape[-2:]
    fine = np.repeat(np.repeat(x.astype(np.float64), gh, axis=-2), gw, axis=-1)  # [.., h·gh, w·gw]
    return fine.reshape(*x.shape[:-2], gh, h, gw, w).mean(axis=(-3, -1))


def test_grid_resizing_is_the_encoders_rule():
    x = torch.randn(3, 5, 13, 9, dtype=torch.float64)  # down along H, up along W
    small, glob = to_grid(x.float(), None, 8, resample="bilinear")
    np.testing.assert_allclose(small.numpy(), design_resize(x.numpy(), 8), rtol=0, atol=2e-6)
    np.testing.assert_allclose(glob.numpy(), x.mean(dim=(2, 3)).numpy(), rtol=0, atol=2e-6)
    area, _ = to_grid(x.float(), None, 8, resample="area")
    np.testing.assert_allclose(area.numpy(), area_resize(x.numpy(), 8, 8), rtol=0, atol=2e-6)
    # The default is the library's: auto, area along the shrinking axis (13 → 8), bilinear along
    # the growing one (9 → 8 shrinks too here; 5 → 8 below grows).
    auto, _ = to_grid(x.float(), None, 8)
    np.testing.assert_array_equal(auto.numpy(), area.numpy())
    mixed = torch.randn(2, 3, 13, 5)
    got = to_grid(mixed, None, 8)[0].numpy()
    rows_area = area_resize(mixed.numpy(), 8, 5)  # H by area; W kept, then bilinear 5 → 8
    np.testing.assert_allclose(got, design_resize_axis(rows_area, 8, axis=-1), rtol=0, atol=2e-6)
    # The library's own function, bit for bit.
    for rule in ft.resampling.RULES:
        np.testing.assert_array_equal(to_grid(x.float(), None, 8, rule)[0].numpy(), ft.resampling.resample(x.numpy(), 8, rule))
    cls = torch.randn(3, 5)
    assert to_grid(x.float(), cls, 8)[1] is cls
    tiny = torch.randn(2, 4, 3, 3)  # smaller than the grid: left for the library to resize
    same, none = to_grid(tiny, None, 8)
    assert same is tiny and none is None
    with pytest.raises(ft.InvalidArgumentError, match="nearest"):
        to_grid(x.float(), None, 8, resample="nearest")
    with pytest.raises(ft.DataError):
        ft.resampling.resample(np.full((1, 1, 4, 4), np.nan, dtype=np.float32), 2)


def design_resize_axis(x: np.ndarray, g: int, axis: int) -> np.ndarray:
    """DESIGN §3.1's bilinear taps along one axis only."""
    x = np.moveaxis(x, axis, -1)
    n_in = x.shape[-1]
    out = np.zeros(x.shape[:-1] + (g,))
    for o in range(g):
        src = max((o + 0.5) * n_in / g - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1, wt = min(i0 + 1, n_in - 1), src - i0
        out[..., o] = x[..., i0] * (1 - wt) + x[..., i1] * wt
    return np.moveaxis(out, -1, axis)


def test_grid_resized_features_score_as_the_full_maps(tmp_path):
    """The library given maps already resized to its grid by `to_grid` with the encoder's rule
    (the default `auto` here, the fast preset's) and their full-resolution means as global tokens
    predicts exactly as from the full maps, up to f32 rounding of the means: a fitted encoder
    scores the same on both."""
    from factortopy.callbacks._driver import MonitorDriver, encoder_resample

    g = torch.Generator().manual_seed(3)
    full = [torch.nn.functional.avg_pool2d(torch.randn(200, 8, s, s, generator=g), 3, 1, 1) * 3 for s in (14, 11, 7)]
    feats_full = ft.Features(full)
    brain = ft.synth.plant(feats_full, n_voxels=60, grid=4, noise_ceiling=0.9, seed=1)
    resized = ft.Features([to_grid(m, None, 4) for m in full])
    options = ft.FitOptions.preset("fast", grid=4, d=8, max_epochs=30)
    assert options.resample == "auto"
    fitted = ft.fit(feats_full, brain, options)
    assert fitted.summary["r2_mean"] > 0.4  # the encoder reads the maps
    enc = tmp_path / "enc.safetensors"
    fitted.save_encoder(enc)
    a = ft.score(enc, feats_full, brain).report
    b = ft.score(enc, resized, brain).report
    assert a["r2"]["mean"] == pytest.approx(fitted.summary["r2_mean"], abs=1e-6)
    for k in ("r2", "pearson"):
        for stat in ("mean", "median"):
            assert b[k][stat] == pytest.approx(a[k][stat], abs=1e-6), (k, stat)
    # Resizing by another rule (DESIGN's bilinear, what `to_grid` did before it followed the
    # encoder) changes the predictions far more than f32 rounding.
    other = ft.Features([to_grid(m, None, 4, resample="bilinear") for m in full])
    c = ft.score(enc, other, brain).report
    assert abs(a["r2"]["mean"] - c["r2"]["mean"]) > 1e-3
    # The monitor callbacks resize probe features with the encoder's grid and rule.
    assert encoder_resample(enc) == "auto"
    opts = MonitorDriver(brain, None, ["x"], encoder_path=enc).collect_options()
    assert (opts["grid"], opts["resample"]) == (4, "auto")
    design = ft.MonitorOptions(fit=ft.FitOptions.preset("design", grid=5))
    opts = MonitorDriver(brain, None, ["x"], options=design).collect_options()
    assert (opts["grid"], opts["resample"]) == (5, "bilinear")
    assert MonitorDriver(brain, None, ["x"]).collect_options()["resample"] == "auto"
    opts = MonitorDriver(brain, None, ["x"], options=design, collect_kwargs={"resample": "area"}).collect_options()
    assert opts["resample"] == "area"  # the caller's choice wins


def test_max_grid_through_a_multiple_of_the_grid_is_the_encoders_area():
    """Shrinking with `max_grid` first (area, or auto, which shrinks by area) and resizing to the
    grid afterwards equals resizing once when the grid divides max_grid: every grid cell is the
    union of whole max_grid cells. Not so for other max_grid values, nor for bilinear."""
    torch.manual_seed(0)
    m = TinyCNN()
    x = torch.randn(5, 3, 26, 26)  # features.2 is 26×26, features.4 13×13
    layers = ["features.2", "features.4"]
    once = collect(m, x, layers, grid=4)
    for rule in ("auto", "area"):
        twice = collect(m, x, layers, max_grid=8, grid=4, resample=rule)
        for (_, a, ga), (_, b, gb) in zip(once, twice):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=1e-5)
        # max_grid alone hands the library maps that it resizes to the same cells.
        pre = collect(m, x, layers, max_grid=8, resample=rule)
        for (_, a, _), (_, p, _) in zip(once, pre):
            assert tuple(p.shape[-2:]) == (8, 8)
            np.testing.assert_allclose(ft.resampling.resample(p.numpy(), 4, rule), a.numpy(), rtol=0, atol=1e-5)
    off = collect(m, x, layers, max_grid=6, grid=4)  # 4 does not divide 6
    assert max(float((a - b).abs().max()) for (_, a, _), (_, b, _) in zip(once, off)) > 1e-3
    bil_once = collect(m, x, layers, grid=4, resample="bilinear")
    bil_twice = collect(m, x, layers, max_grid=8, grid=4, resample="bilinear")
    assert max(float((a - b).abs().max()) for (_, a, _), (_, b, _) in zip(bil_once, bil_twice)) > 1e-3
    with pytest.raises(ValueError, match="max_grid must be at least 1"):
        collect(m, x, layers, max_grid=0)
    with pytest.raises(ValueError, match="nearest"):
        collect(m, x, layers, grid=4, resample="nearest")


def test_collect_with_grid_and_dtype():
    torch.manual_seed(0)
    vit, cnn = TinyViT(), TinyCNN()
    x = torch.randn(6, 3, 16, 16)
    got = collect(vit, x, ["blocks.0"], grid=2, dtype=torch.bfloat16, batch_size=4)[0]
    full = collect(vit, x, ["blocks.0"])[0]
    assert got[1].dtype == torch.bfloat16 and tuple(got[1].shape) == (6, 12, 2, 2)
    # 4×4 → 2×2 is the mean of each 2×2 block (src = 0.5, 2.5); the CLS token is kept.
    torch.testing.assert_close(got[1].float(), torch.nn.functional.avg_pool2d(full[1], 2), atol=2e-2, rtol=1e-2)
    torch.testing.assert_close(got[2].float(), full[2], atol=2e-2, rtol=1e-2)
    maps = collect(cnn, x, ["features.2"], grid=4)[0]
    whole = collect(cnn, x, ["features.2"])[0]
    assert tuple(maps[1].shape) == (6, 8, 4, 4) and maps[1].dtype == torch.float32
    torch.testing.assert_close(maps[2], whole[1].mean(dim=(2, 3)))
    with pytest.raises(ValueError, match="grid must be at least 1"):
        collect(cnn, x, ["features.2"], grid=0)


def test_wrapped_models_resolve_unwrapped_names():
    cnn = TinyCNN()
    wrapper = nn.Module()
    wrapper.module = cnn  # as DDP names it
    x = torch.randn(2, 3, 8, 8)
    a = collect(cnn, x, ["features.4"])[0][1]
    b = collect(wrapper, x, ["features.4"], forward=lambda m, batch: m.module(batch))[0][1]
    torch.testing.assert_close(a, b)


def measure(mode: str, *sizes: int) -> dict:
    script = Path(__file__).with_name("collect_memory.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(script), *map(str, sizes), mode], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_resizing_as_batches_arrive_bounds_host_memory():
    """Peak resident memory of collecting 240 images × 4 layers of ViT-like tokens (196 patches,
    width 256), f32 tokens kept whole vs resized to the 8×8 grid in bf16 batch by batch, and of
    the whole path into the library (which keeps its own f32 copy)."""
    sizes = (240, 4, 256, 197)
    full, grid = measure("full", *sizes), measure("grid", *sizes)
    mib = 2**20
    print(
        f"collect: full {full['collect_growth'] / mib:.0f} MiB (tensors {full['kept'] / mib:.0f}), "
        f"grid {grid['collect_growth'] / mib:.0f} MiB (tensors {grid['kept'] / mib:.0f}); into the library: "
        f"full {full['total_growth'] / mib:.0f} MiB, grid {grid['total_growth'] / mib:.0f} MiB"
    )
    # The full-resolution f32 tokens themselves show up in the measurement ...
    assert full["collect_growth"] > 0.9 * full["kept"], full
    # ... resizing as batches arrive keeps a small fraction of them, ...
    assert full["kept"] == 4 * 240 * 256 * (196 + 1) * 4 and grid["kept"] == 4 * 240 * 256 * (64 + 1) * 2
    assert grid["collect_growth"] < 0.4 * full["collect_growth"], (full, grid)
    # ... and the library's copy (f32, at the grid) stays well under the full-resolution one.
    assert grid["total_growth"] < 0.5 * full["total_growth"], (full, grid)
