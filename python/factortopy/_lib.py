"""Finding and loading the factortopy shared library, and the ctypes declarations of its C ABI
(``include/factortopy.h``). Everything else in the package goes through ``lib()`` and ``check()``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_double,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

from .errors import InvalidArgumentError, error_for_status

ENV_VAR = "FACTORTOPY_LIB"

if sys.platform == "darwin":
    LIB_NAME = "libfactortopy.dylib"
elif sys.platform == "win32":
    LIB_NAME = "factortopy.dll"
else:
    LIB_NAME = "libfactortopy.so"


class LibraryNotFoundError(ImportError):
    """The shared library was not found in any of the places listed in the message."""


def candidate_paths() -> list[Path]:
    """Where the library is looked for, in order: ``$FACTORTOPY_LIB`` (a file, or a folder holding
    it), the package folder (``pip install ./python`` copies a built library there), then the cargo
    target folders (``$CARGO_TARGET_DIR``, and ``target/{release,debug}`` of the repository this
    package sits in or of the current directory and its parents)."""
    out: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env)
        out.append(p / LIB_NAME if p.is_dir() else p)
    here = Path(__file__).resolve().parent
    out.append(here / LIB_NAME)
    targets: list[Path] = []
    if os.environ.get("CARGO_TARGET_DIR"):
        targets.append(Path(os.environ["CARGO_TARGET_DIR"]))
    for base in [here, *here.parents, Path.cwd(), *Path.cwd().parents]:
        if (base / "Cargo.toml").is_file():
            targets.append(base / "target")
    seen = set()
    for t in targets:
        for profile in ("release", "debug"):
            p = t / profile / LIB_NAME
            if p not in seen:
                seen.add(p)
                out.append(p)
    return out


def _find() -> Path:
    looked = candidate_paths()
    env = os.environ.get(ENV_VAR)
    if env and not looked[0].is_file():
        raise LibraryNotFoundError(
            f"{ENV_VAR}={env} but {looked[0]} is not a file; point it at {LIB_NAME} "
            "(or the folder that holds it)"
        )
    for p in looked:
        if p.is_file():
            return p
    listing = "\n  ".join(str(p) for p in looked)
    raise LibraryNotFoundError(
        f"factortopy could not find its shared library {LIB_NAME}. Looked in:\n  {listing}\n"
        f"Build it with `cargo build --release` in the repository, then set {ENV_VAR} to "
        f"target/release/{LIB_NAME} or reinstall this package (`pip install ./python`)."
    )


# ---------------------------------------------------------------------------------------------
# Structs (field order and types exactly as in include/factortopy.h)


class FtTensor(Structure):
    _fields_ = [
        ("data", c_void_p),
        ("dtype", c_int32),
        ("ndim", c_size_t),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
    ]


class DLDevice(Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(Structure):
    _fields_ = [
        ("data", c_void_p),
        ("device", DLDevice),
        ("ndim", c_int32),
        ("dtype", DLDataType),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
        ("byte_offset", c_uint64),
    ]


class DLManagedTensor(Structure):
    pass


DLManagedTensor._fields_ = [
    ("dl_tensor", DLTensor),
    ("manager_ctx", c_void_p),
    ("deleter", ctypes.CFUNCTYPE(None, POINTER(DLManagedTensor))),
]


class FtLayerView(Structure):
    _fields_ = [
        ("local", POINTER(ctypes.c_float)),
        ("local_shape", c_int64 * 4),
        ("global_", POINTER(ctypes.c_float)),
        ("global_shape", c_int64 * 2),
    ]


class FtBrainArrays(Structure):
    _fields_ = [
        ("responses", POINTER(FtTensor)),
        ("coords", POINTER(FtTensor)),
        ("roi", POINTER(c_int32)),
        ("roi_len", c_size_t),
        ("noise_ceiling", POINTER(FtTensor)),
        ("flat", POINTER(FtTensor)),
        ("metadata_json", c_char_p),
        ("zscore", c_int32),
    ]


class FtSynthOptions(Structure):
    _fields_ = [
        ("scenario", c_int32),
        ("n_images", c_size_t),
        ("n_voxels", c_size_t),
        ("n_layers", c_size_t),
        ("width", c_size_t),
        ("grid", c_size_t),
        ("noise_ceiling", c_double),
        ("signal_fraction", c_double),
        ("seed", c_uint64),
    ]


class FtFitOptions(Structure):
    _fields_ = [
        ("seed", c_uint64),
        ("val_fraction", c_double),
        ("max_epochs", c_uint32),
        ("batch_size", c_uint32),
        ("lr", c_double),
        ("weight_decay", c_double),
        ("d", c_uint32),
        ("grid", c_uint32),
        ("patience", c_uint32),
        ("reg_steps", c_uint32),
        ("max_steps", c_uint64),
        ("max_seconds", c_double),
        ("weighted", c_int32),
    ]


class FtFitSummary(Structure):
    _fields_ = [
        ("n_images", c_size_t),
        ("n_voxels", c_size_t),
        ("n_layers", c_size_t),
        ("slope", c_double),
        ("b0", c_double),
        ("b1", c_double),
        ("spearman", c_double),
        ("r2_mean", c_double),
        ("r2_median", c_double),
        ("pearson_mean", c_double),
    ]


class FtMonitorOptions(Structure):
    _fields_ = [
        ("fit", FtFitOptions),
        ("held_out_fraction", c_double),
        ("refit_every", c_uint32),
        ("refit_max_steps", c_uint32),
        ("refit_max_seconds", c_double),
        ("forgetting_threshold", c_double),
    ]


class FtStepSummary(Structure):
    _fields_ = [
        ("step", c_uint64),
        ("observation", c_uint64),
        ("retention", c_double),
        ("forgetting", c_double),
        ("r2", c_double),
        ("reference_r2", c_double),
        ("n_layers", c_size_t),
        ("min_cka", c_double),
        ("mean_cka", c_double),
        ("should_stop", c_bool),
        ("refitted", c_bool),
        ("layer_shift", c_double),
        ("argmax_moved", c_double),
        ("slope", c_double),
        ("b0", c_double),
        ("b1", c_double),
        ("spearman", c_double),
        ("refit_r2", c_double),
    ]


# ---------------------------------------------------------------------------------------------
# Functions

_P = POINTER
_handle = c_void_p
_status = c_int32

# name: (argtypes, restype)
_SIGNATURES = {
    "ft_version": ([], c_char_p),
    "ft_last_error": ([], c_char_p),
    "ft_status_name": ([c_int32], c_char_p),
    "ft_string_free": ([c_void_p], None),
    "ft_bytes_free": ([c_void_p, c_size_t], None),
    "ft_brain_load": ([c_char_p, _P(_handle)], _status),
    "ft_brain_new": ([_P(FtBrainArrays), _P(_handle)], _status),
    "ft_brain_save": ([_handle, c_char_p], _status),
    "ft_brain_info_json": ([_handle, _P(c_void_p)], _status),
    "ft_brain_free": ([_handle], None),
    "ft_brain_shape": ([_handle, _P(c_size_t), _P(c_size_t)], _status),
    "ft_features_new": ([_P(_handle)], _status),
    "ft_features_load": ([c_char_p, _P(_handle)], _status),
    "ft_features_open": ([c_char_p, _P(_handle)], _status),
    "ft_features_free": ([_handle], None),
    "ft_features_shape": ([_handle, _P(c_size_t), _P(c_size_t)], _status),
    "ft_features_add_layer": ([_handle, _P(FtTensor), _P(FtTensor)], _status),
    "ft_features_add_layer_dlpack": ([_handle, _P(DLTensor), _P(DLTensor)], _status),
    "ft_features_layer": ([_handle, c_size_t, _P(FtLayerView)], _status),
    "ft_features_layer_copy": (
        [_handle, c_size_t, _P(FtLayerView), _P(ctypes.c_float), c_size_t, _P(ctypes.c_float), c_size_t],
        _status,
    ),
    "ft_features_set_metadata": ([_handle, c_char_p], _status),
    "ft_features_save": ([_handle, c_char_p], _status),
    "ft_synth_options_default": ([_P(FtSynthOptions)], _status),
    "ft_synth_write": ([c_char_p, _P(FtSynthOptions)], _status),
    "ft_synth_plant": ([_handle, _P(FtSynthOptions), c_char_p, _P(_handle)], _status),
    "ft_fit_options_default": ([_P(FtFitOptions)], _status),
    "ft_fit_options_preset": ([c_char_p, _P(FtFitOptions)], _status),
    "ft_fit_options_for_images": ([c_size_t, _P(FtFitOptions)], _status),
    "ft_monitor_options_for_images": ([c_size_t, _P(FtMonitorOptions)], _status),
    "ft_fit_new": ([_handle, _handle, _P(FtFitOptions), _P(_handle)], _status),
    "ft_fit_load": ([c_char_p, _handle, _handle, c_int32, _P(_handle)], _status),
    "ft_fit_free": ([_handle], None),
    "ft_fit_report_summary": ([_handle, _P(FtFitSummary)], _status),
    "ft_fit_report_json": ([_handle, _P(c_void_p)], _status),
    "ft_fit_save_encoder": ([_handle, c_char_p], _status),
    "ft_rank": ([_P(_handle), c_size_t, _handle, _P(FtFitOptions), c_int32, _P(c_void_p)], _status),
    "ft_score_write_dir": ([c_char_p, _handle, _handle, c_int32, c_int32, c_char_p], _status),
    "ft_plot": ([c_char_p, _handle, c_char_p, c_char_p, c_uint32, c_uint32, c_uint32, _P(c_void_p)], _status),
    "ft_monitor_options_default": ([_P(FtMonitorOptions)], _status),
    "ft_monitor_new": ([_handle, _handle, _P(FtMonitorOptions), _P(_handle)], _status),
    "ft_monitor_new_from_encoder": ([_handle, _handle, c_char_p, _P(FtMonitorOptions), _P(_handle)], _status),
    "ft_monitor_observe": ([_handle, c_uint64, _handle, _P(_handle)], _status),
    "ft_monitor_save": ([_handle, c_char_p], _status),
    "ft_monitor_load": ([c_char_p, _handle, _P(_handle)], _status),
    "ft_monitor_save_bytes": ([_handle, _P(c_void_p), _P(c_size_t)], _status),
    "ft_monitor_load_bytes": ([c_void_p, c_size_t, _handle, _P(_handle)], _status),
    "ft_monitor_set_history_file": ([_handle, c_char_p], _status),
    "ft_monitor_history_json": ([_handle, _P(c_void_p)], _status),
    "ft_monitor_write_curves": ([_handle, c_char_p], _status),
    "ft_monitor_free": ([_handle], None),
    "ft_step_report_summary": ([_handle, _P(FtStepSummary)], _status),
    "ft_step_report_cka": ([_handle, _P(c_double), c_size_t], _status),
    "ft_step_report_json": ([_handle, _P(c_void_p)], _status),
    "ft_step_report_free": ([_handle], None),
    "ft_device_check": ([c_char_p], _status),
    "ft_fit_new_on": ([_handle, _handle, _P(FtFitOptions), c_char_p, _P(_handle)], _status),
    "ft_fit_load_on": ([c_char_p, _handle, _handle, c_int32, c_char_p, _P(_handle)], _status),
    "ft_fit_predict": ([_handle, _handle, _handle, c_char_p, _P(ctypes.c_float), c_size_t], _status),
    "ft_encoder_n_voxels": ([c_char_p, _P(c_size_t)], _status),
    "ft_predict_encoder": ([c_char_p, _handle, _handle, c_char_p, _P(ctypes.c_float), c_size_t], _status),
    "ft_rank_on": ([_P(_handle), c_size_t, _handle, _P(FtFitOptions), c_int32, c_char_p, _P(c_void_p)], _status),
    "ft_monitor_new_on": ([_handle, _handle, _P(FtMonitorOptions), c_char_p, _P(_handle)], _status),
    "ft_monitor_new_from_encoder_on": (
        [_handle, _handle, c_char_p, _P(FtMonitorOptions), c_char_p, _P(_handle)],
        _status,
    ),
    "ft_monitor_set_device": ([_handle, c_char_p], _status),
    "ft_fit_options_preset_resample": ([c_char_p, _P(c_char_p)], _status),
    "ft_fit_options_preset_layer_units": ([c_char_p, _P(c_char_p)], _status),
    "ft_synth_write_rf": ([c_char_p, _P(FtSynthOptions), c_double], _status),
    "ft_synth_plant_rf": ([_handle, _P(FtSynthOptions), c_double, c_char_p, _P(_handle)], _status),
    "ft_fit_new_resampled": ([_handle, _handle, _P(FtFitOptions), c_char_p, c_char_p, _P(_handle)], _status),
    "ft_rank_resampled": (
        [_P(_handle), c_size_t, _handle, _P(FtFitOptions), c_int32, c_char_p, c_char_p, _P(c_void_p)],
        _status,
    ),
    "ft_monitor_new_resampled": ([_handle, _handle, _P(FtMonitorOptions), c_char_p, c_char_p, _P(_handle)], _status),
    "ft_rank_plan": (
        # networks, n_networks, brains, n_brains, options, method, device, resample, with_layers, out_dir, out
        [_P(c_char_p), c_size_t, _P(c_char_p), c_size_t, _P(FtFitOptions), c_int32, c_char_p, c_char_p, c_int32, c_char_p, _P(c_void_p)],
        _status,
    ),
    "ft_rank_pair": (
        # network_path, brain_path, network, subject, options, method, device, resample, with_layers, out
        [c_char_p, c_char_p, c_size_t, c_size_t, _P(FtFitOptions), c_int32, c_char_p, c_char_p, c_int32, _P(c_void_p)],
        _status,
    ),
    "ft_rank_store": ([c_char_p, c_char_p], _status),
    "ft_rank_load": ([c_char_p, c_char_p, c_size_t, c_size_t, _P(c_void_p)], _status),
    "ft_rank_combine": ([_P(c_char_p), c_size_t, _P(c_void_p)], _status),
    "ft_rank_grid": (
        [_P(c_char_p), c_size_t, _P(c_char_p), c_size_t, _P(FtFitOptions), c_int32, c_char_p, c_char_p, c_int32, c_char_p, _P(c_void_p)],
        _status,
    ),
    "ft_brain_file_header": ([c_char_p, _P(c_void_p)], _status),
    "ft_resample": (
        # input, input_len, n, channels, height, width, out_height, out_width, resample, out, capacity
        [_P(ctypes.c_float), c_size_t, c_size_t, c_size_t, c_size_t, c_size_t, c_size_t, c_size_t, c_char_p, _P(ctypes.c_float), c_size_t],
        _status,
    ),
}

#: The setters of ``ft_fit_config`` (``ft_fit_config_set_<name>``), each with the C type of its
#: value (``c_char_p``: a string, or NULL where the header allows it).
CONFIG_SETTERS = {
    "seed": c_uint64,
    "val_fraction": c_double,
    "max_epochs": c_size_t,
    "batch_size": c_size_t,
    "lr": c_double,
    "weight_decay": c_double,
    "d": c_size_t,
    "grid": c_size_t,
    "patience": c_size_t,
    "reg_steps": c_size_t,
    "max_steps": c_uint64,
    "max_seconds": c_double,
    "clip_norm": c_double,
    "beta": c_double,
    "reg_lambda": c_double,
    "min_delta": c_double,
    "resample": c_char_p,
    "layer_units": c_char_p,
    "store": c_char_p,
    "method": c_char_p,
    "device": c_char_p,
    "weighted": c_bool,
    "bootstrap": c_size_t,
    "bootstrap_level": c_double,
    "permutations": c_size_t,
    "held_out_fraction": c_double,
    "refit_every": c_size_t,
    "refit_max_steps": c_size_t,
    "refit_max_seconds": c_double,
    "forgetting_threshold": c_double,
    "scenario": c_int32,
    "synth_voxels": c_size_t,
    "synth_layers": c_size_t,
    "synth_width": c_size_t,
    "synth_grid": c_size_t,
    "noise_ceiling": c_double,
    "signal_fraction": c_double,
    "prf_size": c_double,
    "score_layers": c_bool,
}

_SIGNATURES.update(
    {
        "ft_fit_config_new": ([c_char_p, c_size_t, _P(_handle)], _status),
        "ft_fit_config_free": ([_handle], None),
        "ft_fit_config_json": ([_handle, _P(c_void_p)], _status),
        "ft_fit_with": ([_handle, _handle, _handle, _P(_handle)], _status),
        "ft_fit_load_with": ([_handle, c_char_p, _handle, _handle, _P(_handle)], _status),
        "ft_monitor_with": ([_handle, _handle, _handle, _P(_handle)], _status),
        "ft_monitor_from_encoder_with": ([_handle, _handle, _handle, c_char_p, _P(_handle)], _status),
        "ft_rank_with": ([_handle, _P(_handle), c_size_t, _handle, _P(c_void_p)], _status),
        # cfg, networks, n_networks, brains, n_brains, out_dir, out
        "ft_rank_plan_with": ([_handle, _P(c_char_p), c_size_t, _P(c_char_p), c_size_t, c_char_p, _P(c_void_p)], _status),
        "ft_rank_grid_with": ([_handle, _P(c_char_p), c_size_t, _P(c_char_p), c_size_t, c_char_p, _P(c_void_p)], _status),
        # cfg, network_path, brain_path, network, subject, out
        "ft_rank_pair_with": ([_handle, c_char_p, c_char_p, c_size_t, c_size_t, _P(c_void_p)], _status),
        "ft_synth_write_with": ([_handle, c_char_p], _status),
        "ft_synth_plant_with": ([_handle, _handle, c_char_p, _P(_handle)], _status),
    }
)
_SIGNATURES.update({f"ft_fit_config_set_{name}": ([_handle, ctype], _status) for name, ctype in CONFIG_SETTERS.items()})

_LIB = None
#: True in a child forked from a process that had loaded the library: the library's worker
#: threads did not come along, so a parallel fit in the child would wait for them forever.
FORKED_AFTER_LOAD = False


def _after_fork_in_child() -> None:
    global FORKED_AFTER_LOAD
    if _LIB is not None:
        FORKED_AFTER_LOAD = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def lib() -> ctypes.CDLL:
    """The loaded library with every function's signature declared (loaded once)."""
    global _LIB
    if _LIB is None:
        path = _find()
        try:
            cdll = ctypes.CDLL(str(path))
        except OSError as e:
            raise LibraryNotFoundError(f"found {path} but could not load it: {e}") from e
        missing = [name for name in _SIGNATURES if not hasattr(cdll, name)]
        if missing:
            raise LibraryNotFoundError(
                f"{path} is an older factortopy library without {', '.join(missing)}; rebuild it "
                "with `cargo build --release`"
            )
        for name, (args, res) in _SIGNATURES.items():
            fn = getattr(cdll, name)
            fn.argtypes = args
            fn.restype = res
        cdll.path = path
        _LIB = cdll
    return _LIB


