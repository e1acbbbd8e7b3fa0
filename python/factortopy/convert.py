"""Converting checkpoints of the original PyTorch FactorTopy code into factortopy encoders.

A PyTorch FactorTopy model's ``state_dict`` already uses the DESIGN §3.7 parameter names
(``local_token_bottleneck.{l}.weight`` [D, C_l, 1, 1], ``global_token_bottleneck.{l}.weight``
[D, C_l], ``{space,layer,scale}_selector_mlp.{1,3}.{weight,bias}``,
``{space,layer,scale}_selector_mlp.5.weight``, ``weight`` [V, D], ``bias`` [V]); what it lacks
is what factortopy keeps beside the parameters: the local grid G and the coordinate
normalisation of DESIGN §3.3 (``pos = (coords - min) * scale``, ``scale = 100 / max_axis(max -
min)``). :func:`convert_checkpoint` adds them and writes ``encoder.safetensors``, so a user of
the original code can ``score``, ``plot`` and monitor with factortopy::

    from factortopy.convert import convert_checkpoint
    convert_checkpoint("model.pth", "encoder.safetensors", grid=8, coords=brain_coords)
    fit = factortopy.score("encoder.safetensors", features, brain)

Only numpy is needed for ``.safetensors`` checkpoints; ``.pth``/``.pt`` files are read with
``torch.load`` (tensors only, ``weights_only=True``).
"""

from __future__ import annotations

import json
import os
import re
import struct
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

FORMAT = "factortopy-encoder/1"

_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
}


