"""What the framework callbacks share: building the monitor from the model before fine-tuning,
observing every K steps, turning a report into loggable numbers, the state for checkpoints, and
the identity that tells one monitor from another on the same trainer. Under torch.distributed
every method here is collective (call it on every rank, see ``_dist``); the monitor itself lives on
rank 0 and every rank gets its numbers and stop decision."""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import warnings
from typing import Callable, Mapping

import torch

from .._lib import last_error_message
from ..data import Brain, Features
from ..fitting import device_available, device_name
from ..hooks import LayerSpec, collect, to_features
from ..monitor import Monitor, MonitorOptions, StepReport
from ._dist import Group, gather_collected, shard

# How probe features are stored while they are collected, unless collect_kwargs says otherwise:
# bf16 has f32's range (no overflow, whatever the activations) and halves host memory; its
# rounding (relative 2⁻⁹) is far below the differences the monitor measures.
DEFAULT_DTYPE = torch.bfloat16


def monitor_device(model) -> str:
    """The device the monitor runs on by default: the model's, when this library can run there
    (a CUDA build with a driver); otherwise the CPU, with a warning saying why."""
    try:
        param = next(iter(model.parameters()))
    except (AttributeError, StopIteration, TypeError):
        return "cpu"
    name = device_name(param.device)
    if name == "cpu" or device_available(name):
        return name
    warnings.warn(
        f"factortopy: the model is on {name} but this library cannot run there "
        f"({last_error_message()}); the monitor runs on the CPU",
        RuntimeWarning,
        stacklevel=3,
    )
    return "cpu"


