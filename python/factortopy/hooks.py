"""Collecting probe-set features from a ``torch.nn.Module`` with forward hooks.

Each watched module's output becomes one layer (in the order given, which should be depth order):

- CNN maps ``[N, C, H, W]`` are kept as they are (global token: none, so the library uses the
  spatial mean);
- token sequences ``[N, T, C]`` (ViT, Swin, ...) drop their prefix tokens (CLS, distillation or
  register tokens) and are reshaped to a square grid ``[N, C, h, w]``; the first prefix token
  (CLS) becomes the global token;
- pooled vectors ``[N, C]`` become a 1×1 map.

Tuple or ``ModelOutput`` outputs use their first tensor. The model runs in eval mode without
gradients; every module's train/eval mode is restored afterwards, even on error.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterable, Mapping, Sequence

import torch

from .data import Features

LayerSpec = Sequence[str] | Mapping[str, "str | torch.nn.Module"]


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out:
        return _first_tensor(out[0])
    if isinstance(out, Mapping) and out:  # transformers' ModelOutput is an OrderedDict
        return _first_tensor(next(iter(out.values())))
    raise TypeError(f"the hooked module returned {type(out).__name__}, not a tensor")


def prefix_token_count(n_tokens: int, prefix_tokens: int | str = "auto") -> int:
    """How many leading tokens are not patches. ``"auto"``: the fewest (0 to 8) that leave a
    square number of patch tokens."""
    if prefix_tokens != "auto":
        k = int(prefix_tokens)
        if k < 0 or k >= n_tokens or math.isqrt(n_tokens - k) ** 2 != n_tokens - k:
            raise ValueError(f"{n_tokens} tokens minus {k} prefix tokens is not a square grid of patches")
        return k
    for k in range(0, min(8, n_tokens - 1) + 1):
        r = math.isqrt(n_tokens - k)
        if r * r == n_tokens - k:
            return k
    raise ValueError(
        f"cannot find a square patch grid in {n_tokens} tokens (0 to 8 prefix tokens tried); pass "
        "prefix_tokens=, or a transform= that returns [N, C, H, W]"
    )


def to_layer(out: torch.Tensor, prefix_tokens: int | str = "auto") -> tuple[torch.Tensor, torch.Tensor | None]:
    """One module output as (local ``[N, C, H, W]``, global ``[N, C]`` or None)."""
    if out.dim() == 4:
        return out, None
    if out.dim() == 3:
        n, t, c = out.shape
        k = prefix_token_count(t, prefix_tokens)
        side = math.isqrt(t - k)
        patches = out[:, k:, :].reshape(n, side, side, c).permute(0, 3, 1, 2)
        return patches, (out[:, 0, :] if k > 0 else None)
    if out.dim() == 2:
        return out[:, :, None, None], out
    raise ValueError(f"cannot turn an output of shape {tuple(out.shape)} into a feature map")


def _resolve(model: torch.nn.Module, layers: LayerSpec) -> list[tuple[str, torch.nn.Module]]:
    named = dict(model.named_modules())
    items = layers.items() if isinstance(layers, Mapping) else ((n, n) for n in layers)
    out = []
    for display, target in items:
        if isinstance(target, torch.nn.Module):
            out.append((str(display), target))
        elif target in named:
            out.append((str(display), named[target]))
        else:
            close = [n for n in named if n and (target in n or n in target)][:5]
            hint = f"; similar names: {', '.join(close)}" if close else ""
            raise KeyError(f"the model has no module named {target!r}{hint}")
    if not out:
        raise ValueError("no layers to watch")
    return out


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Eval mode and no gradients inside; every module's previous mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for m, training in modes:
            m.training = training


def _batches(images, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        for i in range(0, images.shape[0], batch_size):
            yield images[i : i + batch_size]
        return
    for b in images:
        if isinstance(b, (tuple, list)):
            b = b[0]
        elif isinstance(b, Mapping):
            b = b.get("pixel_values", next(iter(b.values())))
        yield b


def collect(
    model: torch.nn.Module,
    images,
    layers: LayerSpec,
    *,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    prefix_tokens: int | str = "auto",
    max_grid: int | None = None,
    forward: Callable[[torch.nn.Module, torch.Tensor], object] | None = None,
    transform: Callable[[str, object], tuple] | None = None,
) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
    """Runs the probe images through ``model`` and returns ``(name, local, global)`` per watched
    layer, as CPU tensors in the dtype the model produced.

    ``images``: a tensor ``[N, 3, H, W]`` (split into ``batch_size`` batches) or an iterable of
    batches (tensors, ``(x, y)`` tuples or dicts with ``pixel_values``). ``layers``: module names
    (``model.named_modules()``) in depth order, or a mapping of display name → name or module.
    ``device``: where to run (default: the model's first parameter's device). ``max_grid``:
    average-pool larger maps down to at most this many cells a side, to bound memory.
    ``forward(model, batch)`` replaces ``model(batch)``; ``transform(name, output)`` replaces the
    default conversion and returns ``(local, global_or_None)``."""
    watched = _resolve(model, layers)
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    store: dict[str, list] = {name: [] for name, _ in watched}
    if len(store) != len(watched):
        raise ValueError("layer names must be unique")

    def make_hook(name):
        def hook(_module, _inputs, output):
            if transform is not None:
                local, glob = transform(name, output)
            else:
                local, glob = to_layer(_first_tensor(output), prefix_tokens)
            if max_grid is not None and max(local.shape[-2:]) > max_grid:
                local = torch.nn.functional.adaptive_avg_pool2d(local, (min(local.shape[-2], max_grid), min(local.shape[-1], max_grid)))
            store[name].append((local.detach().to("cpu"), None if glob is None else glob.detach().to("cpu")))

        return hook

    handles = [m.register_forward_hook(make_hook(name)) for name, m in watched]
    try:
        with eval_mode(model):
            for batch in _batches(images, batch_size):
                batch = batch.to(device)
                if forward is not None:
                    forward(model, batch)
                else:
                    model(batch)
    finally:
        for h in handles:
            h.remove()
    out = []
    for name, _ in watched:
        parts = store[name]
        if not parts:
            raise RuntimeError(f"layer {name!r} never ran: is it on the model's forward path?")
        local = torch.cat([p[0] for p in parts])
        glob = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
        out.append((name, local, glob))
    return out


def collect_features(
    model: torch.nn.Module,
    images,
    layers: LayerSpec,
    *,
    model_name: str | None = None,
    **kwargs,
) -> Features:
    """``collect`` straight into a library ``Features`` (read from the tensors without an extra
    copy; f32, f16 and bf16 kept as they are). Keyword arguments as ``collect``."""
    collected = collect(model, images, layers, **kwargs)
    feats = Features()
    for _name, local, glob in collected:
        feats.add_layer(local, glob)
    feats.set_metadata(
        model=model_name or type(model).__name__,
        layer_names=[name for name, _, _ in collected],
    )
    return feats


__all__ = ["collect", "collect_features", "to_layer", "prefix_token_count", "eval_mode"]
