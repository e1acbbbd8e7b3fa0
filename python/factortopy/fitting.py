"""Fitting the FactorTopy encoder, scoring saved encoders, and ranking networks (DESIGN §3-§4)."""

from __future__ import annotations

import ctypes
import json
import os
from ctypes import c_size_t, c_void_p
from typing import Mapping, Sequence

from ._lib import FtFitOptions, FtFitSummary, call, encode_path, set_field, struct_dict, take_string
from .config import Config
from .data import Brain, Features, _Handle, _new_handle
from .resampling import RULES


class FitOptions:
    """Settings of a fit. ``FitOptions()`` is the default schedule (the CLI's ``--preset auto``):
    learning rate, batch, warm-up, patience and maximum epochs follow the number of probe images,
    so they are set when the fit starts (``struct(n_images)``; reading one of them before gives
    ``None`` unless you set it). ``FitOptions.preset("design")`` is DESIGN §3 exactly (lr 1e-3,
    batch 8, warm-up over 2000 steps, bilinear resampling; made for ~10 000 images) and
    ``FitOptions.preset("fast")`` the CLI's ``--preset fast`` (lr 1e-2, batch 32). Any field can
    be overridden by keyword: seed, val_fraction, max_epochs, batch_size, lr, weight_decay, d,
    grid, patience, reg_steps, max_steps (0: none), max_seconds (0: none), weighted (bool),
    ``device``: ``"cpu"`` (default) or ``"cuda:N"`` (a library built with the ``cuda`` feature on
    a machine with an NVIDIA driver; anything with a torch ``device`` string works too), and
    ``resample``: how each layer's map is resized to the grid, ``"bilinear"`` (DESIGN §3.1, the
    ``design`` preset's), ``"area"`` (each cell the exact average of the pixels it covers) or
    ``"auto"`` (area where a map shrinks, bilinear where it grows; every other preset's), and
    ``layer_units``: ``"common"`` (each layer's features scaled to a root mean square of 1 over
    the probe set, so that a layer's units cannot decide which voxels choose it; every preset's
    but ``design``) or ``"raw"`` (as they come, DESIGN §3). Both are saved with the encoder.

    Parameters
    ----------
    preset : str
        ``"auto"`` (default), ``"design"`` or ``"fast"``.
    **overrides
        Any of :attr:`FIELDS`, by name.

    Raises
    ------
    InvalidArgumentError
        For an unknown preset, or a value outside the field's range (checked here, not when the
        fit starts).
    TypeError
        For an unknown field.
    """

    FIELDS = tuple(name for name, _ in FtFitOptions._fields_) + ("device", "resample", "layer_units")
    LAYER_UNITS = ("common", "raw")
    #: The fields that are not in the C struct.
    PREPARATION = ("device", "resample", "layer_units")
    RESAMPLE = RULES
    #: The fields the ridge baseline reads (rankings with ``method="ridge"``).
    RIDGE_FIELDS = ("seed", "val_fraction", "weighted", "device")
    #: The fields the ``auto`` preset sets from the number of probe images.
    SCHEDULE = ("max_epochs", "batch_size", "lr", "patience", "reg_steps")

    def __init__(self, preset: str = "auto", **overrides):
        self.preset_name = preset
        self.device = "cpu"
        self._overrides: dict = {}
        base = Config(preset, 1).settings()  # an unknown preset fails here
        self.resample = base["resample"]
        self.layer_units = base["layer_units"]
        self._preset_preparation = (self.resample, self.layer_units)
        self.update(**overrides)

    @classmethod
    def preset(cls, name: str, **overrides) -> "FitOptions":
        """The settings of a named preset with some fields overridden.

        Parameters
        ----------
        name : str
            ``"auto"``, ``"design"`` or ``"fast"``.
        **overrides
            Any of :attr:`FIELDS`, by name.

        Returns
        -------
        FitOptions
        """
        return cls(name, **overrides)

    def config(self, n_images: int = 0, *, skip: tuple = ()) -> Config:
        """The library's settings (an ``ft_fit_config``) for ``n_images`` probe images: the
        preset's, then one setter per field set here (the device, resampling and layer units
        only where they differ from the preset's).

        Parameters
        ----------
        n_images : int
            Number of probe images (only the ``auto`` preset depends on it; 0: the data's).
        skip : tuple of str
            Fields left out (a monitor's held-out images replace ``val_fraction``).

        Returns
        -------
        Config
        """
        c = Config(self.preset_name, n_images)
        for k, v in self._overrides.items():
            if k not in skip:
                c.set(k, v)
        if self.device != "cpu" and "device" not in skip:
            c.set("device", self.device)
        if self.resample != self._preset_preparation[0] and "resample" not in skip:
            c.set("resample", self.resample)
        if self.layer_units != self._preset_preparation[1] and "layer_units" not in skip:
            c.set("layer_units", self.layer_units)
        return c

    def method_config(self, n_images: int, method: str) -> Config:
        """:meth:`config` for a ranking by ``method``: the ridge baseline reads only the split
        (``seed``, ``val_fraction``), ``weighted`` and ``device`` of these options (the library
        refuses the FactorTopy trainer's settings with it, so they are not handed over).

        Parameters
        ----------
        n_images : int
            Number of probe images.
        method : str
            ``"factortopy"`` or ``"ridge"``.

        Returns
        -------
        Config
        """
        if method == "factortopy":
            return self.config(n_images)
        c = self.config(n_images, skip=tuple(f for f in self.FIELDS if f not in self.RIDGE_FIELDS))
        c.set("method", method)
        return c

    def struct(self, n_images: int) -> FtFitOptions:
        """The settings as the frozen ``ft_fit_options`` struct of older versions of the C ABI
        (the preset's, then the overrides). The calls of this package use :meth:`config`.

        Parameters
        ----------
        n_images : int
            Number of probe images (only the ``auto`` preset depends on it).

        Returns
        -------
        FtFitOptions
        """
        c = FtFitOptions()
        if self.preset_name == "auto":
            call("ft_fit_options_for_images", c_size_t(n_images), ctypes.byref(c))
        else:
            call("ft_fit_options_preset", self.preset_name.encode(), ctypes.byref(c))
        for k, v in self._overrides.items():
            set_field(c, k, int(bool(v)) if k == "weighted" else v)
        return c

    def update(self, **overrides) -> "FitOptions":
        """Overrides fields in place.

        Parameters
        ----------
        **overrides
            Any of :attr:`FIELDS`, by name; each value is checked now by the library's setter.

        Returns
        -------
        FitOptions
            ``self``, for chaining.
        """
        scratch = Config(self.preset_name, 1)
        for k, v in overrides.items():
            if k not in self.FIELDS:
                raise TypeError(f"unknown fit option {k!r}; expected one of {', '.join(self.FIELDS)}")
            if k == "device":
                v = device_name(v)
            elif k == "weighted":
                v = bool(v)
            elif k == "max_seconds" and v is not None and float(v) < 0:
                v = 0.0  # as the C struct read it: a negative time limit is none
            scratch.set(k, v)  # checked now, not at fit time
            if k in self.PREPARATION:
                setattr(self, k, v)
            else:
                self._overrides[k] = v
        return self

    def copy(self) -> "FitOptions":
        """An independent copy (the preset, the device and every override).

        Returns
        -------
        FitOptions
        """
        c = FitOptions.__new__(FitOptions)
        c.preset_name, c.device, c._overrides = self.preset_name, self.device, dict(self._overrides)
        c.resample = self.resample
        c.layer_units = self.layer_units
        c._preset_preparation = self._preset_preparation
        return c

    def __getattr__(self, name):
        if name in FitOptions.FIELDS and name not in FitOptions.PREPARATION:
            if self.preset_name == "auto" and name in FitOptions.SCHEDULE and name not in self._overrides:
                return None
            return self.config(1).settings()[name]
        raise AttributeError(name)

    def preparation(self) -> bytes:
        """The features' preparation as the C ABI's ``_resampled`` entry points read it."""
        return f"{self.resample},{self.layer_units}".encode()

    def as_dict(self) -> dict:
        """Every field by name (schedule fields of ``auto`` that are not set yet are ``None``).

        Returns
        -------
        dict
        """
        return {k: getattr(self, k) for k in self.FIELDS}

    def __repr__(self) -> str:
        return f"FitOptions({self.preset_name!r}, {self.as_dict()})"


