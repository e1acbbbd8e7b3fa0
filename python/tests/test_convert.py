"""The checkpoint converter: a PyTorch FactorTopy model written here from DESIGN §3
saves its state dict; ``factortopy.convert`` turns it into ``encoder.safetensors``; factortopy
must then predict what the PyTorch model predicts.

The brain's responses are the PyTorch model's own predictions, with each voxel's readout rescaled
so they are already z-scored (factortopy z-scores responses on load). factortopy's held-out R²
of the converted encoder is then 1 for every voxel exactly when its predictions equal PyTorch's
on whichever images it holds out; any misread name, layout, normalisation constant or sampling
convention shows up as R² well below 1. The selector outputs are compared on all voxels through
the report's per-ROI mean depth and mean scale.
"""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import factortopy as ft
from factortopy.convert import convert_checkpoint, coord_normalisation, read_safetensors, write_safetensors

N_FREQ = 32


def posenc(coords, cmin, cscale):
    """DESIGN §3.3: [V, 192], axis-major, then frequency, then (sin, cos)."""
    pos = (coords - torch.tensor(cmin, dtype=coords.dtype)) * cscale
    w = 1000.0 ** (-torch.arange(N_FREQ, dtype=coords.dtype) / N_FREQ)
    ang = pos[:, :, None] * w[None, None, :]  # [V, 3, F]
    return torch.stack([ang.sin(), ang.cos()], dim=-1).reshape(coords.shape[0], -1)


def selector_mlp(k):
    # Index 0 stands for the positional encoding, so the Linear layers are .1, .3 and .5 as in
    # DESIGN §3.7.
    return nn.Sequential(nn.Identity(), nn.Linear(192, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(),
                         nn.Linear(128, k, bias=False))


class FactorTopy(nn.Module):
    """DESIGN §3, written independently of factortopy's Rust code."""

    def __init__(self, widths, d, grid, n_voxels, cmin, cscale):
        super().__init__()
        self.grid, self.cmin, self.cscale = grid, cmin, cscale
        self.local_token_bottleneck = nn.ModuleList(nn.Conv2d(c, d, 1, bias=False) for c in widths)
        self.global_token_bottleneck = nn.ModuleList(nn.Linear(c, d, bias=False) for c in widths)
        self.space_selector_mlp = selector_mlp(2)
        self.layer_selector_mlp = selector_mlp(len(widths))
        self.scale_selector_mlp = selector_mlp(1)
        bound = 1.0 / math.sqrt(d)
        self.weight = nn.Parameter(torch.empty(n_voxels, d).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_voxels).uniform_(-bound, bound))
        # Random (not zero) last layers, so voxels choose different layers, places and scales.
        for mlp in (self.space_selector_mlp, self.layer_selector_mlp, self.scale_selector_mlp):
            nn.init.normal_(mlp[5].weight, std=0.6)

    def selectors(self, coords):
        pe = posenc(coords, self.cmin, self.cscale)
        space = torch.tanh(self.space_selector_mlp(pe))
        probs = torch.softmax(self.layer_selector_mlp(pe), dim=-1)
        scale = torch.sigmoid(self.scale_selector_mlp(pe))[:, 0]
        return space, probs, scale

    def forward(self, locals_, globals_, coords):
        space, probs, scale = self.selectors(coords)
        b, v = locals_[0].shape[0], coords.shape[0]
        # §3.4 sampling: grid_sample with align_corners=False and zero padding is exactly
        # ix = ((x + 1)·G − 1)/2 with zeros outside the map.
        grid = space[None, None, :, :].expand(b, 1, v, 2)
        u = 0
        z = 0
        for l, (loc, glo) in enumerate(zip(locals_, globals_)):
            # §3.1: bilinear resize to G×G, half-pixel centres, no antialiasing.
            loc = F.interpolate(loc, size=(self.grid, self.grid), mode="bilinear", align_corners=False, antialias=False)
            m = self.local_token_bottleneck[l](loc)  # [B, D, G, G]
            sampled = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, :, 0, :]
            u = u + probs[None, None, :, l] * sampled  # [B, D, V]
            g = self.global_token_bottleneck[l](glo)  # [B, D]
            z = z + probs[None, None, :, l] * g[:, :, None]
        f = (1 - scale)[None, None, :] * u + scale[None, None, :] * z  # [B, D, V]
        return (self.weight.T[None] * f).mean(dim=1) + self.bias[None]  # [B, V]


