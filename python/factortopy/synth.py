"""Synthetic data with a planted hierarchy (DESIGN §8): the built-in network and brain, or a brain
planted on a real network's own features, where the right answer is known."""

from __future__ import annotations

import os

from ._lib import call, encode_path
from .config import Config
from .data import Brain, Features, _Handle, _new_handle

SCENARIOS = {"hierarchical": 0, "reversed": 1, "flat-early": 2, "flat-late": 3, "shuffled": 4}
_FIELDS = ("n_images", "n_voxels", "n_layers", "width", "grid", "noise_ceiling", "signal_fraction", "seed")


#: The setter of ``ft_fit_config`` behind each option.
_SETTERS = {
    "n_voxels": "synth_voxels",
    "n_layers": "synth_layers",
    "width": "synth_width",
    "grid": "synth_grid",
    "noise_ceiling": "noise_ceiling",
    "signal_fraction": "signal_fraction",
    "seed": "seed",
}


def _config(scenario: str, overrides: dict, prf_size: float | None) -> Config:
    """The generator's settings: one setter per option, each checked by the library."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")
    for k in overrides:
        if k not in _FIELDS:
            raise TypeError(f"unknown synth option {k!r}; expected one of {', '.join(_FIELDS)}")
    c = Config("auto", overrides.get("n_images", 0))
    c.set("scenario", SCENARIOS[scenario])
    for k, v in overrides.items():
        if k != "n_images":
            c.set(_SETTERS[k], v, what=k)
    # None is one grid cell (the setter's negative value); the library checks the rest.
    if prf_size is not None and not float(prf_size) >= 0.0:
        raise ValueError(f"prf_size must be a fraction of the image in [0, 1], got {prf_size}")
    c.set("prf_size", -1.0 if prf_size is None else float(prf_size))
    return c


def write(
    directory: str | os.PathLike, scenario: str = "hierarchical", *, prf_size: float | None = None, **options
) -> None:
    """Writes features.safetensors, brain.safetensors and truth.safetensors into ``directory``
    (options: n_images, n_voxels, n_layers, width, grid, noise_ceiling, signal_fraction, seed).
    ``prf_size``: side of each signal voxel's receptive field as a fraction of the image (its
    layer's map is averaged over that window at the layer's own resolution); None: one grid cell;
    0: point sampling of the maps resampled to the grid (the CLI's ``synth --prf-size``).

    Parameters
    ----------
    directory : str or os.PathLike
        The folder to write into (created if needed).
    scenario : str
        One of ``SCENARIOS`` (default ``"hierarchical"``).
    prf_size : float, optional
        Receptive-field side as a fraction of the image, in [0, 1]; None: one grid cell.
    **options
        ``n_images``, ``n_voxels``, ``n_layers``, ``width``, ``grid``, ``noise_ceiling``,
        ``signal_fraction``, ``seed`` (the defaults of ``factortopy synth``).
    """
    c = _config(scenario, options, prf_size)
    call("ft_synth_write_with", c.handle, encode_path(directory))


def plant(
    features: Features,
    scenario: str = "hierarchical",
    *,
    directory: str | os.PathLike | None = None,
    prf_size: float | None = None,
    **options,
) -> Brain:
    """Plants a brain on ``features`` (the CLI's ``synth --from-features``): each ROI reads from the
    layer, location and scale the scenario prescribes. Returns it z-scored; with ``directory``, also
    writes brain.safetensors and truth.safetensors there. Options: n_voxels, grid,
    noise_ceiling, signal_fraction, seed; ``prf_size`` as in ``write`` (default one grid cell).

    Parameters
    ----------
    features : Features
        The network's features to plant on.
    scenario : str
        One of ``SCENARIOS`` (default ``"hierarchical"``).
    directory : str or os.PathLike, optional
        Also write brain.safetensors and truth.safetensors here.
    prf_size : float, optional
        Receptive-field side as a fraction of the image, in [0, 1]; None: one grid cell.
    **options
        ``n_voxels``, ``grid``, ``noise_ceiling``, ``signal_fraction``, ``seed``.

    Returns
    -------
    Brain
        The planted brain, z-scored.
    """
    c = _config(scenario, options, prf_size)
    b = Brain.__new__(Brain)
    ptr = _new_handle("ft_synth_plant_with", c.handle, features.handle, None if directory is None else encode_path(directory))
    _Handle.__init__(b, ptr)
    return b


__all__ = ["SCENARIOS", "write", "plant"]
