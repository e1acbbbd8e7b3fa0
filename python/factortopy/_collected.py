"""``hooks.collect``'s output into a library ``Features`` (``hooks.to_features``), without
importing torch: every layer's device checked before any is copied, each layer released once the
library has its copy."""

from __future__ import annotations

import sys

from ._lib import last_error_message
from ._tensors import _is_torch
from .data import Features
from .errors import DeviceError
from .fitting import device_available, device_name


def _device_of(x) -> str:
    """The library's name of the device holding ``x``: ``"cpu"``, ``"cuda:N"``, or another name
    (torch's, or the DLPack device type) for memory the library cannot read."""
    if _is_torch(x):
        return device_name(x.device)
    if hasattr(x, "__dlpack_device__"):
        kind, index = x.__dlpack_device__()
        # kDLCPU; kDLCUDA and kDLCUDAManaged, which the library reads as that CUDA device.
        return {1: "cpu", 2: f"cuda:{index}", 13: f"cuda:{index}"}.get(int(kind), f"DLPack device type {kind}")
    return "cpu"


def _check_devices(collected: list) -> list[str]:
    """Each layer's device (its local map's), after checking that the library can read every
    tensor of every layer; raises ``DeviceError`` naming the first layer it cannot."""
    usable = {"cpu": True}
    out = []
    for name, local, glob in collected:
        for t in (local, glob):
            if t is None:
                continue
            dev = _device_of(t)
            if dev not in usable:
                if not dev.startswith("cuda:"):
                    usable[dev] = "it reads host and CUDA memory only"
                else:
                    usable[dev] = True if device_available(dev) else last_error_message()
            if usable[dev] is not True:
                raise DeviceError(
                    f"layer {name!r} is on {dev}, which this library cannot use ({usable[dev]}); "
                    "collect it with keep_on_device=False"
                )
        out.append(_device_of(local))
    return out


def _return_to_driver(device: str) -> None:
    """Hands the CUDA memory torch's caching allocator keeps after a layer was released back to
    the driver, from which the library allocates its copy of the next layer."""
    torch = sys.modules.get("torch")  # not imported: no cache to empty
    if torch is not None and device.startswith("cuda:") and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def to_features(collected: list, model_name: str) -> Features:
    """``collect``'s output into a library ``Features``, emptying ``collected``: each layer's tensors
    are released once the library has its copy, so the peak is not both copies of everything.

    Layers on the host and, from ``collect(keep_on_device=True)``, on a CUDA device the library
    can use are read where they are (CUDA layers through DLPack, copied device to device; f32,
    f16, bf16, strided or not). Every layer's device is checked before any is copied: a layer on
    a device the library cannot use (CUDA with a build without it, or not CUDA at all) is a
    one-line ``DeviceError`` naming the layer. After each CUDA layer is released, torch's cached
    CUDA memory is handed back to the driver (``torch.cuda.empty_cache``), since the library
    allocates from the driver, not from torch's cache.

    Parameters
    ----------
    collected : list
        ``hooks.collect``'s output; emptied.
    model_name : str
        Stored as the features' ``model``.

    Returns
    -------
    Features
    """
    names = [name for name, _, _ in collected]
    devices = _check_devices(collected)
    feats = Features()
    for device in devices:
        _name, local, glob = collected.pop(0)
        feats.add_layer(local, glob)
        del local, glob
        _return_to_driver(device)
    feats.set_metadata(model=model_name, layer_names=names)
    return feats
