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

With ``grid=G`` each batch's maps are resized to G×G as they arrive by the library itself
(``ft_resample``) with the encoder's rule ``resample`` (``"auto"`` by default, as every preset but
``design``; ``"bilinear"``, DESIGN §3.1; ``"area"``), so the maps handed over are, bit for bit,
what the encoder computes from the full maps with that rule; they are kept in ``dtype`` (e.g.
bf16), so host memory grows with the grid, not with the network's resolution: a ViT-B/16 probe
set of 1,000 images takes 1000·12·768·(64+1)·2 B ≈ 1.2 GB at G = 8 in bf16 instead of ≈ 7.3 GB
of f32 tokens. The global token of a map without one is then the spatial mean of the
full-resolution map (what the library would compute from the map it was given), so nothing
depends on where resizing ran. Resizing runs on the host in f32: a batch's maps on a GPU are
copied to the host first, one batch at a time.

The collected maps are kept on the host by default. With ``keep_on_device=True`` each layer's maps
stay on the device that computed them (a CUDA device, where the library keeps its own copy and a
monitor step or prediction on that device runs without a host round trip; docs/gpu.md); maps
resized by ``grid``/``max_grid`` still make that round trip batch by batch, and the resized maps
go back to the device.

Module names may be given as in the unwrapped model: wrappers' path components (DDP's
``module``, FSDP's ``_fsdp_wrapped_module``, activation checkpointing, ``torch.compile``) are
ignored when a name does not match as it is.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterable, Mapping, Sequence

import torch

from ._collected import to_features
from .data import Features
from .errors import FactortopyMemoryError
from .resampling import check_rule, resample as _library_resample

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
    square number of patch tokens.

    Parameters
    ----------
    n_tokens : int
        Tokens per image, prefix (CLS, registers) and patches together.
    prefix_tokens : int or str
        The count, to be checked, or ``"auto"``.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        When the remaining tokens do not form a square grid.
    """
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
    """One module output as a layer: CNN maps as they are, ViT tokens as a grid and a CLS token.

    Parameters
    ----------
    out : torch.Tensor
        ``[N, C, H, W]`` (a map), ``[N, T, C]`` (tokens; the prefix tokens are dropped and the
        first one, if any, is the global token) or ``[N, C]`` (a vector, as a 1×1 map).
    prefix_tokens : int or str
        As in :func:`prefix_token_count`.

    Returns
    -------
    local : torch.Tensor
        ``[N, C, H, W]``.
    global_ : torch.Tensor or None
        ``[N, C]``, or None when the output has none.
    """
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


# Path components that wrappers insert between a model and its modules.
_WRAPPER_PARTS = frozenset({"module", "_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod"})


def _unwrapped_name(name: str) -> str:
    return ".".join(p for p in name.split(".") if p not in _WRAPPER_PARTS)


def _resized(local: torch.Tensor, size: tuple[int, int], resample: str) -> torch.Tensor:
    """``local`` resized to ``size`` by the library (``ft_resample``) with ``resample``: a host
    f32 tensor."""
    host = local.detach().to("cpu", torch.float32)
    return torch.from_numpy(_library_resample(host.numpy(), size, resample))


def to_grid(
    local: torch.Tensor, glob: torch.Tensor | None, grid: int, resample: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A ``[N, C, H, W]`` map larger than ``grid`` on either side resized to ``grid``×``grid`` by
    the library with the encoder's rule ``resample`` (``"auto"``, the default of the library and
    of every preset but ``design``: area averaging on an axis that shrinks, bilinear on one that
    grows; ``"bilinear"``, DESIGN §3.1; ``"area"``): bit for bit what a fit or encoder with that
    rule computes from the full map. Pass the encoder's rule: maps resized by another one
    predict differently. Computed on the host in f32 (a GPU map is copied to the host; the result
    is a host tensor); a missing global token becomes the full-resolution map's spatial mean.
    Smaller maps are returned as they are (the library resizes them itself with the same rule,
    at no memory cost here).

    Parameters
    ----------
    local : torch.Tensor
        ``[N, C, H, W]`` map.
    glob : torch.Tensor or None
        ``[N, C]`` global token.
    grid : int
        The fit's grid G.
    resample : str
        The encoder's rule: ``"auto"`` (default), ``"area"`` or ``"bilinear"``.

    Returns
    -------
    local : torch.Tensor
        ``[N, C, G, G]`` (or the map as given, when it is not larger than G).
    global_ : torch.Tensor or None
        The global token, or the full map's spatial mean when there was none and the map was
        resized.
    """
    check_rule(resample)
    h, w = local.shape[-2:]
    if h <= grid and w <= grid:
        return local, glob
    full = local.detach().to("cpu", torch.float32)
    if glob is None:
        glob = full.mean(dim=(2, 3))
    return _resized(full, (grid, grid), resample), glob