def read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors (as float32/int numpy arrays) and metadata of a safetensors file. Handles F64,
    F32, F16, BF16, I64 and I32.

    Parameters
    ----------
    path : str or os.PathLike
        A safetensors file.

    Returns
    -------
    tensors : dict of str to numpy.ndarray
        Floating tensors as float32, integer tensors as int64 or int32.
    metadata : dict of str to str
        The ``__metadata__`` entries.
    """
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(data[8 : 8 + n])
    body = memoryview(data)[8 + n :]
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        raw = body[start:end]
        dt = info["dtype"]
        if dt == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif dt in _SAFETENSORS_DTYPES:
            arr = np.frombuffer(raw, dtype=np.dtype(_SAFETENSORS_DTYPES[dt]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: tensor `{name}` has unsupported dtype {dt}")
        out[name] = arr.reshape(info["shape"])
    return out, meta


def write_safetensors(path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> None:
    """Writes float32 tensors and string metadata as safetensors, atomically (temporary file,
    then rename).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    tensors : mapping of str to numpy.ndarray
        Stored as float32.
    metadata : mapping of str to str
        Stored as ``__metadata__``.
    """
    header: dict = {"__metadata__": dict(metadata)}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def coord_normalisation(coords) -> tuple[list[float], float]:
    """DESIGN §3.3's constants for ``coords`` [V, 3]: the per-axis minimum and
    ``100 / max_axis(max - min)`` (1 when all voxels sit at one point).

    Parameters
    ----------
    coords : array_like
        ``[V, 3]`` voxel positions.

    Returns
    -------
    minimum : list of float
        The per-axis minimum.
    scale : float
        ``100 / max_axis(max - min)``.
    """
    c = np.asarray(coords, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 3:
        raise ValueError(f"coords have shape {c.shape}; expected [V, 3]")
    if not np.isfinite(c).all():
        raise ValueError("coords contain non-finite values")
    lo, hi = c.min(axis=0), c.max(axis=0)
    extent = float((hi - lo).max())
    return [float(x) for x in lo], (100.0 / extent if extent > 0 else 1.0)


def _to_numpy(v) -> np.ndarray:
    if hasattr(v, "detach"):
        v = v.detach().to("cpu")
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        v = v.numpy()
    return np.asarray(v, dtype=np.float32)


def load_state_dict(path) -> dict[str, np.ndarray]:
    """A checkpoint's parameters as float32 numpy arrays: a ``.safetensors`` file, or a ``.pth``/
    ``.pt`` file holding a state dict (or a dict with a ``state_dict`` entry, as Lightning
    writes). A ``module.`` or ``model.`` prefix on every name (DataParallel, Lightning) is
    removed."""
    path = Path(path)
    if path.suffix == ".safetensors":
        sd, _ = read_safetensors(path)
    else:
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
            obj = obj["state_dict"]
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
        sd = dict(obj)
    for prefix in ("module.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return {k: _to_numpy(v) for k, v in sd.items()}


_MLP_NAMES = [
    f"{head}_selector_mlp.{part}"
    for head in ("space", "layer", "scale")
    for part in ("1.weight", "1.bias", "3.weight", "3.bias", "5.weight")
]


def convert_state_dict(
    state_dict: Mapping[str, object],
    *,
    grid: int,
    coords=None,
    coord_min=None,
    coord_scale: float | None = None,
    layer_names=None,
    model: str = "pytorch-factortopy",
    val_fraction: float = 0.1,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and metadata of a factortopy encoder file for a PyTorch FactorTopy state dict
    (values may be torch tensors or numpy arrays). The coordinate normalisation is either given
    (``coord_min`` [3] and ``coord_scale``) or recomputed from ``coords`` [V, 3], the voxel
    positions the model was trained with. Shapes are checked against each other and against
    DESIGN §3; keys that are not encoder parameters are ignored with a warning.

    Parameters
    ----------
    state_dict : mapping
        The PyTorch model's ``state_dict()`` (DESIGN §3.7 names).
    grid : int
        The local grid G the model was trained with.
    coords : array_like, optional
        ``[V, 3]`` voxel positions the model was trained with.
    coord_min : sequence of float, optional
        The per-axis minimum of the normalisation, instead of ``coords``.
    coord_scale : float, optional
        The normalisation's scale, with ``coord_min``.
    layer_names : sequence of str, optional
        One name per layer, stored in the metadata.
    model : str
        The network's name, stored in the metadata.
    val_fraction : float
        Fraction of images ``score`` holds out (default 0.1).

    Returns
    -------
    tensors : dict of str to numpy.ndarray
        The encoder's tensors.
    metadata : dict of str to str
        The encoder file's metadata.
    """
    sd = {k: _to_numpy(v) for k, v in state_dict.items()}
    layers = sorted(
        int(m.group(1)) for k in sd if (m := re.fullmatch(r"local_token_bottleneck\.(\d+)\.weight", k))
    )
    if not layers or layers != list(range(len(layers))):
        raise ValueError(f"expected local_token_bottleneck.0.weight ... .{{L-1}}.weight, found layers {layers}")
    n_layers = len(layers)
    expected = (
        [f"local_token_bottleneck.{l}.weight" for l in range(n_layers)]
        + [f"global_token_bottleneck.{l}.weight" for l in range(n_layers)]
        + _MLP_NAMES
        + ["weight", "bias"]
    )
    missing = [k for k in expected if k not in sd]
    if missing:
        raise ValueError(f"the state dict lacks {', '.join(missing)}")
    extra = sorted(set(sd) - set(expected))
    if extra:
        warnings.warn(f"ignoring {len(extra)} entries that are not encoder parameters: {', '.join(extra[:8])}")
    w = sd["weight"]
    if w.ndim != 2:
        raise ValueError(f"`weight` has shape {list(w.shape)}; expected [V, D]")
    v, d = w.shape
    widths = []
    for l in range(n_layers):
        loc = sd[f"local_token_bottleneck.{l}.weight"]
        if loc.ndim == 2:
            loc = loc[:, :, None, None]
            sd[f"local_token_bottleneck.{l}.weight"] = loc
        if loc.ndim != 4 or loc.shape[0] != d or loc.shape[2:] != (1, 1):
            raise ValueError(f"local_token_bottleneck.{l}.weight has shape {list(loc.shape)}; expected [{d}, C, 1, 1]")
        glo = sd[f"global_token_bottleneck.{l}.weight"]
        if glo.shape != (d, loc.shape[1]):
            raise ValueError(f"global_token_bottleneck.{l}.weight has shape {list(glo.shape)}; expected [{d}, {loc.shape[1]}]")
        widths.append(int(loc.shape[1]))
    outs = {"space": 2, "layer": n_layers, "scale": 1}
    for head, k in outs.items():
        for name, shape in (("1.weight", (128, 192)), ("1.bias", (128,)), ("3.weight", (128, 128)), ("3.bias", (128,)), ("5.weight", (k, 128))):
            a = sd[f"{head}_selector_mlp.{name}"]
            if a.shape != shape:
                raise ValueError(f"{head}_selector_mlp.{name} has shape {list(a.shape)}; expected {list(shape)}")
    if sd["bias"].shape != (v,):
        raise ValueError(f"`bias` has shape {list(sd['bias'].shape)}; expected [{v}]")
    bad = [k for k in expected if not np.isfinite(sd[k]).all()]
    if bad:
        raise ValueError(f"non-finite values in {', '.join(bad)}")
    if coord_min is not None and coord_scale is not None:
        cmin, cscale = [float(x) for x in coord_min], float(coord_scale)
        if len(cmin) != 3 or not (np.isfinite(cmin).all() and np.isfinite(cscale) and cscale > 0):
            raise ValueError("coord_min must be 3 finite numbers and coord_scale a positive number")
    elif coords is not None:
        if np.asarray(coords).shape[0] != v:
            raise ValueError(f"coords have {np.asarray(coords).shape[0]} rows; the readout has {v} voxels")
        cmin, cscale = coord_normalisation(coords)
    else:
        raise ValueError("give the coordinate normalisation (coord_min and coord_scale) or the coords to recompute it")
    if int(grid) < 1:
        raise ValueError(f"grid {grid} must be at least 1")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction {val_fraction} must be in (0, 1)")
    names = list(layer_names) if layer_names is not None else [f"layer{l}" for l in range(n_layers)]
    if len(names) != n_layers:
        raise ValueError(f"{len(names)} layer names for {n_layers} layers")
    meta = {
        "format": FORMAT,
        "d": str(d),
        "grid": str(int(grid)),
        "n_voxels": str(v),
        "widths": json.dumps(widths),
        "coord_min": json.dumps(cmin),
        "coord_scale": json.dumps(cscale),
        "layer_names": json.dumps(names),
        "model": model,
        "val_fraction": json.dumps(float(val_fraction)),
    }
    return {k: sd[k] for k in expected}, meta


