"""Drawing a saved fit's pictures: the layer, space, scale, R² and channel maps on the cortex, the
per-ROI layer profile and the overview figure (the ``factortopy plot`` command)."""

from __future__ import annotations

import ctypes
import json
import os
from ctypes import c_void_p
from pathlib import Path
from typing import Sequence

from ._lib import c_int, call, encode_path, take_string
from .errors import InvalidArgumentError
from .data import Brain, Features

MAPS = ("layer", "space", "scale", "r2", "channels", "profile", "overview")


def plot(
    fit_dir: str | os.PathLike,
    brain: Brain,
    maps: str | Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    size: tuple[int, int] = (800, 600),
    groups: int = 20,
) -> dict[str, Path]:
    """Draws the pictures of a fit saved by ``factortopy fit`` (its output directory) on the
    brain it was fitted on, without refitting. ``maps``: names among ``MAPS`` (a list or a
    comma-separated string, ``"all"``), or ``None`` for every picture the fit has (a ridge fit
    has no space, scale or channel map). ``out_dir`` defaults to ``fit_dir``; ``size`` is each
    picture's (width, height) in pixels (the overview's panels are three quarters of it);
    ``groups`` is the number of channel groups.

    Parameters
    ----------
    fit_dir : str or os.PathLike
        The output folder of ``factortopy fit`` (or :func:`write_fit_dir`).
    brain : Brain
        The brain the fit was made on.
    maps : str or sequence of str, optional
        Names among ``MAPS``, ``"all"``, or None for every picture the fit has.
    out_dir : str or os.PathLike, optional
        Where to write the pictures (default ``fit_dir``).
    size : tuple of int
        Each picture's (width, height) in pixels (default (800, 600)).
    groups : int
        Number of channel groups on the channel map (default 20).

    Returns
    -------
    dict of str to pathlib.Path
        Each picture's path by map name, in drawing order.
    """
    if maps is not None and not isinstance(maps, str):
        maps = ",".join(maps)
    try:
        w, h = size
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"size must be (width, height), got {size!r}", "FT_ERR_INVALID_ARGUMENT") from None
    # Range-checked for the C types before ctypes narrows them: 2**32 + 800 would otherwise
    # arrive as 800. The library checks the picture and group limits themselves.
    w = c_int(ctypes.c_uint32, w, "size width")
    h = c_int(ctypes.c_uint32, h, "size height")
    groups = c_int(ctypes.c_uint32, groups, "groups")
    if w == 0 or h == 0 or groups == 0:
        # 0 means "the default" to the C ABI; from Python it is a mistake.
        raise InvalidArgumentError(f"size {size} and groups {groups} must be positive", "FT_ERR_INVALID_ARGUMENT")
    out = c_void_p()
    call(
        "ft_plot",
        encode_path(fit_dir),
        brain.handle,
        maps.encode() if maps is not None else None,
        encode_path(out_dir) if out_dir is not None else None,
        w,
        h,
        groups,
        ctypes.byref(out),
    )
    return {item["map"]: Path(item["path"]) for item in json.loads(take_string(out))}


def write_fit_dir(
    encoder_path: str | os.PathLike,
    features: Features,
    brain: Brain,
    out_dir: str | os.PathLike,
    *,
    weighted: bool = False,
    plots: bool = True,
) -> Path:
    """Scores a saved encoder (``factortopy fit``'s, or a checkpoint converted with
    ``factortopy.convert``) and writes the directory ``factortopy fit`` writes: report.json,
    encoder.safetensors, selectors.safetensors and, with ``plots``, every picture; :func:`plot`
    redraws from it.

    Parameters
    ----------
    encoder_path : str or os.PathLike
        A saved encoder.
    features : Features
        The features the encoder was fitted on.
    brain : Brain
        The brain the encoder was fitted to.
    out_dir : str or os.PathLike
        The folder to write (created; an existing folder is written into).
    weighted : bool
        Weight the hierarchy line by max(R², 0).
    plots : bool
        Draw the pictures (default True).

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    call(
        "ft_score_write_dir",
        encode_path(encoder_path),
        features.handle,
        brain.handle,
        int(bool(weighted)),
        int(bool(plots)),
        encode_path(out_dir),
    )
    return Path(out_dir)


__all__ = ["plot", "write_fit_dir", "MAPS"]