class MonitorDriver:
    """Framework-independent core of the callbacks, also usable from a hand-written training loop
    (call ``start`` once, then ``observe`` when ``due``, on every rank).

    Parameters
    ----------
    brain : Brain
        The brain the reference encoder is fitted to.
    probe_images : torch.Tensor or iterable
        The probe images (the brain's images), or batches of them.
    layers : sequence of str, or mapping
        The modules to watch, in depth order (as :func:`factortopy.hooks.collect` takes them).
    every_n_steps : int
        Observe every this many optimiser steps (default 50).
    options : MonitorOptions, optional
        Settings of the monitor and its reference fit.
    encoder_path : str or os.PathLike, optional
        A saved reference encoder to use instead of fitting one.
    stop_on_forgetting : bool
        Stop training when the monitor raises ``should_stop`` (default True).
    history_file : str or os.PathLike, optional
        Append every observation here as a JSON line.
    prefix : str
        Prefix of the logged metrics' names (default ``"factortopy/"``).
    collect_kwargs : dict, optional
        Keyword arguments for :func:`factortopy.hooks.collect`.
    on_report : callable, optional
        Called with ``(step, StepReport)`` after every observation.
    device : str or torch.device, optional
        Where the monitor runs; default: the model's device when the library can run there,
        else the CPU. When it is a CUDA device the library can use and every parameter of the
        model is on it, the probe features are collected with ``keep_on_device=True``: they stay
        on that device (maps larger than the fit grid are still resized on the host batch by
        batch) and the library copies them device to device; otherwise they are collected on the
        host. ``collect_kwargs={"keep_on_device": ...}`` overrides the choice.
    """

    def __init__(
        self,
        brain: Brain,
        probe_images,
        layers: LayerSpec,
        *,
        every_n_steps: int = 50,
        options: MonitorOptions | None = None,
        encoder_path: str | os.PathLike | None = None,
        stop_on_forgetting: bool = True,
        history_file: str | os.PathLike | None = None,
        prefix: str = "factortopy/",
        collect_kwargs: dict | None = None,
        on_report: Callable[[int, StepReport], None] | None = None,
        device=None,
    ):
        if every_n_steps < 1:
            raise ValueError("every_n_steps must be at least 1")
        self.brain = brain
        self.probe_images = probe_images
        self.layers = layers
        self.every_n_steps = every_n_steps
        self.options = options
        self.encoder_path = encoder_path
        self.stop_on_forgetting = stop_on_forgetting
        self.history_file = history_file
        self.prefix = prefix
        self.collect_kwargs = dict(collect_kwargs or {})
        self.on_report = on_report
        # Rank 0 only (None on the other ranks).
        # None: the model's device when this library can run there, else the CPU (see start).
        self.device = device
        # The library's name of the device the monitor runs on, once started (on every rank).
        self._run_device: str | None = None
        self._run_device_ok: bool | None = None
        self.monitor: Monitor | None = None
        # Display names of the watched layers, as hooks.collect names them.
        self.layer_names: list[str] = [str(k) for k in layers]
        self._started = False
        self._last_step: int | None = None
        self.last_metrics: dict = {}
        self._key: str | None = None

    # Identity ----------------------------------------------------------------------------------

    @property
    def key(self) -> str:
        """A short digest of what makes this monitor (prefix, layers, probe set, brain), the same
        in every process and every run with the same arguments: the name of its checkpoint
        state, so that several monitors on one trainer save and resume separately."""
        if self._key is None:
            if isinstance(self.layers, Mapping):
                layers = {str(k): v if isinstance(v, str) else type(v).__name__ for k, v in self.layers.items()}
            else:
                layers = [str(x) for x in self.layers]
            ident = {
                "prefix": self.prefix,
                "layers": layers,
                "probe": _fingerprint(self.probe_images),
                "brain": self.brain.info,
                "encoder": None if self.encoder_path is None else os.path.basename(os.fspath(self.encoder_path)),
            }
            text = json.dumps(ident, sort_keys=True, default=str)
            self._key = hashlib.sha1(text.encode()).hexdigest()[:12]
        return self._key

    # Features ----------------------------------------------------------------------------------

    def collect_options(self) -> dict:
        """Keywords for ``hooks.collect``: the caller's, with the fit grid, the encoder's
        resampling rule and bf16 storage by default (maps are resized batch by batch by the
        library with the rule the encoder uses, so memory follows the grid and the maps are the
        encoder's own)."""
        kw = dict(self.collect_kwargs)
        kw.pop("model_name", None)  # a collect_features keyword: names the Features, see features()
        if "grid" not in kw:
            kw["grid"] = self._grid()
        if "resample" not in kw:
            kw["resample"] = self._resample()
        kw.setdefault("dtype", DEFAULT_DTYPE)
        return kw

    def _grid(self) -> int:
        if self.encoder_path is not None:
            return encoder_grid(self.encoder_path)
        return (self.options if self.options is not None else MonitorOptions()).fit.grid

    def _resample(self) -> str:
        if self.encoder_path is not None:
            return encoder_resample(self.encoder_path)
        return (self.options if self.options is not None else MonitorOptions()).fit.resample

    def keep_on_device(self, model) -> bool:
        """Whether the probe features are collected on the model's device (``collect``'s
        ``keep_on_device``): when the monitor runs on a CUDA device the library can use and every
        parameter of ``model`` is on that device, so its activations are there too. A model on
        the CPU, a monitor on the CPU, a model on another device or spread over several, or a
        library that cannot use the device: the features go to the host, as they always did."""
        dev = self._run_device
        if dev is None or not dev.startswith("cuda:"):
            return False
        params = model.parameters() if hasattr(model, "parameters") else ()
        seen = False
        for p in params:
            if device_name(p.device) != dev:
                return False
            seen = True
        if not seen:
            return False
        if self._run_device_ok is None:
            self._run_device_ok = device_available(dev)
        return self._run_device_ok

    def _set_run_device(self, device) -> None:
        if isinstance(device, str):
            try:
                device = torch.device(device)  # "cuda" is cuda:0
            except RuntimeError:  # not torch's name: the library's error says what it takes
                pass
        self._run_device, self._run_device_ok = device_name(device), None

    def features(self, model, group: Group | None = None) -> Features | None:
        """The probe features of ``model`` as it is now: on rank 0 a ``Features`` of the whole
        probe set in order, on the other ranks None (they ran their shard and sent it)."""
        g = group or Group()
        images, keep, gather = shard(self.probe_images, g)
        error = None
        try:
            kw = self.collect_options()
            kw.setdefault("keep_on_device", self.keep_on_device(model))
            collected = collect(model, images, self.layers, **kw)
        except Exception as e:  # agreed on below, so that no rank waits for one that failed
            error, collected = e, None
        if not g.all_ok(error is None):
            if error is not None:
                raise error
            raise RuntimeError("factortopy: another rank failed to collect the probe features (its error says why)")
        if gather:
            collected = gather_collected(collected, keep, g)
        elif not g.is_root:
            collected = None
        if collected is None:
            return None
        return to_features(collected, self.collect_kwargs.get("model_name") or type(model).__name__)

    # Observing ---------------------------------------------------------------------------------

    def start(self, model, step: int = 0, saved: bytes | None = None) -> bool:
        """Restores the monitor from ``saved`` (a checkpoint's state; read on rank 0) or builds it
        from the model as it is now (the reference), observing the reference itself at ``step`` so
        the curves start at zero forgetting (``last_metrics``). Whether it built a new reference
        (the same on every rank); nothing happens once started."""
        if self._started:
            return False
        g = Group()
        device = self.device if self.device is not None else monitor_device(model)
        self._set_run_device(device)
        last = _on_root(g, lambda: self._restore(saved, device) if saved is not None else False)
        if last is not False:
            self._last_step = last
            self._started = True
            return False
        feats = self.features(model, g)

        def build():
            self.monitor = Monitor(self.brain, feats, self.options, encoder_path=self.encoder_path, device=device)
            if self.history_file is not None:
                self.monitor.set_history_file(self.history_file)
            return self._observe_features(step, feats)

        metrics, _stop = _on_root(g, build)
        self._record(step, metrics)
        self._started = True
        return True

    def due(self, step: int) -> bool:
        return step % self.every_n_steps == 0 and step != self._last_step

    def observe(self, model, step: int) -> tuple[dict, bool]:
        """Observes the model at ``step``: (metrics to log, whether to stop training), the same on
        every rank."""
        if not self._started:
            self.start(model, step)
            return self.last_metrics, False
        g = Group()
        feats = self.features(model, g)
        metrics, stop = _on_root(g, lambda: self._observe_features(step, feats))
        self._record(step, metrics)
        return metrics, stop

    def _record(self, step: int, metrics: dict) -> None:
        self._last_step = step
        self.last_metrics = metrics

    def _observe_features(self, step: int, feats: Features) -> tuple[dict, bool]:
        report = self.monitor.observe(step, feats)
        s = report.summary
        m = {
            "forgetting": s["forgetting"],
            "retention": s["retention"],
            "r2": s["r2"],
            "min_cka": s["min_cka"],
            "mean_cka": s["mean_cka"],
        }
        for name, c in zip(self.layer_names, report.cka):
            m[f"cka/{name}"] = c
        if s["refitted"]:
            for k in ("slope", "b0", "b1", "spearman", "layer_shift", "argmax_moved", "refit_r2"):
                m[k] = s[k]
        metrics = {self.prefix + k: float(v) for k, v in m.items() if v is not None and math.isfinite(v)}
        if self.on_report is not None:
            self.on_report(step, report)
        stop = bool(s["should_stop"]) and self.stop_on_forgetting
        return metrics, stop

    # State for checkpoints -------------------------------------------------------------------

    def state_bytes(self) -> bytes | None:
        """The monitor's state on rank 0 (None elsewhere, and before it is built)."""
        return None if self.monitor is None else self.monitor.to_bytes()

    def restore(self, data: bytes) -> None:
        """Restores the monitor from checkpoint bytes in a single process (the callbacks pass
        them to ``start`` instead, which restores on rank 0 and tells the other ranks)."""
        self._last_step = self._restore(data)
        self._started = True

    def _restore(self, data: bytes, device: str = "cpu") -> int | None:
        self._set_run_device(device)
        self.monitor = Monitor.from_bytes(data, self.brain, device=device)
        if self.history_file is not None:
            self.monitor.set_history_file(self.history_file)
        hist = self.monitor.history
        return hist[-1]["step"] if hist else None

    @property
    def history(self) -> list[dict]:
        return [] if self.monitor is None else self.monitor.history


