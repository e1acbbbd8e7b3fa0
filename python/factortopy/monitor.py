"""The forgetting monitor (DESIGN §5): built once from the brain and the network's features before
fine-tuning, then ``observe``d every few steps."""

from __future__ import annotations

import ctypes
import json
import math
import os
from ctypes import c_double, c_size_t, c_void_p

from ._lib import FtMonitorOptions, FtStepSummary, c_int, call, encode_path, lib, set_field, struct_dict, take_string
from .config import Config
from .data import Brain, Features, _Handle, _new_handle, serialised
from .fitting import FitOptions, device_name


class MonitorOptions:
    """Settings of a monitor. ``fit`` (a ``FitOptions``) fits the reference encoder and refits;
    ``held_out_fraction`` of the probe images measure retention; ``refit_every`` observations (0:
    never) a warm-started refit of ``refit_max_steps`` steps gives hierarchy scores;
    ``should_stop`` is raised when forgetting exceeds ``forgetting_threshold``.

    Parameters
    ----------
    fit : FitOptions, optional
        Settings of the reference fit and the refits; default ``FitOptions()``.
    held_out_fraction : float
        Fraction of probe images held out of the reference fit (default 0.1).
    refit_every : int
        Refit every this many observations (default 0: never).
    refit_max_steps : int
        Optimiser steps of one refit (default 200).
    refit_max_seconds : float
        Time limit of one refit (default 0: none).
    forgetting_threshold : float or None
        Forgetting above which ``should_stop`` is raised (default 0.2; None: never).
    """

    FIELDS = ("held_out_fraction", "refit_every", "refit_max_steps", "refit_max_seconds", "forgetting_threshold")

    def __init__(self, fit: FitOptions | None = None, **overrides):
        self.fit = fit if fit is not None else FitOptions()
        self._overrides: dict = {}
        scratch = Config()
        for k, v in overrides.items():
            if k not in self.FIELDS:
                raise TypeError(f"unknown monitor option {k!r}; expected one of {', '.join(self.FIELDS)} or fit=")
            if k == "forgetting_threshold" and v is None:
                v = math.inf
            if k == "refit_max_seconds" and float(v) < 0:
                v = 0.0  # as the C struct read it: a negative time limit is none
            scratch.set(k, v)  # checked now by the library's setter
            self._overrides[k] = v

    def config(self, n_images: int = 0) -> Config:
        """The library's settings (an ``ft_fit_config``): the fit's (without ``val_fraction``:
        ``held_out_fraction`` sets the held-out images), then one setter per field set here.

        Parameters
        ----------
        n_images : int
            Number of probe images (the ``auto`` schedule follows it; 0: the brain's).

        Returns
        -------
        Config
        """
        c = self.fit.config(n_images, skip=("val_fraction",))
        for k, v in self._overrides.items():
            c.set(k, v)
        return c

    def struct(self, n_images: int) -> FtMonitorOptions:
        """The settings as the frozen ``ft_monitor_options`` struct of older versions of the C
        ABI. The calls of this package use :meth:`config`.

        Parameters
        ----------
        n_images : int
            Number of probe images.

        Returns
        -------
        FtMonitorOptions
        """
        c = FtMonitorOptions()
        call("ft_monitor_options_default", ctypes.byref(c))
        for k, v in self._overrides.items():
            set_field(c, k, v)
        c.fit = self.fit.struct(n_images)
        return c

    def __getattr__(self, name):
        if name in MonitorOptions.FIELDS:
            if name in self._overrides:
                return self._overrides[name]
            v = Config().settings()[name]
            return math.inf if v is None else v  # JSON has no infinity: null is "never"
        raise AttributeError(name)