def make_case(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    n, v, d, grid = 48, 60, 16, 4
    widths = [6, 8, 5]
    sides = [8, 4, 4]  # layer 0 is resampled from 8×8 to the 4×4 grid
    locals_ = [rng.standard_normal((n, c, s, s)).astype(np.float32) for c, s in zip(widths, sides)]
    globals_ = [rng.standard_normal((n, c)).astype(np.float32) for c in widths]
    coords = rng.uniform(0, 30, size=(v, 3)).astype(np.float32)
    roi = np.repeat(np.arange(3, dtype=np.int32), v // 3)
    cmin, cscale = coord_normalisation(coords)
    model = FactorTopy(widths, d, grid, v, cmin, cscale).double()
    tl = [torch.from_numpy(a).double() for a in locals_]
    tg = [torch.from_numpy(a).double() for a in globals_]
    tc = torch.from_numpy(coords).double()
    with torch.no_grad():
        pred = model(tl, tg, tc)
        # Rescale each voxel's readout so the predictions are z-scored over the images.
        mean, std = pred.mean(0), pred.std(0, unbiased=False)
        model.weight.div_(std[:, None])
        model.bias.sub_(mean).div_(std)
        pred = model(tl, tg, tc)
        space, probs, scale = model.selectors(tc)
    assert torch.allclose(pred.mean(0), torch.zeros(v, dtype=torch.float64), atol=1e-9)
    features = ft.Features(list(zip(locals_, globals_)), model="torch-case", layer_names=["a", "b", "c"])
    brain = ft.Brain(pred.numpy().astype(np.float32), coords, roi, ["V1", "V2", "FFA"])
    return model, features, brain, coords, roi, (space.numpy(), probs.numpy(), scale.numpy()), grid


def check_encoder(enc_path, features, brain, roi, selections):
    fit = ft.score(enc_path, features, brain)
    rep = fit.report
    space, probs, scale = selections
    l = probs.shape[1]
    depth = probs @ (np.arange(l) / (l - 1))
    assert rep["r2"]["mean"] > 0.9999, rep["r2"]
    assert rep["pearson"]["mean"] > 0.99999, rep["pearson"]
    for r, row in enumerate(rep["rois"]):
        assert row["mean_r2"] > 0.9999, row
        assert abs(row["mean_depth"] - depth[roi == r].mean()) < 1e-5, (row, depth[roi == r].mean())
        assert abs(row["mean_scale"] - scale[roi == r].mean()) < 1e-5, row
    # The voxels really choose different things, so the comparison is not of constants.
    assert depth.std() > 0.05 and scale.std() > 0.02 and space.std() > 0.1
    return rep


def test_pth_checkpoint_converts_and_factortopy_predicts_what_pytorch_predicts(tmp_path):
    model, features, brain, coords, roi, selections, grid = make_case(tmp_path)
    pth = tmp_path / "factortopy_model.pth"
    torch.save({k: t.float() for k, t in model.state_dict().items()}, pth)
    enc = convert_checkpoint(pth, tmp_path / "encoder.safetensors", grid=grid, coords=coords, layer_names=["a", "b", "c"])
    tensors, meta = read_safetensors(enc)
    assert meta["format"] == "factortopy-encoder/1"
    assert json.loads(meta["widths"]) == [6, 8, 5] and meta["grid"] == "4" and meta["d"] == "16"
    assert tensors["local_token_bottleneck.0.weight"].shape == (16, 6, 1, 1)
    rep = check_encoder(enc, features, brain, roi, selections)
    print(f"converted .pth: held-out R² mean {rep['r2']['mean']:.6f}, Pearson {rep['pearson']['mean']:.6f}")
    # ... and it can be plotted: the fit directory, then a redraw of two maps at another size.
    fit_dir = ft.write_fit_dir(enc, features, brain, tmp_path / "fit")
    for name in ["layer_map.png", "space_map.png", "channel_map.png", "profile.png", "overview.png"]:
        assert (fit_dir / name).is_file(), name
    out = ft.plot(fit_dir, brain, maps=["space", "r2"], out_dir=tmp_path / "redrawn", size=(640, 480), groups=3)
    assert list(out) == ["space", "r2"]
    for path in out.values():
        head = path.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(head[16:20], "big") == 640 and int.from_bytes(head[20:24], "big") == 480
    with pytest.raises(ft.InvalidArgumentError, match="unknown map"):
        ft.plot(fit_dir, brain, maps="colour")


def test_safetensors_checkpoint_with_given_normalisation(tmp_path):
    model, features, brain, coords, roi, selections, grid = make_case(tmp_path)
    # A Lightning-style prefix and an extra buffer, as real checkpoints have.
    sd = {f"model.{k}": t.float().numpy() for k, t in model.state_dict().items()}
    sd["model.num_batches_tracked"] = np.zeros(1, dtype=np.float32)
    src = tmp_path / "ckpt.safetensors"
    write_safetensors(src, sd, {})
    cmin, cscale = coord_normalisation(coords)
    with pytest.warns(UserWarning, match="num_batches_tracked"):
        enc = convert_checkpoint(src, tmp_path / "enc.safetensors", grid=grid, coord_min=cmin, coord_scale=cscale)
    check_encoder(enc, features, brain, roi, selections)


def test_bad_checkpoints_are_refused(tmp_path):
    model, *_ , coords, roi, selections, grid = make_case(tmp_path)
    sd = {k: t.float() for k, t in model.state_dict().items()}
    del sd["bias"]
    with pytest.raises(ValueError, match="lacks bias"):
        ft.convert.convert_state_dict(sd, grid=grid, coords=coords)
    sd = {k: t.float() for k, t in model.state_dict().items()}
    with pytest.raises(ValueError, match="coordinate normalisation"):
        ft.convert.convert_state_dict(sd, grid=grid)
    with pytest.raises(ValueError, match="coords have 3 rows"):
        ft.convert.convert_state_dict(sd, grid=grid, coords=coords[:3])
    sd["weight"] = sd["weight"][:, :5]
    with pytest.raises(ValueError, match="local_token_bottleneck.0.weight"):
        ft.convert.convert_state_dict(sd, grid=grid, coords=coords)


def _small_state_dict(v=6, d=4, widths=(3, 2)):
    """A minimal state dict of the right names and shapes (values need not fit anything)."""
    rng = np.random.default_rng(0)
    sd = {}
    for l, c in enumerate(widths):
        sd[f"local_token_bottleneck.{l}.weight"] = rng.standard_normal((d, c, 1, 1)).astype(np.float32)
        sd[f"global_token_bottleneck.{l}.weight"] = rng.standard_normal((d, c)).astype(np.float32)
    for head, k in (("space", 2), ("layer", len(widths)), ("scale", 1)):
        for name, shape in (("1.weight", (128, 192)), ("1.bias", (128,)), ("3.weight", (128, 128)), ("3.bias", (128,)), ("5.weight", (k, 128))):
            sd[f"{head}_selector_mlp.{name}"] = rng.standard_normal(shape).astype(np.float32) * 0.01
    sd["weight"] = rng.standard_normal((v, d)).astype(np.float32)
    sd["bias"] = np.zeros(v, dtype=np.float32)
    return sd


NORM = {"coord_min": [0.0, 0.0, 0.0], "coord_scale": 1.0}


def test_hostile_checkpoint_files_are_refused_without_reading_them(tmp_path):
    import os
    import signal

    def hang(*_):
        raise AssertionError("reading the checkpoint blocked")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    try:
        fifo = tmp_path / "blocks.pth"
        os.mkfifo(fifo)
        with pytest.raises(ValueError, match="FIFO.*not a regular file"):
            convert_checkpoint(fifo, tmp_path / "a.safetensors", grid=2, **NORM)
        endless = tmp_path / "endless.safetensors"
        endless.symlink_to("/dev/zero")
        with pytest.raises(ValueError, match="not a regular file"):
            convert_checkpoint(endless, tmp_path / "b.safetensors", grid=2, **NORM)
        folder = tmp_path / "folder.safetensors"
        folder.mkdir()
        with pytest.raises(ValueError, match="directory"):
            read_safetensors(folder)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks.pth", "endless.safetensors", "folder.safetensors"]


def _with_header(path, header, body=b""):
    h = json.dumps(header).encode()
    path.write_bytes(len(h).to_bytes(8, "little") + h + body)


def test_lying_safetensors_headers_are_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    for header, body, needle in [
        ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "non-negative"),
        ({"w": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 4]}}, b"\0" * 4, "elements"),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 4]}}, b"\0" * 4, "needs 12 bytes"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, b"\0" * 4, "data_offsets"),
        ({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}, b"\0" * 4, "shape"),
    ]:
        _with_header(bad, header, body)
        with pytest.raises(ValueError, match=needle):
            read_safetensors(bad)
    bad.write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="header length"):
        read_safetensors(bad)


