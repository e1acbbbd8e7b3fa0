"""A toy fine-tuning setup shared by the callback tests: a small CNN, structured probe images, a
brain planted on the CNN's own features before training, and a 4-class task to fine-tune on."""

import torch
from torch import nn

import factortopy as ft
from factortopy.hooks import collect_features

LAYERS = ["body.1", "body.3", "body.5"]


class ToyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(),
            nn.Conv2d(12, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(16, 4)
        # Variance-preserving init keeps every layer's activations near unit scale, as in trained
        # networks (PyTorch's default init shrinks them layer by layer).
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, pixel_values, labels=None):
        logits = self.head(self.body(pixel_values).mean(dim=(2, 3)))
        if labels is None:
            return logits
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def images(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, generator=g)
    # Spatially smooth images, so the maps carry structure the brain can read.
    return nn.functional.avg_pool2d(x, 3, stride=1, padding=1) * 3


def setup(seed=0):
    torch.manual_seed(seed)
    model = ToyNet()
    probe = images(200, seed + 1)
    reference = collect_features(model, probe, LAYERS)
    brain = ft.synth.plant(reference, n_voxels=90, grid=4, noise_ceiling=0.9, seed=seed)
    x = images(256, seed + 2)
    y = torch.randint(0, 4, (256,), generator=torch.Generator().manual_seed(seed + 3))
    return model, probe, brain, x, y


def second_brain(seed=0):
    """Another subject on the same probe images and network (planted with another seed and
    fewer voxels), for a second monitor on the same trainer."""
    torch.manual_seed(seed)
    model = ToyNet()
    reference = collect_features(model, images(200, seed + 1), LAYERS)
    return ft.synth.plant(reference, n_voxels=60, grid=4, noise_ceiling=0.9, seed=seed + 10)


def monitor_options(**kw):
    """Never stops training unless a test sets ``forgetting_threshold``."""
    fit = ft.FitOptions.preset("fast", grid=4, d=8, max_epochs=40)
    kw.setdefault("forgetting_threshold", None)
    return ft.MonitorOptions(fit, **kw)



def assert_forgetting_rises(g, h):
    """Forgetting logged as (step, value) every 4 steps by a gentle run ``g`` and a harsh run
    ``h``: both start at zero at the reference, and the harsh run's rises from there and stays far
    above the gentle run's throughout."""
    assert [s for s, _ in h] == [0, 4, 8, 12, 16, 20, 24]
    assert g[0][1] == 0.0 and h[0][1] == 0.0
    assert h[-1][1] > 0.1, h

    def mean(xs):
        return sum(v for _, v in xs[1:]) / len(xs[1:])

    assert mean(h) > 5 * max(abs(mean(g)), 0.01), (g, h)
    assert all(hv > gv for (_, hv), (_, gv) in zip(h[1:], g[1:])), (g, h)