def _resolve(model: torch.nn.Module, layers: LayerSpec) -> list[tuple[str, torch.nn.Module]]:
    named = dict(model.named_modules())
    # The first module (outermost) under each unwrapped name, for names given without wrappers.
    unwrapped: dict[str, torch.nn.Module] = {}
    for n, m in named.items():
        unwrapped.setdefault(_unwrapped_name(n), m)
    items = layers.items() if isinstance(layers, Mapping) else ((n, n) for n in layers)
    out = []
    for display, target in items:
        if isinstance(target, torch.nn.Module):
            out.append((str(display), target))
        elif target in named:
            out.append((str(display), named[target]))
        elif _unwrapped_name(target) in unwrapped and target:
            out.append((str(display), unwrapped[_unwrapped_name(target)]))
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
    grid: int | None = None,
    resample: str = "auto",
    dtype: torch.dtype | None = None,
    forward: Callable[[torch.nn.Module, torch.Tensor], object] | None = None,
    transform: Callable[[str, object], tuple] | None = None,
    keep_on_device: bool = False,
) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
    """Runs the probe images through ``model`` and returns ``(name, local, global)`` per watched
    layer, as CPU tensors (or, with ``keep_on_device``, tensors on the activations' device) in the
    dtype the model produced.

    ``images``: a tensor ``[N, 3, H, W]`` (split into ``batch_size`` batches) or an iterable of
    batches (tensors, ``(x, y)`` tuples or dicts with ``pixel_values``). ``layers``: module names
    (``model.named_modules()``) in depth order, or a mapping of display name → name or module.
    ``device``: where to run (default: the model's first parameter's device). ``grid``: resize
    each batch's maps larger than G on either side to G×G as the library would (``to_grid``) and
    give maps without a global token their full-resolution spatial mean as one; pass the fit's
    grid. ``resample``: the rule of both resizings, ``"auto"`` (default), ``"area"`` or
    ``"bilinear"``; pass the encoder's (``FitOptions.resample``). ``dtype``: keep the maps in this
    dtype (``torch.bfloat16`` or ``torch.float16`` halve host memory; default: as the model
    produced them). ``max_grid``: first shrink each side longer than this to this many cells by
    the library with ``resample`` (kept in the map's dtype); ``grid`` or the encoder then resizes
    the shrunk map. With ``"area"`` or ``"auto"`` and a ``max_grid`` that is a multiple of the
    encoder's grid G, that is the encoder's result on the full maps up to f32 rounding (an area
    average of area averages over whole cells); otherwise (``"bilinear"``, whose taps depend on
    the input size, a ``max_grid`` that G does not divide, or one below G) it is an
    approximation, and ``grid=G`` is the exact way to save memory. ``forward(model, batch)``
    replaces ``model(batch)``; ``transform(name, output)`` replaces the default conversion and
    returns ``(local, global_or_None)``.

    ``keep_on_device``: keep each layer's maps and global token on the device its activations
    were computed on instead of copying them to the host (default False: CPU tensors). Meant for
    a CUDA model whose features go to the library on that CUDA device (``to_features``,
    ``Monitor(device="cuda:N")``, ``predict(device=...)``): the library copies them device to
    device and never brings the local maps to the host. Each layer's buffers (``dtype`` rules as
    on the host) are allocated on the device of its first batch's local map, so a model spread
    over several devices keeps each layer where it ran, and a layer's global token is kept beside
    its map; a layer whose buffers do not fit in that device's memory is a one-line
    ``FactortopyMemoryError`` naming the layer. Maps resized by ``grid`` or ``max_grid`` are
    resized on the host batch by batch, as without this option, and the resized map is put back
    on the device; without ``grid`` and ``max_grid`` no map leaves the device (the library then
    resizes them on the device, at the cost of device memory for the full maps). ``to_features``
    refuses, in one line naming the layer, a layer on a device the library cannot use (a build
    without CUDA, or a device that is not CUDA).

    Parameters
    ----------
    model : torch.nn.Module
        The network; its modes are restored afterwards (see :func:`eval_mode`).
    images : torch.Tensor or iterable
        The probe images or batches of them.
    layers : sequence of str, or mapping
        The modules to watch, in depth order.
    batch_size, device, prefix_tokens, max_grid, grid, resample, dtype, forward, transform, keep_on_device
        As described above.

    Returns
    -------
    list of (str, torch.Tensor, torch.Tensor or None)
        ``(name, local, global)`` per watched layer, in the order of ``layers``.
    """
    if grid is not None and grid < 1:
        raise ValueError(f"grid must be at least 1, got {grid}")
    if max_grid is not None and max_grid < 1:
        raise ValueError(f"max_grid must be at least 1, got {max_grid}")
    check_rule(resample)
    watched = _resolve(model, layers)
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    names = [name for name, _ in watched]
    if len(set(names)) != len(names):
        raise ValueError("layer names must be unique")
    n_images = images.shape[0] if isinstance(images, torch.Tensor) else None
    stores = {name: _LayerStore(name, n_images, dtype, keep_on_device) for name in names}

    def make_hook(name):
        def hook(_module, _inputs, output):
            if transform is not None:
                local, glob = transform(name, output)
            else:
                local, glob = to_layer(_first_tensor(output), prefix_tokens)
            local = local.detach()
            glob = None if glob is None else glob.detach()
            where = local.device  # before resizing, which returns host tensors
            if max_grid is not None and max(local.shape[-2:]) > max_grid:
                size = (min(local.shape[-2], max_grid), min(local.shape[-1], max_grid))
                local = _resized(local, size, resample).to(local.dtype)
            if grid is not None:  # after shrinking: what the library would do with the shrunk map
                local, glob = to_grid(local, glob, grid, resample)
            stores[name].add(local, glob, where)

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
    for name in names:
        stores[name].check_complete()
    # Each layer's parts are released as soon as they are joined: the peak is the parts plus one
    # joined layer, not twice everything.
    return [(name, *stores.pop(name).result()) for name in names]