def test_shapes_the_library_refuses_are_refused_by_the_converter():
    sd = _small_state_dict()
    tensors, meta = ft.convert.convert_state_dict(sd, grid=3, **NORM)
    assert meta["grid"] == "3" and meta["d"] == "4" and json.loads(meta["widths"]) == [3, 2]
    for grid, needle in [(1e9, "integer"), (2.7, "integer"), (True, "integer"), (0, "between 1 and 256"),
                         (10**9, "between 1 and 256"), (-3, "between 1 and 256")]:
        with pytest.raises(ValueError, match=needle):
            ft.convert.convert_state_dict(sd, grid=grid, **NORM)
    assert ft.convert.convert_state_dict(sd, grid=np.int64(4), **NORM)[1]["grid"] == "4"
    zero_d = _small_state_dict(d=4)
    zero_d["weight"] = np.zeros((6, 0), dtype=np.float32)
    with pytest.raises(ValueError, match="bottleneck width D"):
        ft.convert.convert_state_dict(zero_d, grid=2, **NORM)
    wide = _small_state_dict(d=4)
    wide["weight"] = np.zeros((1, 8193), dtype=np.float32)
    with pytest.raises(ValueError, match="8192"):
        ft.convert.convert_state_dict(wide, grid=2, **NORM)
    no_voxels = _small_state_dict(v=0)
    with pytest.raises(ValueError, match="at least one voxel"):
        ft.convert.convert_state_dict(no_voxels, grid=2, **NORM)
    zero_c = _small_state_dict(widths=(3, 0))
    with pytest.raises(ValueError, match="width must be at least 1"):
        ft.convert.convert_state_dict(zero_c, grid=2, **NORM)


