"""Brains (one subject's fMRI responses to the probe images) and feature sets (one network's
per-layer features on the same images), as handles owned by the library (DESIGN §2)."""

from __future__ import annotations

import ctypes
import functools
import json
import os
import threading
from ctypes import c_size_t, c_void_p
from typing import Iterable, Sequence

import numpy as np

from ._lib import FtBrainArrays, FtLayerView, c_int, call, encode_path, lib, take_string
from .errors import InvalidArgumentError
from ._tensors import HostF32, borrow_features, to_numpy


class _Handle:
    """Owns one library handle; freed once, by ``close()`` or when collected. Each handle has a
    lock: the calls that change a handle (every call on a monitor, adding to a feature set)
    take it, so threads sharing a Python object wait for each other instead of getting
    ``BusyError``, and ``close()`` waits for such a call in progress."""

    _free_name = ""

    def __init__(self, ptr: int):
        self._ptr = c_void_p(ptr)
        self._lock = threading.RLock()

    @property
    def handle(self) -> c_void_p:
        if not self._ptr:
            raise ValueError(f"this {type(self).__name__} has been closed")
        return self._ptr

    def close(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is None:  # never initialised (a failed constructor): nothing to free
            return
        with lock:
            if self._ptr:
                getattr(lib(), self._free_name)(self._ptr)
                self._ptr = c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def serialised(method):
    """Runs ``method`` holding its handle's lock (see ``_Handle``)."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return run


def _new_handle(fn: str, *args) -> int:
    out = c_void_p()
    call(fn, *args, ctypes.byref(out))
    return out.value


class Brain(_Handle):
    """A subject's responses ``[N images, V voxels]``, voxel positions, ROI labels and optional
    noise ceiling and flatmap. Responses are z-scored per voxel unless ``zscore=False``.

    Arrays may be numpy arrays, torch tensors or any ``__dlpack__`` object; they are copied into
    the library.

    Parameters
    ----------
    responses : array_like
        ``[N, V]`` responses to the probe images, in any consistent unit.
    coords : array_like
        ``[V, 3]`` voxel or vertex positions (the selectors are functions of position).
    roi : array_like of int
        ``[V]`` index into ``roi_names``; -1 for voxels outside every ROI.
    roi_names : sequence of str
        The ROIs' names.
    roi_levels : sequence of int, optional
        Each ROI's position on the visual hierarchy (default from the usual NSD names: V1 0, V2
        1, V3 2, hV4/V4 3, anything else 4).
    noise_ceiling : array_like, optional
        ``[V]`` in R² units.
    flat : array_like, optional
        ``[V, 2]`` flatmap positions for the pictures.
    subject : str, optional
        Stored in reports.
    stimulus_ids : sequence of str, optional
        The N images' identifiers; checked against the features' when both have them.
    zscore : bool
        Z-score each voxel's responses (default True).

    Raises
    ------
    ShapeError, InvalidArgumentError, NumericError
        For inconsistent shapes, labels outside the ROI list, or non-finite values.
    """

    _free_name = "ft_brain_free"

    def __init__(
        self,
        responses,
        coords,
        roi,
        roi_names: Sequence[str],
        *,
        roi_levels: Sequence[int] | None = None,
        noise_ceiling=None,
        flat=None,
        subject: str | None = None,
        stimulus_ids: Sequence[str] | None = None,
        zscore: bool = True,
    ):
        resp = HostF32(responses)
        crd = HostF32(coords)
        roi_arr = np.ascontiguousarray(to_numpy(roi))
        if roi_arr.ndim != 1 or not np.issubdtype(roi_arr.dtype, np.integer):
            raise ValueError(f"roi must be a 1-D integer array, got shape {roi_arr.shape} dtype {roi_arr.dtype}")
        if roi_arr.size and (roi_arr.min() < -(2**31) or roi_arr.max() > 2**31 - 1):
            raise InvalidArgumentError(
                f"roi holds {roi_arr.min()}..{roi_arr.max()}, outside the int32 range of ROI labels",
                "FT_ERR_INVALID_ARGUMENT",
            )
        roi_arr = roi_arr.astype(np.int32)
        nc = HostF32(noise_ceiling) if noise_ceiling is not None else None
        fl = HostF32(flat) if flat is not None else None
        meta = {"roi_names": list(roi_names)}
        if roi_levels is not None:
            meta["roi_levels"] = [c_int(ctypes.c_int32, x, "roi_levels entry") for x in roi_levels]
        if subject is not None:
            meta["subject"] = subject
        if stimulus_ids is not None:
            meta["stimulus_ids"] = [str(s) for s in stimulus_ids]
        arrays = FtBrainArrays(
            responses=resp.pointer(),
            coords=crd.pointer(),
            roi=roi_arr.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
            roi_len=roi_arr.shape[0],
            noise_ceiling=nc.pointer() if nc else None,
            flat=fl.pointer() if fl else None,
            metadata_json=json.dumps(meta).encode(),
            zscore=1 if zscore else 0,
        )
        super().__init__(_new_handle("ft_brain_new", ctypes.byref(arrays)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Brain":
        """Loads and validates a brain file (z-scoring each voxel).

        Parameters
        ----------
        path : str or os.PathLike
            A brain file (safetensors; see the File formats page of the docs).

        Returns
        -------
        Brain
        """
        b = cls.__new__(cls)
        _Handle.__init__(b, _new_handle("ft_brain_load", encode_path(path)))
        return b

    def save(self, path: str | os.PathLike) -> None:
        """Writes a brain file (atomically) that ``Brain.load`` and the CLI read.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        """
        call("ft_brain_save", self.handle, encode_path(path))

    @property
    def info(self) -> dict:
        """Sizes and metadata: ``n_images``, ``n_voxels``, ``roi_names``, ``roi_levels``, ..."""
        out = c_void_p()
        call("ft_brain_info_json", self.handle, ctypes.byref(out))
        return json.loads(take_string(out))

    @property
    def shape(self) -> tuple[int, int]:
        """(images, voxels)."""
        n, v = c_size_t(), c_size_t()
        call("ft_brain_shape", self.handle, ctypes.byref(n), ctypes.byref(v))
        return n.value, v.value

    @property
    def n_images(self) -> int:
        """Number of probe images N."""
        return self.shape[0]

    @property
    def n_voxels(self) -> int:
        """Number of voxels V."""
        return self.shape[1]

    @property
    def roi_names(self) -> list[str]:
        """The ROIs' names, in label order."""
        return self.info["roi_names"]

    def __repr__(self) -> str:
        if not self._ptr:
            return "Brain(closed)"
        i = self.info
        return f"Brain({i['n_images']} images, {i['n_voxels']} voxels, ROIs {i['roi_names']})"


