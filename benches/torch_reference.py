#!/usr/bin/env python3
"""PyTorch eager baseline for benches/gpu_step.rs (CUDA) and benches/fit_epoch.rs (CPU): one
training step of the FactorTopy model of DESIGN §3, written from the formulas in DESIGN.md (not
from any published code), by default at the paper's scale (B=8, V=37984, L=12, C=768, G=8,
D=128); on CUDA it reports torch.cuda.max_memory_allocated, on CPU the peak resident memory of
the steps (the high-water mark is reset after the data are made) and the feature set's size.

It is the "obvious implementation" of DESIGN §3.8: every layer's map is sampled at every voxel
(grid_sample), materialising [B, V, D] per layer, and autograd keeps them all for the backward.

Usage: python3 benches/torch_reference.py [--images N --voxels V --layers L --width C --grid G
       --dim D --batch B --steps S --dtype f32|f16|bf16 --device cuda:0|cpu --threads T]
Prints one `torch_step ...` line to compare with the `gpu_step ...`/`fit_epoch` lines of the Rust
benches.
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F

ENC_FREQS = 32
ENC_DIM = 3 * ENC_FREQS * 2
HIDDEN = 128


def positional_encoding(coords):
    """DESIGN §3.3: normalise, then sin/cos at 32 frequencies 1000^(-k/32), axis-major."""
    lo = coords.min(0).values
    span = (coords.max(0).values - lo).max()
    pos = (coords - lo) * 100.0 / span
    k = torch.arange(ENC_FREQS, dtype=torch.float32, device=coords.device)
    omega = 1000.0 ** (-k / ENC_FREQS)
    ang = pos[:, :, None] * omega[None, None, :]  # [V, 3, F]
    enc = torch.stack([ang.sin(), ang.cos()], dim=-1)  # [V, 3, F, 2]
    return enc.reshape(coords.shape[0], ENC_DIM)


def uniform(shape, fan_in, device):
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape, device=device).uniform_(-bound, bound).requires_grad_()


class SelectorMLP:
    """192 -> 128 -> GELU -> 128 -> GELU -> K, last layer bias-free and zero-initialised."""

    def __init__(self, k, device):
        self.w1 = uniform((HIDDEN, ENC_DIM), ENC_DIM, device)
        self.b1 = uniform((HIDDEN,), ENC_DIM, device)
        self.w3 = uniform((HIDDEN, HIDDEN), HIDDEN, device)
        self.b3 = uniform((HIDDEN,), HIDDEN, device)
        self.w5 = torch.zeros((k, HIDDEN), device=device, requires_grad=True)

    def params(self):
        return [self.w1, self.b1, self.w3, self.b3, self.w5]

    def __call__(self, pe):
        h = F.gelu(pe @ self.w1.T + self.b1)
        h = F.gelu(h @ self.w3.T + self.b3)
        return h @ self.w5.T


class FactorTopy:
    def __init__(self, widths, d, grid, n_voxels, device):
        self.d, self.grid = d, grid
        self.P = [uniform((d, c), c, device) for c in widths]  # local 1x1 bottleneck
        self.Q = [uniform((d, c), c, device) for c in widths]  # global bottleneck
        self.space = SelectorMLP(2, device)
        self.layer = SelectorMLP(len(widths), device)
        self.scale = SelectorMLP(1, device)
        self.W = uniform((n_voxels, d), d, device)
        self.c = uniform((n_voxels,), d, device)

    def params(self):
        return self.P + self.Q + self.space.params() + self.layer.params() + self.scale.params() + [self.W, self.c]

    def selectors(self, pe):
        xy = torch.tanh(self.space(pe))  # [V, 2], x along width, y along height
        p = torch.softmax(self.layer(pe), dim=-1)  # [V, L]
        s = torch.sigmoid(self.scale(pe)).squeeze(1)  # [V]
        return xy, p, s

    def forward(self, locals_, globals_, pe):
        """locals_[l]: [B, G*G, C_l] (cell y*G + x); globals_[l]: [B, C_l]. Returns [B, V]."""
        xy, p, s = self.selectors(pe)
        b = locals_[0].shape[0]
        g = self.grid
        v = xy.shape[0]
        # grid_sample with align_corners=False is the half-pixel convention ix = ((x+1)G - 1)/2,
        # zero padding outside the map: exactly DESIGN §3.4.
        grid = xy.view(1, 1, v, 2).expand(b, 1, v, 2)
        u = 0
        z = 0
        for l, (loc, glob) in enumerate(zip(locals_, globals_)):
            m = (loc @ self.P[l].T).transpose(1, 2).reshape(b, self.d, g, g)  # M_l [B, D, G, G]
            sampled = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            sampled = sampled.squeeze(2).transpose(1, 2)  # [B, V, D]
            u = u + p[None, :, l, None] * sampled
            gl = glob @ self.Q[l].T  # g_l [B, D]
            z = z + p[None, :, l, None] * gl[:, None, :]
        f = (1 - s)[None, :, None] * u + s[None, :, None] * z  # [B, V, D]
        pred = (f * self.W[None]).mean(-1) + self.c[None]  # mean over d, not a sum
        return pred, p, s


def regulariser(p, s):
    n_layers = p.shape[1]
    spread = ((s - 0.5) ** 2).mean()
    if n_layers < 2:
        return spread
    return (p * torch.log(p + 1e-8)).sum(1).mean() / math.log(n_layers) + spread


def peak_rss_mib():
    """VmHWM of this process (reset after the data were made, where the kernel allows it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--voxels", type=int, default=37984)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads on CPU (0: torch's default)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda and not torch.cuda.is_available():
        print("SKIPPED: torch_reference: no CUDA device visible to PyTorch")
        return
    if not cuda and a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    store = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    gg = a.grid * a.grid
    # Resident features (random, already on the grid), responses and coordinates.
    locals_all = [torch.randn(a.images, gg, a.width, device=dev).to(store) for _ in range(a.layers)]
    globals_all = [torch.randn(a.images, a.width, device=dev).to(store) for _ in range(a.layers)]
    responses = torch.randn(a.images, a.voxels, device=dev)
    pe = positional_encoding(torch.randn(a.voxels, 3, device=dev))
    model = FactorTopy([a.width] * a.layers, a.dim, a.grid, a.voxels, dev)
    params = model.params()
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    lam, fade = 0.1, 2000
    features_mib = sum(t.numel() * t.element_size() for t in locals_all + globals_all) / 2**20

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    def step(i):
        idx = torch.arange(i * a.batch, (i + 1) * a.batch, device=dev) % a.images
        locs = [t[idx].float() for t in locals_all]
        globs = [t[idx].float() for t in globals_all]
        pred, p, s = model.forward(locs, globs, pe)
        loss = F.smooth_l1_loss(pred, responses[idx], beta=0.1)
        w = lam * max(0.0, 1.0 - i / fade)
        if w > 0:
            loss = loss + w * regulariser(p, s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()
        return loss

    for i in range(3):
        step(i)
    sync()
    t = time.perf_counter()
    for i in range(a.steps):
        step(3 + i)
    sync()
    ms = (time.perf_counter() - t) * 1e3 / a.steps
    if not cuda:
        print(
            f"torch_step device=cpu threads={torch.get_num_threads()} torch={torch.__version__} B={a.batch} "
            f"V={a.voxels} L={a.layers} C={a.width} G={a.grid} D={a.dim} steps={a.steps} ms_per_step={ms:.3f} "
            f"peak_rss_mib={peak_rss_mib():.1f} features_mib={features_mib:.1f}"
        )
        return
    peak = torch.cuda.max_memory_allocated(dev)
    print(
        f"torch_step device={torch.cuda.get_device_name(dev)} B={a.batch} V={a.voxels} L={a.layers} C={a.width} "
        f"G={a.grid} D={a.dim} dtype={a.dtype} steps={a.steps} ms_per_step={ms:.3f} "
        f"max_memory_allocated_mib={peak / 2**20:.1f} (of which resident data and parameters {base / 2**20:.1f})"
    )


if __name__ == "__main__":
    main()