def convert_checkpoint(src, dst, *, grid: int, coords=None, coord_min=None, coord_scale=None, layer_names=None,
                       model: str | None = None, val_fraction: float = 0.1) -> Path:
    """Reads a PyTorch FactorTopy checkpoint (``.pth``/``.pt`` or ``.safetensors``) and writes a
    factortopy ``encoder.safetensors`` to ``dst`` (see :func:`convert_state_dict` for the
    arguments). ``model`` defaults to the checkpoint's file name.

    Parameters
    ----------
    src : str or os.PathLike
        The checkpoint.
    dst : str or os.PathLike
        The encoder file to write.
    grid, coords, coord_min, coord_scale, layer_names, model, val_fraction
        As in :func:`convert_state_dict`.

    Returns
    -------
    pathlib.Path
        ``dst``.
    """
    tensors, meta = convert_state_dict(
        load_state_dict(src),
        grid=grid,
        coords=coords,
        coord_min=coord_min,
        coord_scale=coord_scale,
        layer_names=layer_names,
        model=model if model is not None else Path(src).stem,
        val_fraction=val_fraction,
    )
    write_safetensors(dst, tensors, meta)
    return Path(dst)


__all__ = [
    "convert_checkpoint",
    "convert_state_dict",
    "load_state_dict",
    "coord_normalisation",
    "read_safetensors",
    "write_safetensors",
]