_OutOfMemory = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError


class _LayerStore:
    """One watched layer's collected maps and global tokens, on the host, or with
    ``keep_on_device`` on the device of the layer's first activations. When the number of
    images is known (a tensor of probe images) each tensor is written into one buffer allocated
    at the first batch: no join copy at the end, and no small blocks left between each batch's
    large temporaries, which would keep the allocator from reusing their memory (measured: with
    per-batch parts the peak grew with the number of images at several times the kept size)."""

    def __init__(self, name: str, n_images: int | None, dtype: torch.dtype | None, keep_on_device: bool = False):
        self.name, self.n, self.dtype = name, n_images, dtype
        self.keep_on_device = keep_on_device
        self.device: torch.device | None = None  # where the buffers live, set by the first batch
        self.filled = 0
        self.buffers: tuple | None = None
        self.parts: list = []

    def _place(self, where: torch.device) -> torch.device:
        if self.device is None:
            self.device = where if self.keep_on_device else torch.device("cpu")
        return self.device

    def _buffer(self, t: torch.Tensor) -> torch.Tensor:
        shape, dtype = (self.n, *t.shape[1:]), self.dtype or t.dtype
        try:
            return torch.empty(shape, dtype=dtype, device=self.device)
        except _OutOfMemory:
            nbytes = math.prod(shape) * dtype.itemsize
            raise FactortopyMemoryError(
                f"layer {self.name!r}: its {list(shape)} {dtype} buffer ({nbytes} bytes) does not fit in the memory "
                f"of {self.device}; collect with keep_on_device=False, a smaller grid= or a 16-bit dtype="
            ) from None

    def add(self, local: torch.Tensor, glob: torch.Tensor | None, where: torch.device | None = None) -> None:
        self._place(local.device if where is None else where)
        if self.n is None:
            self.parts.append(tuple(None if t is None else t.to(self.device, self.dtype or t.dtype) for t in (local, glob)))
            return
        rows = local.shape[0]
        if self.filled + rows > self.n:
            raise RuntimeError(
                f"layer {self.name!r} produced more rows than the {self.n} probe images: does the module run "
                "more than once per forward pass?"
            )
        if self.buffers is None:
            self.buffers = (self._buffer(local), None if glob is None else self._buffer(glob))
        at = slice(self.filled, self.filled + rows)
        self.buffers[0][at].copy_(local)
        if glob is not None:
            self.buffers[1][at].copy_(glob)
        self.filled += rows

    def check_complete(self) -> None:
        if self.buffers is None and not self.parts:
            raise RuntimeError(f"layer {self.name!r} never ran: is it on the model's forward path?")
        if self.n is not None and self.filled != self.n:
            raise RuntimeError(f"layer {self.name!r} produced {self.filled} rows for {self.n} probe images")

    def result(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.buffers is not None:
            return self.buffers
        parts, self.parts = self.parts, []
        local = torch.cat([p[0] for p in parts])
        glob = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
        return local, glob


def collect_features(
    model: torch.nn.Module,
    images,
    layers: LayerSpec,
    *,
    model_name: str | None = None,
    **kwargs,
) -> Features:
    """``collect`` straight into a library ``Features`` (read from the tensors without an extra
    copy; f32, f16 and bf16 kept as they are). Keyword arguments as ``collect``.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    images : torch.Tensor or iterable
        The probe images or batches of them.
    layers : sequence of str, or mapping
        The modules to watch, in depth order.
    model_name : str, optional
        Stored as the features' ``model`` (default: the model's class name).
    **kwargs
        As :func:`collect`.

    Returns
    -------
    Features
    """
    return to_features(collect(model, images, layers, **kwargs), model_name or type(model).__name__)


__all__ = ["collect", "collect_features", "to_features", "to_layer", "to_grid", "prefix_token_count", "eval_mode"]
