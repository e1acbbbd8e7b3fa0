"""The library's grid resampling (``ft_resample``), for maps resized before they reach the library.

Every fit, score, prediction and monitor resizes each layer's ``[N, C, H, W]`` map to the fit's
G×G grid with the encoder's rule: ``"bilinear"`` (DESIGN §3.1), ``"area"`` (each cell the exact
average of the pixels it covers) or ``"auto"`` (area on an axis that shrinks, bilinear on one
that grows). Code that shrinks maps early to save memory (``hooks.to_grid``, ``collect(grid=,
max_grid=)``) calls the library's own implementation here, so the maps it hands over are, bit for
bit, what the encoder would have computed from the full maps.
"""

from __future__ import annotations

import ctypes
from ctypes import c_size_t

import numpy as np

from ._lib import c_int, call
from .errors import FactortopyMemoryError, InvalidArgumentError, ShapeError

#: The library's limit on the elements of one array (src/data/limits.rs): one output map may
#: hold at most this many values.
MAX_ELEMENTS = 2**31

#: The resampling rules, as the CLI (``--resample``), ``FitOptions(resample=)`` and encoder files
#: name them.
RULES = ("bilinear", "area", "auto")


def check_rule(rule: str) -> str:
    """Checks the name of a resampling rule.

    Parameters
    ----------
    rule : str
        ``"bilinear"``, ``"area"`` or ``"auto"``.

    Returns
    -------
    str
        ``rule``.

    Raises
    ------
    InvalidArgumentError
        (a ``ValueError``) for any other name.
    """
    if rule not in RULES:
        raise InvalidArgumentError(f"unknown resample {rule!r}; expected one of {', '.join(RULES)}", "FT_ERR_INVALID_ARGUMENT")
    return rule


def resample(maps, size: int | tuple[int, int], rule: str = "auto") -> np.ndarray:
    """``maps`` (``[N, C, H, W]``, any real dtype; converted to contiguous f32) resized to
    ``size`` (G, or ``(out_h, out_w)``) by the library with ``rule`` (``"bilinear"``, ``"area"``
    or ``"auto"``, each axis by its own kernel), as a new f32 array ``[N, C, out_h, out_w]``.
    Maps must be finite (``DataError`` otherwise).

    Parameters
    ----------
    maps : array_like
        ``[N, C, H, W]``, any real dtype.
    size : int or tuple of int
        G for a G×G grid, or ``(out_h, out_w)``.
    rule : str
        ``"bilinear"``, ``"area"`` or ``"auto"`` (default).

    Returns
    -------
    numpy.ndarray
        ``[N, C, out_h, out_w]`` float32.
    """
    check_rule(rule)
    out_h, out_w = (size, size) if isinstance(size, (int, np.integer)) else size
    # Checked before numpy allocates the output or ctypes narrows them: a negative, fractional or
    # huge size is the library's one-line error, not a wrapped size_t or an interpreter killed
    # by an allocation.
    out_h = c_int(ctypes.c_size_t, out_h, "output height")
    out_w = c_int(ctypes.c_size_t, out_w, "output width")
    if out_h < 1 or out_w < 1 or out_h * out_w > MAX_ELEMENTS:
        raise InvalidArgumentError(
            f"resample: the output size {out_h}×{out_w} must be positive and hold at most {MAX_ELEMENTS} values per map",
            "FT_ERR_INVALID_ARGUMENT",
        )
    x = np.ascontiguousarray(maps, dtype=np.float32)
    if x.ndim != 4:
        raise ShapeError(f"resample needs [N, C, H, W] maps, got shape {x.shape}", "FT_ERR_SHAPE")
    n, c, h, w = x.shape
    try:
        out = np.empty((n, c, out_h, out_w), dtype=np.float32)
    except (MemoryError, ValueError) as e:
        raise FactortopyMemoryError(f"resample: cannot allocate the [{n}, {c}, {out_h}, {out_w}] output ({e})") from None
    if x.size == 0 and out.size == 0:
        return out  # no maps (N or C is 0): nothing to compute, and NULL is refused
    call(
        "ft_resample",
        x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
        c_size_t(x.size),
        c_size_t(n),
        c_size_t(c),
        c_size_t(h),
        c_size_t(w),
        c_size_t(out.shape[2]),
        c_size_t(out.shape[3]),
        rule.encode(),
        out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
        c_size_t(out.size),
    )
    return out


__all__ = ["RULES", "check_rule", "resample"]
