"""Describing caller arrays to the C ABI without copying them.

Feature maps go in as DLPack ``DLTensor``s: numpy arrays are described directly from their buffer
(this also covers read-only arrays, which numpy refuses to export through DLPack), and every other
object with ``__dlpack__`` (torch, JAX, CuPy, ...) is exported through its own capsule, which this
module borrows for the duration of the call and leaves to its owner, so the owner's deleter runs
when the capsule is collected. Only element types the library cannot read (f64, integers) are
converted, which copies.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_int64

import numpy as np

from ._lib import DLDataType, DLDevice, DLTensor, FtTensor

_KDL_CPU = 1
_KDL_FLOAT = 2

_GetPointer = ctypes.pythonapi.PyCapsule_GetPointer
_GetPointer.restype = ctypes.c_void_p
_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

_SUPPORTED_NUMPY = (np.dtype(np.float32), np.dtype(np.float16))


class Borrowed:
    """A ``DLTensor`` describing caller memory, plus what must stay alive while it is used."""

    def __init__(self, tensor_ptr, keep):
        self.ptr = tensor_ptr
        self.keep = keep


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _numpy_dl(a: np.ndarray) -> Borrowed:
    if a.dtype not in _SUPPORTED_NUMPY:
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise TypeError(f"features must be floating-point arrays, got dtype {a.dtype}")
        a = a.astype(np.float32)
    if any(s % a.itemsize for s in a.strides):
        a = np.ascontiguousarray(a)
    shape = (c_int64 * a.ndim)(*a.shape)
    strides = (c_int64 * a.ndim)(*(s // a.itemsize for s in a.strides))
    t = DLTensor(
        data=a.ctypes.data if a.size else None,
        device=DLDevice(_KDL_CPU, 0),
        ndim=a.ndim,
        dtype=DLDataType(_KDL_FLOAT, a.itemsize * 8, 1),
        shape=shape,
        strides=strides,
        byte_offset=0,
    )
    return Borrowed(ctypes.pointer(t), (a, shape, strides, t))


# DLManagedTensorVersioned (DLPack 1.x): version (2 x u32), manager_ctx, deleter, flags (u64),
# then the DLTensor.
_VERSIONED_TENSOR_OFFSET = 8 + 3 * 8


def _capsule_dl(x) -> Borrowed:
    """Borrows ``x``'s DLPack export: DLPack 1.x (``max_version=(1, 0)``, a
    ``dltensor_versioned`` capsule) where the producer supports it, else the 0.x ``dltensor``.
    CUDA tensors are exported as they are; the library keeps its own copy on their device (builds
    with the ``cuda`` feature; see docs/gpu.md) or refuses them with ``DeviceError``."""
    try:
        capsule = x.__dlpack__(max_version=(1, 0))
    except TypeError:
        capsule = x.__dlpack__()
    name = _capsule_name(capsule)
    if name == b"dltensor_versioned":
        addr = _GetPointer(capsule, name)
        major = ctypes.c_uint32.from_address(addr).value
        if major != 1:
            raise ValueError(f"DLPack {major}.x tensors are not supported (this library reads 1.x and 0.x)")
        return Borrowed(ctypes.cast(addr + _VERSIONED_TENSOR_OFFSET, POINTER(DLTensor)), (x, capsule))
    addr = _GetPointer(capsule, b"dltensor")
    # DLManagedTensor starts with its DLTensor, so the same address describes the tensor.
    return Borrowed(ctypes.cast(addr, POINTER(DLTensor)), (x, capsule))


_GetName = ctypes.pythonapi.PyCapsule_GetName
_GetName.restype = ctypes.c_char_p
_GetName.argtypes = [ctypes.py_object]


def _capsule_name(capsule) -> bytes:
    return _GetName(capsule) or b""


def borrow_features(x) -> Borrowed:
    """A ``DLTensor`` over ``x`` (numpy array, torch tensor or any ``__dlpack__`` object)."""
    if _is_torch(x):
        import torch

        x = x.detach()
        if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            if x.dtype.is_complex or x.dtype == torch.bool:
                raise TypeError(f"features must be real-valued tensors, got dtype {x.dtype}")
            x = x.to(torch.float32)
        return _capsule_dl(x)
    if isinstance(x, np.ndarray):
        return _numpy_dl(x)
    if hasattr(x, "__dlpack__"):
        return _capsule_dl(x)
    return _numpy_dl(np.asarray(x))


def to_numpy(x) -> np.ndarray:
    """A host numpy view or copy of an array-like (torch tensors are detached and moved to CPU)."""
    if _is_torch(x):
        x = x.detach()
        if x.device.type != "cpu":
            x = x.cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return np.asarray(x)


class HostF32:
    """A contiguous f32 copy (or view) of an array, described as an ``ft_tensor``."""

    def __init__(self, x):
        a = np.ascontiguousarray(to_numpy(x), dtype=np.float32)
        self.array = a
        self.shape = (c_int64 * a.ndim)(*a.shape)
        self.tensor = FtTensor(
            data=a.ctypes.data if a.size else None,
            dtype=0,
            ndim=a.ndim,
            shape=self.shape,
            strides=None,
        )

    def pointer(self):
        return ctypes.pointer(self.tensor)
