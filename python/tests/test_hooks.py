"""Feature collection with forward hooks: ViT-like token outputs become square maps plus a CLS
global token, CNN maps stay as they are, and the model's modes and gradients are left alone."""

import numpy as np
import pytest
import torch
from torch import nn

import factortopy as ft
from factortopy.hooks import collect, collect_features, prefix_token_count, to_layer


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
