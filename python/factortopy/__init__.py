"""factortopy: how brain-like is a vision network's hierarchy, and how much of it does
fine-tuning destroy? A thin ctypes wrapper over the library's C ABI (``include/factortopy.h``).

    import factortopy as ft
    brain = ft.Brain.load("brain.safetensors")
    feats = ft.Features.load("features.safetensors")
    result = ft.fit(feats, brain, ft.FitOptions.preset("fast"))
    print(result.summary["slope"])

``factortopy.hooks`` collects features from a ``torch.nn.Module``; ``factortopy.callbacks`` has a
PyTorch Lightning ``Callback`` and a Hugging Face ``TrainerCallback`` (each imported only when its
framework is installed).
"""

from ._lib import LibraryNotFoundError, candidate_paths
from .data import Brain, Features
from .errors import (
    BackendError,
    BusyError,
    DataError,
    DeviceError,
    DtypeError,
    FactortopyError,
    FactortopyIOError,
    FactortopyMemoryError,
    InternalError,
    InvalidArgumentError,
    MismatchError,
    NullArgumentError,
    NumericError,
    ShapeError,
)
from .fitting import Fit, FitOptions, device_available, fit, predict, rank, score
from .monitor import Monitor, MonitorOptions, StepReport
from .plotting import plot, write_fit_dir
from .grid import RankGridError, rank_grid
from . import convert, grid, resampling, synth

__version__ = "0.2.0"


def library_version() -> str:
    """The version of the loaded shared library (it must match this package's).

    Returns
    -------
    str
        E.g. ``"0.2.0"``.
    """
    from ._lib import lib

    return lib().ft_version().decode()


def library_path():
    """Where the loaded shared library is (inside the package for an installed wheel).

    Returns
    -------
    pathlib.Path
    """
    from ._lib import lib

    return lib().path


__all__ = [
    "Brain",
    "Features",
    "Fit",
    "FitOptions",
    "fit",
    "score",
    "predict",
    "device_available",
    "rank",
    "rank_grid",
    "RankGridError",
    "grid",
    "plot",
    "write_fit_dir",
    "convert",
    "resampling",
    "Monitor",
    "MonitorOptions",
    "StepReport",
    "synth",
    "library_version",
    "library_path",
    "candidate_paths",
    "LibraryNotFoundError",
    "FactortopyError",
    "NullArgumentError",
    "InvalidArgumentError",
    "ShapeError",
    "DtypeError",
    "DeviceError",
    "DataError",
    "FactortopyIOError",
    "MismatchError",
    "NumericError",
    "BackendError",
    "BusyError",
    "InternalError",
    "FactortopyMemoryError",
]
