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
import numbers
import os
import re
import stat
import struct
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

FORMAT = "factortopy-encoder/1"

# The library's limits on sizes read from files (src/data/limits.rs, docs/limits.md): an encoder
# written here is one the library's loader accepts, and a hostile checkpoint is refused before
# it is read into memory. A test compares these numbers with the Rust constants.
MAX_ELEMENTS = 2**31
MAX_D = 8192
MAX_GRID = 256
MAX_LAYERS = 4096
MAX_FILE_BYTES = 64 << 30
# The safetensors format's own bound on a header.
MAX_HEADER_BYTES = 100_000_000

_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
}


def _open_regular(path):
    """``path`` opened for binary reading, refused (``ValueError`` naming it) unless it is a
    regular file of at most ``MAX_FILE_BYTES``: a FIFO would block the open or the read
    forever, ``/dev/zero`` (or a symlink to it) never ends, and a directory has no bytes. The
    file is opened without blocking and checked again on the open descriptor, since the path
    may be replaced between the two checks. Returns ``(file, size)``."""
    path = Path(path)

    def check(st):
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a device, FIFO or socket"
            raise ValueError(f"{path}: is {kind}, not a regular file; only regular files are read")
        if st.st_size > MAX_FILE_BYTES:
            raise ValueError(f"{path}: is {st.st_size} bytes, over the {MAX_FILE_BYTES} byte limit on input files")
        return st.st_size

    check(os.stat(path))
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        size = check(os.fstat(fd))
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return f, size


def _shape(path, name, info) -> tuple[int, ...]:
    shape = info.get("shape") if isinstance(info, dict) else None
    if not isinstance(shape, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in shape):
        raise ValueError(f"{path}: tensor `{name}` has shape {shape!r}; expected a list of non-negative integers")
    n = 1
    for x in shape:
        n *= x
    if n > MAX_ELEMENTS:
        raise ValueError(f"{path}: tensor `{name}` of shape {shape} has more than {MAX_ELEMENTS} elements (the limit on one array)")
    return tuple(shape)


def read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors (as float32/int numpy arrays) and metadata of a safetensors file. Handles F64,
    F32, F16, BF16, I64 and I32. Only regular files are read (see ``MAX_FILE_BYTES``); the header
    and every tensor's shape and byte range are checked before any tensor is built.

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
    f, size = _open_regular(path)
    with f:
        if size < 8:
            raise ValueError(f"{path}: too short to be a safetensors file")
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise ValueError(f"{path}: header length {n} runs past the end of the file or over {MAX_HEADER_BYTES} bytes")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise ValueError(f"{path}: the header is not valid JSON: {e}") from None
        if not isinstance(header, dict):
            raise ValueError(f"{path}: the header is not a JSON object")
        # `size` bounds the read even if the file grows while it is read.
        data = f.read(size - 8 - n)
    body = memoryview(data)
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, info in header.items():
        shape = _shape(path, name, info)
        dt = info.get("dtype")
        if dt == "BF16":
            itemsize = 2
        elif dt in _SAFETENSORS_DTYPES:
            itemsize = np.dtype(_SAFETENSORS_DTYPES[dt]).itemsize
        else:
            raise ValueError(f"{path}: tensor `{name}` has unsupported dtype {dt}")
        offsets = info.get("data_offsets")
        want = int(np.prod(shape, dtype=np.int64)) * itemsize
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= len(body)
            or offsets[1] - offsets[0] != want
        ):
            raise ValueError(
                f"{path}: tensor `{name}` has data_offsets {offsets!r}; its shape {list(shape)} of {dt} needs {want} bytes "
                f"inside the {len(body)} data bytes"
            )
        raw = body[offsets[0] : offsets[1]]
        if dt == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_SAFETENSORS_DTYPES[dt]).newbyteorder("<"))
        out[name] = arr.reshape(shape)
    return out, meta


def write_safetensors(path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> None:
    """Writes float32 tensors and string metadata as safetensors, atomically: a hidden temporary
    file beside ``path`` (``.<name>.<pid>.<n>.tmp``, the library's naming, so the library's next
    write to the folder removes it if this process is killed before the rename), synced, then
    renamed over ``path``. On any failure the temporary file is removed and ``path`` is as it
    was.

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
    global _TEMP_COUNTER
    _TEMP_COUNTER += 1
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_TEMP_COUNTER}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_TEMP_COUNTER = 0


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

        f, _ = _open_regular(path)
        with f:
            obj = torch.load(f, map_location="cpu", weights_only=True)
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
    if n_layers > MAX_LAYERS:
        raise ValueError(f"the state dict has {n_layers} layers; at most {MAX_LAYERS} are supported")
    grid = _grid(grid)
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
    if v < 1:
        raise ValueError("`weight` has no rows; an encoder needs at least one voxel")
    if not 1 <= d <= MAX_D:
        raise ValueError(f"`weight` has shape {list(w.shape)}: the bottleneck width D must be between 1 and {MAX_D}")
    if v * d > MAX_ELEMENTS:
        raise ValueError(f"`weight` of shape {list(w.shape)} has more than {MAX_ELEMENTS} elements (the limit on one array)")
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
        c = int(loc.shape[1])
        if c < 1 or d * c > MAX_ELEMENTS:
            raise ValueError(f"local_token_bottleneck.{l}.weight has shape {list(loc.shape)}; a layer's width must be at least 1 and D·C at most {MAX_ELEMENTS}")
        widths.append(c)
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
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction {val_fraction} must be in (0, 1)")
    names = list(layer_names) if layer_names is not None else [f"layer{l}" for l in range(n_layers)]
    if len(names) != n_layers:
        raise ValueError(f"{len(names)} layer names for {n_layers} layers")
    meta = {
        "format": FORMAT,
        "d": str(d),
        "grid": str(grid),
        "n_voxels": str(v),
        "widths": json.dumps(widths),
        "coord_min": json.dumps(cmin),
        "coord_scale": json.dumps(cscale),
        "layer_names": json.dumps(names),
        "model": model,
        "val_fraction": json.dumps(float(val_fraction)),
    }
    return {k: sd[k] for k in expected}, meta


def _grid(grid) -> int:
    """The grid G as the library reads it: an integer (not a float that would be truncated, nor a
    bool) between 1 and ``MAX_GRID``."""
    if isinstance(grid, bool) or not isinstance(grid, numbers.Integral):
        raise ValueError(f"grid must be an integer, got {grid!r}")
    if not 1 <= int(grid) <= MAX_GRID:
        raise ValueError(f"grid must be between 1 and {MAX_GRID}, got {grid}")
    return int(grid)


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