class StepReport(_Handle):
    """One observation: ``summary`` (headline numbers: retention, forgetting, min/mean CKA,
    should_stop, refit scores), ``cka`` (per layer) and ``as_dict()`` (the full report, as a line of
    the history file)."""

    _free_name = "ft_step_report_free"

    @property
    def summary(self) -> dict:
        """The headline numbers: ``step``, ``retention``, ``forgetting``, ``min_cka``,
        ``mean_cka``, ``should_stop``, and a refit's scores when this observation refitted."""
        s = FtStepSummary()
        call("ft_step_report_summary", self.handle, ctypes.byref(s))
        return struct_dict(s)

    @property
    def cka(self) -> list[float]:
        """Linear CKA between the reference features and these, one value per layer."""
        n = self.summary["n_layers"]
        buf = (c_double * max(n, 1))()
        call("ft_step_report_cka", self.handle, buf, c_size_t(n))
        return list(buf[:n])

    def as_dict(self) -> dict:
        """The full report of the observation, as a line of the history file.

        Returns
        -------
        dict
        """
        out = c_void_p()
        call("ft_step_report_json", self.handle, ctypes.byref(out))
        return json.loads(take_string(out))

    def __getattr__(self, name):
        if name in {f for f, _ in FtStepSummary._fields_}:
            return self.summary[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        s = self.summary
        f = lambda x: "null" if x is None else f"{x:.4f}"  # noqa: E731
        return f"StepReport(step {s['step']}, forgetting {f(s['forgetting'])}, min CKA {f(s['min_cka'])})"


class Monitor(_Handle):
    """Watches a network forget during fine-tuning.

    ``Monitor(brain, reference)`` fits the reference encoder on ``reference`` (the network's
    features before fine-tuning); with ``encoder_path`` it uses a saved encoder instead. Then
    ``observe(step, features)`` returns a ``StepReport``; ``save``/``load`` and
    ``to_bytes``/``from_bytes`` carry the whole state (reference encoder, statistics, history) into a
    resumed run."""

    _free_name = "ft_monitor_free"

    def __init__(
        self,
        brain: Brain,
        reference: Features,
        options: MonitorOptions | None = None,
        *,
        encoder_path: str | os.PathLike | None = None,
        device=None,
    ):
        """Fits (or loads) the reference encoder and builds the monitor.

        Parameters
        ----------
        brain : Brain
            The brain the reference encoder is fitted to.
        reference : Features
            The network's features of the probe images before fine-tuning (step 0).
        options : MonitorOptions, optional
            Default ``MonitorOptions()``.
        encoder_path : str or os.PathLike, optional
            A saved reference encoder to use instead of fitting one.
        device : str or torch.device, optional
            Where the reference fit, retention and refits run (``"cpu"``, ``"cuda:N"``); default:
            the options' ``fit.device`` (``"cpu"``).
        """
        o = options if options is not None else MonitorOptions()
        c = o.config(brain.n_images)
        if device is not None:
            c.set("device", device_name(device))
        if encoder_path is None:
            ptr = _new_handle("ft_monitor_with", c.handle, brain.handle, reference.handle)
        else:
            ptr = _new_handle("ft_monitor_from_encoder_with", c.handle, brain.handle, reference.handle, encode_path(encoder_path))
        super().__init__(ptr)

    @serialised
    def set_device(self, device) -> None:
        """Moves the monitor to another device (a restored monitor starts on the CPU).

        Parameters
        ----------
        device : str or torch.device
            ``"cpu"`` or ``"cuda:N"``.
        """
        call("ft_monitor_set_device", self.handle, device_name(device).encode())

    @classmethod
    def _wrap(cls, ptr: int) -> "Monitor":
        m = cls.__new__(cls)
        _Handle.__init__(m, ptr)
        return m

    @serialised
    def observe(self, step: int, features: Features) -> StepReport:
        """Measures forgetting at one training step.

        Parameters
        ----------
        step : int
            The training step (recorded in the history).
        features : Features
            The network's features of the same probe images now.

        Returns
        -------
        StepReport
            Retention, forgetting, CKA per layer, ``should_stop``, and refit scores when due.
        """
        r = StepReport.__new__(StepReport)
        _Handle.__init__(r, _new_handle("ft_monitor_observe", self.handle, ctypes.c_uint64(c_int(ctypes.c_uint64, step, "step")), features.handle))
        return r

    @serialised
    def save(self, path: str | os.PathLike) -> None:
        """Saves the whole state (reference encoder, statistics, history) to a safetensors file.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (atomically).
        """
        call("ft_monitor_save", self.handle, encode_path(path))

    @classmethod
    def load(cls, path: str | os.PathLike, brain: Brain, *, device="cpu") -> "Monitor":
        """Restores a saved monitor.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save`.
        brain : Brain
            The brain the monitor was created with (checked).
        device : str or torch.device
            Where it runs from now on (default ``"cpu"``).

        Returns
        -------
        Monitor
        """
        m = cls._wrap(_new_handle("ft_monitor_load", encode_path(path), brain.handle))
        if device_name(device) != "cpu":
            m.set_device(device)
        return m

    @serialised
    def to_bytes(self) -> bytes:
        """The state file's bytes, for storing inside a framework's checkpoint.

        Returns
        -------
        bytes
        """
        data, n = c_void_p(), c_size_t()
        call("ft_monitor_save_bytes", self.handle, ctypes.byref(data), ctypes.byref(n))
        try:
            return ctypes.string_at(data, n.value)
        finally:
            lib().ft_bytes_free(data, n)

    @classmethod
    def from_bytes(cls, data: bytes, brain: Brain, *, device="cpu") -> "Monitor":
        """Restores a monitor from :meth:`to_bytes`'s bytes.

        Parameters
        ----------
        data : bytes
            The state, as :meth:`to_bytes` returned it.
        brain : Brain
            The brain the monitor was created with (checked).
        device : str or torch.device
            Where it runs from now on (default ``"cpu"``).

        Returns
        -------
        Monitor
        """
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        m = cls._wrap(_new_handle("ft_monitor_load_bytes", buf, c_size_t(len(data)), brain.handle))
        if device_name(device) != "cpu":
            m.set_device(device)
        return m

    @serialised
    def set_history_file(self, path: str | os.PathLike | None) -> None:
        """Appends every later observation to a file as a JSON line.

        Parameters
        ----------
        path : str, os.PathLike or None
            The history file; None stops appending.
        """
        call("ft_monitor_set_history_file", self.handle, None if path is None else encode_path(path))

    @serialised
    def write_curves(self, directory: str | os.PathLike) -> dict:
        """Draws the history into ``directory``: ``forgetting.png`` (overall and per ROI) and
        ``cka.png`` (per layer) over training steps.

        Parameters
        ----------
        directory : str or os.PathLike
            An existing folder.

        Returns
        -------
        dict
            The pictures' paths, under ``forgetting`` and ``cka``.
        """
        call("ft_monitor_write_curves", self.handle, encode_path(directory))
        d = os.fspath(directory)
        return {"forgetting": os.path.join(d, "forgetting.png"), "cka": os.path.join(d, "cka.png")}

    @property
    @serialised
    def history(self) -> list[dict]:
        """Every observation so far, oldest first, as :meth:`StepReport.as_dict` gives them."""
        out = c_void_p()
        call("ft_monitor_history_json", self.handle, ctypes.byref(out))
        return json.loads(take_string(out))


__all__ = ["MonitorOptions", "Monitor", "StepReport"]