def _options(options: FitOptions | None, overrides: dict) -> FitOptions:
    if options is None:
        return FitOptions(**overrides)
    if overrides:
        return options.copy().update(**overrides)
    return options


class Fit(_Handle):
    """A fitted, scored encoder: ``summary`` (headline numbers), ``report`` (the full report of
    ``factortopy fit``'s report.json, as a dict) and ``save_encoder``."""

    _free_name = "ft_fit_free"

    @property
    def summary(self) -> dict:
        """The headline numbers: ``slope``, ``b0``, ``b1``, ``spearman`` (``None`` when the
        hierarchy line is undefined), ``r2_mean``, ``r2_median``, ``n_voxels``, ... (the fields of
        ``ft_fit_summary`` in ``include/factortopy.h``)."""
        s = FtFitSummary()
        call("ft_fit_report_summary", self.handle, ctypes.byref(s))
        return struct_dict(s)

    @property
    def report(self) -> dict:
        """The full report, as ``factortopy fit`` writes it to ``report.json`` (see the File
        formats page of the docs)."""
        out = c_void_p()
        call("ft_fit_report_json", self.handle, ctypes.byref(out))
        return json.loads(take_string(out))

    def save_encoder(self, path: str | os.PathLike) -> None:
        """Saves the encoder (DESIGN §3.7 names), e.g. to build a ``Monitor`` from later.

        Parameters
        ----------
        path : str or os.PathLike
            The safetensors file to write (written under a temporary name, then renamed).
        """
        call("ft_fit_save_encoder", self.handle, encode_path(path))

    def predict(self, features: Features, *, brain: Brain | None = None, device="cpu"):
        """Predicted responses of the fitted voxels to the images of ``features``.

        Parameters
        ----------
        features : Features
            Features of the images to predict, from the same network layers as the fit.
        brain : Brain, optional
            Not needed for a fit made here (it keeps its voxels' positions).
        device : str or torch.device
            ``"cpu"`` (default) or ``"cuda:N"``.

        Returns
        -------
        numpy.ndarray
            ``[N, V]`` float32, in the z-scored units the encoder was fitted in.
        """
        import numpy as np

        out = np.empty((features.n_images, self.summary["n_voxels"]), dtype=np.float32)
        call(
            "ft_fit_predict",
            self.handle,
            features.handle,
            brain.handle if brain is not None else None,
            device_name(device).encode(),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            out.size,
        )
        return out

    def __repr__(self) -> str:
        s = self.summary
        f = lambda x: "null" if x is None else f"{x:.3f}"  # noqa: E731
        return f"Fit(slope {f(s['slope'])}, spearman {f(s['spearman'])}, R² {s['r2_mean']:.3f})"