def _on_root(group: Group, fn):
    """``fn()`` run on rank 0, its result on every rank; an error there is raised on every rank
    (rank 0 raises the original) instead of leaving the others waiting."""
    result, error = None, None
    if group.is_root:
        try:
            result = ("ok", fn())
        except Exception as e:
            error = e
            result = ("error", f"{type(e).__name__}: {e}")
    result = group.broadcast(result)
    if error is not None:
        raise error
    if result[0] == "error":
        raise RuntimeError(f"factortopy: the monitor on rank 0 failed: {result[1]}")
    return result[1]


def _fingerprint(images) -> str:
    """A cheap, deterministic summary of a probe set: a tensor's shape, dtype and up to 4,096 of
    its values evenly spread; anything else by its type and length."""
    if isinstance(images, torch.Tensor):
        flat = images.detach().reshape(-1)
        n = flat.numel()
        idx = torch.linspace(0, max(n - 1, 0), steps=min(n, 4096)).long().to(flat.device)
        sample = flat[idx].to("cpu", torch.float64).numpy().tobytes()
        return f"{tuple(images.shape)}:{images.dtype}:{hashlib.sha1(sample).hexdigest()}"
    n = len(images) if hasattr(images, "__len__") else "?"
    return f"{type(images).__qualname__}:{n}"


def encoder_metadata(path: str | os.PathLike) -> dict:
    """The ``__metadata__`` of a saved encoder's safetensors header (DESIGN §3.7), read without
    loading the tensors, so probe features can be prepared for it before the monitor exists."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise ValueError("shorter than a safetensors header")
            (size,) = struct.unpack("<Q", head)
            if size > 100_000_000:
                raise ValueError(f"header length {size} is not plausible")
            meta = json.loads(f.read(size)).get("__metadata__", {})
        if not isinstance(meta, dict):
            raise ValueError("__metadata__ is not an object")
        return meta
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"{p}: cannot read the encoder's metadata ({e})") from e


def encoder_grid(path: str | os.PathLike) -> int:
    """The grid of a saved encoder, from its metadata."""
    meta = encoder_metadata(path)
    try:
        return int(meta["grid"])
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(
            f"{os.fspath(path)}: cannot read the encoder's grid from its metadata ({e}); pass collect_kwargs={{'grid': G}}"
        ) from e


def encoder_resample(path: str | os.PathLike) -> str:
    """The resampling rule of a saved encoder, from its metadata; encoders written before the rule
    was saved were fitted on bilinearly resampled maps, so a missing key reads as ``"bilinear"``
    (as the library reads it)."""
    from ..resampling import check_rule

    rule = encoder_metadata(path).get("resample", "bilinear")
    try:
        return check_rule(rule)
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)}: {e}; pass collect_kwargs={{'resample': ...}}") from e
