"""Peak host memory of collecting probe features into the library, in a fresh process.

    python collect_memory.py N_IMAGES N_LAYERS WIDTH TOKENS MODE

A stand-in network whose ``N_LAYERS`` blocks each emit ViT-like tokens ``[B, TOKENS, WIDTH]``
(CLS + a square grid; random values, since memory does not depend on them) runs on ``N_IMAGES``
probe images; ``MODE`` is ``full`` (f32 tokens kept at full resolution, unbounded) or
``grid`` (resized to the default fit grid batch by batch and kept in bf16, as the callbacks do).
Prints one JSON line, in bytes: how much the process's peak resident set grew while collecting
(``collect_growth``) and by the end, once the library holds its f32 copy of the features
(``total_growth``), and what the collected tensors themselves take (``kept``). ViT-B/16 on 1,000
images is ``1000 12 768 197``.
"""

import json
import sys

import torch
from torch import nn

import factortopy as ft
from factortopy.hooks import collect, to_features


class Block(nn.Module):
    def __init__(self, tokens, width):
        super().__init__()
        self.tokens, self.width = tokens, width

    def forward(self, x):
        return torch.randn(x.shape[0], self.tokens, self.width)


class TokenNet(nn.Module):
    def __init__(self, n_layers, tokens, width):
        super().__init__()
        self.blocks = nn.ModuleList(Block(tokens, width) for _ in range(n_layers))

    def forward(self, x):
        return [b(x) for b in self.blocks]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def start_peak() -> int:
    """Resets the peak resident set to the current one (Linux 4.0+: clear_refs 5) and returns
    it. (getrusage's ru_maxrss is no use here: it keeps the parent's peak across fork and exec.)"""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


def peak_rss() -> int:
    return _status_kib("VmHWM")


def main(n, n_layers, width, tokens, mode):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = TokenNet(n_layers, tokens, width)
    probe = torch.zeros(n, 1)
    layers = [f"blocks.{i}" for i in range(n_layers)]
    grid = ft.FitOptions().grid
    kwargs = {"grid": grid, "dtype": torch.bfloat16} if mode == "grid" else {}
    # Warm up allocator and library with one small collection, so the baseline includes them.
    to_features(collect(net, probe[:2], layers, **kwargs), "warm-up").close()
    before = start_peak()
    collected = collect(net, probe, layers, batch_size=8, **kwargs)
    collect_growth = peak_rss() - before
    kept = sum(t.numel() * t.element_size() for _, local, glob in collected for t in (local, glob) if t is not None)
    feats = to_features(collected, "token-net")
    total_growth = peak_rss() - before
    print(json.dumps({"mode": mode, "images": n, "layers": n_layers, "collect_growth": collect_growth,
                      "total_growth": total_growth, "kept": kept, "shape": feats.shape}))


if __name__ == "__main__":
    n, layers, width, tokens = (int(a) for a in sys.argv[1:5])
    main(n, layers, width, tokens, sys.argv[5])