def test_converted_encoders_load_in_the_library(tmp_path):
    src = tmp_path / "ckpt.safetensors"
    write_safetensors(src, _small_state_dict(), {})
    enc = convert_checkpoint(src, tmp_path / "enc.safetensors", grid=256, **NORM)
    # The library's own loader (what `fit`, `score`, `predict` and `plot` use) accepts it.
    import ctypes
    from factortopy._lib import call, encode_path

    n = ctypes.c_size_t()
    call("ft_encoder_n_voxels", encode_path(enc), ctypes.byref(n))
    assert n.value == 6


def test_a_failed_rename_leaves_no_temporary_file(tmp_path):
    src = tmp_path / "ckpt.safetensors"
    write_safetensors(src, _small_state_dict(), {})
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep").write_text("user")
    with pytest.raises(OSError):
        convert_checkpoint(src, dst, grid=2, **NORM)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors", "dst"]
    assert (dst / "keep").read_text() == "user"


def test_converter_limits_are_the_librarys():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "src/data/limits.rs").read_text()

    def rust(name):
        expr = re.search(rf"pub const {name}: \w+ = ([^;]+);", text).group(1).replace("_", "")
        return eval(expr, {})  # integer arithmetic on literals only: `1 << 31`, `64 << 30`, `8192`

    for name in ("MAX_ELEMENTS", "MAX_D", "MAX_GRID", "MAX_LAYERS", "MAX_FILE_BYTES"):
        assert getattr(ft.convert, name) == rust(name), name