def _wrap_fit(ptr: int) -> Fit:
    f = Fit.__new__(Fit)
    _Handle.__init__(f, ptr)
    return f


def fit(features: Features, brain: Brain, options: FitOptions | None = None, **overrides) -> Fit:
    """Fits a FactorTopy encoder of ``features`` to ``brain`` and scores it (blocks until done).

    Parameters
    ----------
    features : Features
        The network's per-layer features of the N probe images.
    brain : Brain
        The responses to the same N images.
    options : FitOptions, optional
        The settings; default ``FitOptions()``, the schedule for the probe-set size.
    **overrides
        Fields of :class:`FitOptions` to override (e.g. ``seed=1``, ``device="cuda:0"``).

    Returns
    -------
    Fit
        The fitted encoder with its ``summary`` and ``report``.

    Raises
    ------
    FactortopyError
        A subclass naming the problem: mismatched inputs, a device this build or machine cannot
        use, too little memory, ...
    """
    o = _options(options, overrides)
    cfg = o.config(brain.n_images)  # held until the call returns: the handle is freed with it
    return _wrap_fit(_new_handle("ft_fit_with", cfg.handle, features.handle, brain.handle))


def score(
    encoder_path: str | os.PathLike, features: Features, brain: Brain, *, weighted: bool = False, device="cpu"
) -> Fit:
    """Scores a saved encoder on ``features`` and ``brain`` (on the images it was validated on).

    Parameters
    ----------
    encoder_path : str or os.PathLike
        ``encoder.safetensors`` from a fit, or a converted checkpoint.
    features : Features
        The features the encoder was fitted on (same images and layers).
    brain : Brain
        The brain the encoder was fitted to.
    weighted : bool
        Weight the hierarchy line by max(R², 0).
    device : str or torch.device
        ``"cpu"`` (default) or ``"cuda:N"``.

    Returns
    -------
    Fit
        The report of the saved encoder (the same numbers ``fit`` reported).
    """
    cfg = Config()
    if weighted:
        cfg.set("weighted", True)
    if device_name(device) != "cpu":
        cfg.set("device", device_name(device))
    return _wrap_fit(_new_handle("ft_fit_load_with", cfg.handle, encode_path(encoder_path), features.handle, brain.handle))