def call(name: str, *args) -> None:
    """Calls a fallible entry point and raises the matching exception (with the library's
    message) when it does not return FT_OK."""
    lib_ = lib()
    status = getattr(lib_, name)(*args)
    if status != 0:
        msg = (lib_.ft_last_error() or b"").decode("utf-8", "replace")
        status_name = (lib_.ft_status_name(status) or b"?").decode()
        raise error_for_status(status, status_name, msg or f"{name} failed")


_INT_RANGES = {
    c_int32: (-(2**31), 2**31 - 1),
    c_int64: (-(2**63), 2**63 - 1),
    c_uint32: (0, 2**32 - 1),
    c_uint64: (0, 2**64 - 1),
    c_size_t: (0, 2 ** (8 * ctypes.sizeof(c_size_t)) - 1),
}


def c_int(ctype, value, what: str) -> int:
    """``value`` as an integer for the C type ``ctype``, refused (``InvalidArgumentError``, a
    ``ValueError``) when it is not an integer or lies outside the type's range: ctypes would wrap
    ``-1`` to ``2**32 - 1`` without a word. The one range check of every integer handed to C."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(f"{what} must be an integer, got {value!r}", "FT_ERR_INVALID_ARGUMENT")
    lo, hi = _INT_RANGES[ctype]
    if not lo <= int(value) <= hi:
        raise InvalidArgumentError(
            f"{what} = {int(value)} is outside the range of its C type ({lo} to {hi})", "FT_ERR_INVALID_ARGUMENT"
        )
    return int(value)


def set_field(struct: Structure, name: str, value, what: str | None = None) -> None:
    """Sets a field of an options struct, with integers range-checked by ``c_int``."""
    ctype = dict(struct._fields_)[name]
    if ctype in _INT_RANGES:
        value = c_int(ctype, value, what or name)
    setattr(struct, name, value)


def struct_dict(s: Structure) -> dict:
    """A summary struct as a dict, with the C ABI's NaN for an undefined score (hierarchy scores
    of one ROI level or one depth, a step that did not refit) turned into ``None``: Python callers
    never get an undefined number that looks like a number."""
    out = {}
    for name, _ in s._fields_:
        v = getattr(s, name)
        out[name] = None if isinstance(v, float) and v != v else v
    return out


def take_string(p: c_void_p) -> str:
    """Reads and frees a string the library returned."""
    try:
        return ctypes.string_at(p).decode("utf-8")
    finally:
        lib().ft_string_free(p)


def encode_path(path) -> bytes:
    return os.fsencode(os.fspath(path))


def last_error_message() -> str:
    """The library's message for the last failed call on this thread."""
    return (lib().ft_last_error() or b"").decode("utf-8", "replace")