class Features(_Handle):
    """One network's features on the probe images, layer by layer in depth order. Each layer is a
    local map ``[N, C, H, W]`` and optionally a global token ``[N, C]`` (the spatial mean of the
    map is used without one). Layers are read straight from numpy arrays, torch tensors or any
    ``__dlpack__`` object (f32, f16, bf16; strided views are fine) and copied into the library,
    which keeps each layer in the precision it was given in (bf16 and f16 stay 16-bit).

    Parameters
    ----------
    layers : iterable
        Layers in depth order, each a local map or a ``(local, global)`` pair (see
        :meth:`add_layer`).
    model : str, optional
        The network's name, stored in reports.
    layer_names : sequence of str, optional
        One name per layer.
    """

    _free_name = "ft_features_free"

    def __init__(self, layers: Iterable = (), *, model: str | None = None, layer_names: Sequence[str] | None = None):
        super().__init__(_new_handle("ft_features_new"))
        for layer in layers:
            if isinstance(layer, (tuple, list)):
                self.add_layer(*layer)
            else:
                self.add_layer(layer)
        self.set_metadata(model=model, layer_names=layer_names)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Features":
        """Loads and validates a features file into memory, each tensor in the precision it is
        stored in (a 16-bit file stays 16-bit).

        Parameters
        ----------
        path : str or os.PathLike
            A features file (safetensors).

        Returns
        -------
        Features
        """
        f = cls.__new__(cls)
        _Handle.__init__(f, _new_handle("ft_features_load", encode_path(path)))
        return f

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Features":
        """Opens a features file without reading its values: ``fit``, ``score``, ``predict``,
        ``rank`` and the monitor read what they use a block of images at a time, so a
        subject-scale file is never held whole (a fit holds the features resampled to its grid,
        in the file's precision). ``layer`` and ``add_layer`` do not apply to such a set.

        Parameters
        ----------
        path : str or os.PathLike
            A features file (safetensors); its header is validated now.

        Returns
        -------
        Features
        """
        f = cls.__new__(cls)
        _Handle.__init__(f, _new_handle("ft_features_open", encode_path(path)))
        return f

    @serialised
    def add_layer(self, local, global_=None) -> "Features":
        """Appends a layer (the data is read in place and copied by the library; nothing of the
        caller's is kept).

        Parameters
        ----------
        local : array_like
            ``[N, C, H, W]`` patch-token map (numpy, torch or ``__dlpack__``; f32, f16 or bf16).
        global_ : array_like, optional
            ``[N, C]`` global token; without it the spatial mean of ``local`` stands in.

        Returns
        -------
        Features
            ``self``, for chaining.
        """
        loc = borrow_features(local)
        glo = borrow_features(global_) if global_ is not None else None
        call("ft_features_add_layer_dlpack", self.handle, loc.ptr, glo.ptr if glo else None)
        return self

    @serialised
    def set_metadata(
        self,
        *,
        model: str | None = None,
        layer_names: Sequence[str] | None = None,
        stimulus_ids: Sequence[str] | None = None,
    ) -> "Features":
        """Sets metadata stored in features files and reports; ``None`` leaves a field as it is.

        Parameters
        ----------
        model : str, optional
            The network's name.
        layer_names : sequence of str, optional
            One name per layer.
        stimulus_ids : sequence of str, optional
            The N images' identifiers.

        Returns
        -------
        Features
            ``self``, for chaining.
        """
        meta = {}
        if model is not None:
            meta["model"] = model
        if layer_names is not None:
            meta["layer_names"] = [str(n) for n in layer_names]
        if stimulus_ids is not None:
            meta["stimulus_ids"] = [str(s) for s in stimulus_ids]
        if meta:
            call("ft_features_set_metadata", self.handle, json.dumps(meta).encode())
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Writes a features file (atomically) for the CLI (``fit``, ``rank``, ``synth
        --from-features``).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        """
        call("ft_features_save", self.handle, encode_path(path))

    @property
    def shape(self) -> tuple[int, int]:
        """(images, layers)."""
        n, l = c_size_t(), c_size_t()
        call("ft_features_shape", self.handle, ctypes.byref(n), ctypes.byref(l))
        return n.value, l.value

    @property
    def n_images(self) -> int:
        """Number of probe images N."""
        return self.shape[0]

    @property
    def n_layers(self) -> int:
        """Number of layers L."""
        return self.shape[1]

    def __len__(self) -> int:
        return self.n_layers

    def layer(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Copies of one layer's arrays, as f32 whatever precision the layer is kept in.

        Parameters
        ----------
        i : int
            Layer index, 0 for the first.

        Returns
        -------
        local : numpy.ndarray
            ``[N, C, H, W]``.
        global_ : numpy.ndarray or None
            ``[N, C]``, or None when the layer has no global token.
        """
        v = FtLayerView()
        idx = c_size_t(c_int(c_size_t, i, "layer index"))
        call("ft_features_layer_copy", self.handle, idx, ctypes.byref(v), None, c_size_t(0), None, c_size_t(0))
        local = np.empty(tuple(v.local_shape), dtype=np.float32)
        glob = np.empty(tuple(v.global_shape), dtype=np.float32) if v.global_shape[0] > 0 else None
        as_ptr = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) if a is not None else None
        call(
            "ft_features_layer_copy",
            self.handle,
            idx,
            ctypes.byref(v),
            as_ptr(local),
            c_size_t(local.size),
            as_ptr(glob),
            c_size_t(glob.size if glob is not None else 0),
        )
        return local, glob

    def __repr__(self) -> str:
        if not self._ptr:
            return "Features(closed)"
        n, l = self.shape
        return f"Features({n} images, {l} layers)"


__all__ = ["Brain", "Features"]
