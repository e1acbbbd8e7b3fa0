"""Fitting the FactorTopy encoder, scoring saved encoders, and ranking networks (DESIGN §3-§4)."""

from __future__ import annotations

import ctypes
import json
import os
from ctypes import c_void_p
from typing import Mapping, Sequence

from ._lib import FtFitOptions, FtFitSummary, call, encode_path, take_string
from .data import Brain, Features, _Handle, _new_handle


class FitOptions:
    """Settings of a fit. ``FitOptions()`` is DESIGN §3.6's (lr 1e-3, batch 8);
    ``FitOptions.preset("fast")`` is the CLI's ``--preset fast`` (lr 1e-2, batch 32), suited to small
    probe sets. Any field can be overridden by keyword: seed, val_fraction, max_epochs,
    batch_size, lr, weight_decay, d, grid, patience, reg_steps, max_steps (0: none), max_seconds
    (0: none), weighted (bool)."""

    FIELDS = tuple(name for name, _ in FtFitOptions._fields_)

    def __init__(self, preset: str = "design", **overrides):
        self._c = FtFitOptions()
        call("ft_fit_options_preset", preset.encode(), ctypes.byref(self._c))
        self.update(**overrides)

    @classmethod
    def preset(cls, name: str, **overrides) -> "FitOptions":
        return cls(name, **overrides)

    def update(self, **overrides) -> "FitOptions":
        for k, v in overrides.items():
            if k not in self.FIELDS:
                raise TypeError(f"unknown fit option {k!r}; expected one of {', '.join(self.FIELDS)}")
            setattr(self._c, k, int(v) if k == "weighted" else v)
        return self

    def __getattr__(self, name):
        if name in FitOptions.FIELDS:
            return getattr(self._c, name)
        raise AttributeError(name)

    def as_dict(self) -> dict:
        return {k: getattr(self._c, k) for k in self.FIELDS}

    def __repr__(self) -> str:
        return f"FitOptions({self.as_dict()})"


def _options(options: FitOptions | None, overrides: dict) -> FitOptions:
    if options is None:
        return FitOptions(**overrides)
    if overrides:
        copy = FitOptions.__new__(FitOptions)
        copy._c = FtFitOptions.from_buffer_copy(options._c)
        return copy.update(**overrides)
    return options


class Fit(_Handle):
    """A fitted, scored encoder: ``summary`` (headline numbers), ``report`` (the full report of
    ``factortopy fit``'s report.json, as a dict) and ``save_encoder``."""

    _free_name = "ft_fit_free"

    @property
    def summary(self) -> dict:
        s = FtFitSummary()
        call("ft_fit_report_summary", self.handle, ctypes.byref(s))
        return {name: getattr(s, name) for name, _ in FtFitSummary._fields_}

    @property
    def report(self) -> dict:
        out = c_void_p()
        call("ft_fit_report_json", self.handle, ctypes.byref(out))
        return json.loads(take_string(out))

    def save_encoder(self, path: str | os.PathLike) -> None:
        """Saves the encoder (DESIGN §3.7 names), e.g. to build a ``Monitor`` from later."""
        call("ft_fit_save_encoder", self.handle, encode_path(path))

    def __repr__(self) -> str:
        s = self.summary
        return f"Fit(slope {s['slope']:.3f}, spearman {s['spearman']:.3f}, R² {s['r2_mean']:.3f})"


def _wrap_fit(ptr: int) -> Fit:
    f = Fit.__new__(Fit)
    _Handle.__init__(f, ptr)
    return f


def fit(features: Features, brain: Brain, options: FitOptions | None = None, **overrides) -> Fit:
    """Fits a FactorTopy encoder of ``features`` to ``brain`` and scores it (blocks until done)."""
    o = _options(options, overrides)
    return _wrap_fit(_new_handle("ft_fit_new", features.handle, brain.handle, ctypes.byref(o._c)))


def score(encoder_path: str | os.PathLike, features: Features, brain: Brain, *, weighted: bool = False) -> Fit:
    """Scores a saved encoder on ``features`` and ``brain`` (on the images it was validated on)."""
    return _wrap_fit(
        _new_handle("ft_fit_load", encode_path(encoder_path), features.handle, brain.handle, int(weighted))
    )


_METHODS = {"factortopy": 0, "ridge": 1}


def rank(
    networks: Sequence[Features] | Mapping[str, Features],
    brain: Brain,
    options: FitOptions | None = None,
    *,
    method: str = "factortopy",
    **overrides,
) -> dict:
    """Fits every network against ``brain`` (same split and seed) and ranks them by hierarchy
    slope. A mapping's keys name the networks (set as each feature set's ``model``). Returns the
    ranking as a dict: ``rows`` best first, each with ``rank``, ``index``, ``name``, ``slope``,
    ``spearman``, ``r2_mean``, ... ``method`` is ``"factortopy"`` or ``"ridge"`` (a fast
    layer-wise estimate)."""
    if method not in _METHODS:
        raise ValueError(f"unknown rank method {method!r}; expected 'factortopy' or 'ridge'")
    if isinstance(networks, Mapping):
        for name, f in networks.items():
            f.set_metadata(model=str(name))
        nets = list(networks.values())
    else:
        nets = list(networks)
    o = _options(options, overrides)
    arr = (c_void_p * len(nets))(*[n.handle.value for n in nets])
    out = c_void_p()
    call("ft_rank", arr, len(nets), brain.handle, ctypes.byref(o._c), _METHODS[method], ctypes.byref(out))
    return json.loads(take_string(out))


__all__ = ["FitOptions", "Fit", "fit", "score", "rank"]