def predict(encoder_path: str | os.PathLike, features: Features, *, brain: Brain | None = None, device="cpu"):
    """Predicted responses of a saved encoder to the images of ``features``.

    Parameters
    ----------
    encoder_path : str or os.PathLike
        A saved encoder.
    features : Features
        Features of the images to predict (same network layers as the fit).
    brain : Brain, optional
        Needed only for encoders that carry no voxel coordinates (those converted from other
        implementations).
    device : str or torch.device
        ``"cpu"`` (default) or ``"cuda:N"``.

    Returns
    -------
    numpy.ndarray
        ``[N, V]`` float32, in the z-scored units the encoder was fitted in.
    """
    import numpy as np

    n_voxels = c_size_t()
    path = encode_path(encoder_path)
    call("ft_encoder_n_voxels", path, ctypes.byref(n_voxels))
    out = np.empty((features.n_images, n_voxels.value), dtype=np.float32)
    call(
        "ft_predict_encoder",
        path,
        features.handle,
        brain.handle if brain is not None else None,
        device_name(device).encode(),
        out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
        out.size,
    )
    return out


def device_name(device) -> str:
    """The library's name of a device.

    Parameters
    ----------
    device : str, torch.device or None
        A string, or anything with a torch-style ``type`` and ``index``; ``None`` is the CPU.

    Returns
    -------
    str
        ``"cpu"`` or ``"cuda:N"`` (a torch ``cuda`` device without an index is ``cuda:0``).
    """
    if device is None:
        return "cpu"
    if not isinstance(device, str):
        kind = getattr(device, "type", None)
        if kind is None:
            raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {device!r}")
        index = getattr(device, "index", None)
        return kind if kind == "cpu" else f"{kind}:{index or 0}"
    return device


def device_available(device) -> bool:
    """Whether this library can run on ``device`` now.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"`` or ``"cuda:N"``.

    Returns
    -------
    bool
        False when the library was built without CUDA, the machine has no usable driver, NVRTC
        or cuBLAS, or the ordinal does not exist.
    """
    from ._lib import lib

    return lib().ft_device_check(device_name(device).encode()) == 0


_METHODS = {"factortopy": 0, "ridge": 1}


def rank(
    networks: Sequence[Features] | Mapping[str, Features] | Sequence,
    brain,
    options: FitOptions | None = None,
    *,
    method: str = "factortopy",
    executor=None,
    with_layers: bool = False,
    out=None,
    progress=None,
    **overrides,
) -> dict:
    """Fits every network against the brain(s) (same split and seed) and ranks them by
    hierarchy slope.

    Parameters
    ----------
    networks : sequence or mapping of Features, or sequence of path-like
        In-memory feature sets (a mapping's keys name them, set as each one's ``model``), or
        features files.
    brain : Brain, or path-like, or sequence of path-like
        One in-memory brain, or brain files (one per subject, the same images): files make a
        grid of networks × subjects, see :func:`factortopy.grid.rank_grid`.
    options : FitOptions, optional
        Settings shared by every fit; keyword ``overrides`` update them.
    method : {"factortopy", "ridge"}
        ``"ridge"`` is a fast layer-wise estimate; it reads only ``seed``, ``val_fraction``,
        ``weighted`` and ``device`` of the options.
    executor : concurrent.futures.Executor, optional
        Files only: where the pairs run (a process pool, a dask or Ray executor).
    with_layers : bool
        Files only: also report every layer's held-out R² per ROI (layer-wise ridge baseline).
    out : path-like, optional
        Files only: keep finished pairs there and skip them when rerun.
    progress : callable, optional
        Files only, with an executor: ``progress(done, total, label)`` after each pair.
    **overrides
        Fields of :class:`FitOptions` to override.

    Returns
    -------
    dict
        The ranking: ``rows`` best first, each with ``rank``, ``index``, ``name``, ``slope``,
        ``spearman``, ``r2_mean``, ...; over several subjects, each row's ``across`` and
        ``subjects`` as :func:`factortopy.grid.rank_grid` describes.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown rank method {method!r}; expected 'factortopy' or 'ridge'")
    if not isinstance(brain, Brain):
        from .grid import rank_grid

        return rank_grid(
            networks,
            brain,
            _options(options, overrides),
            method=method,
            executor=executor,
            with_layers=with_layers,
            out=out,
            progress=progress,
        )
    if executor is not None or with_layers or out is not None or progress is not None:
        raise TypeError("executor, with_layers, out and progress need files: pass brain and networks as paths")
    if isinstance(networks, Mapping):
        for name, f in networks.items():
            f.set_metadata(model=str(name))
        nets = list(networks.values())
    else:
        nets = list(networks)
    o = _options(options, overrides)
    arr = (c_void_p * len(nets))(*[n.handle.value for n in nets])
    out_json = c_void_p()
    cfg = o.method_config(brain.n_images, method)
    call("ft_rank_with", cfg.handle, arr, len(nets), brain.handle, ctypes.byref(out_json))
    return json.loads(take_string(out_json))


__all__ = ["FitOptions", "Fit", "fit", "score", "predict", "rank", "device_available"]
