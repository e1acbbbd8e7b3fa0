"""Ranking a model zoo over several subjects, on one machine or on a cluster.

A grid is every candidate network (a features file) × every subject (a brain file, the same
images for all). Pairs travel as file paths and settings, never as arrays, so any
``concurrent.futures.Executor`` can fit them where the files are visible (shared storage): a
``ProcessPoolExecutor`` on one machine, a dask ``Client.get_executor()`` on a ``LocalCluster``,
SSH, Kubernetes or Slurm (dask-jobqueue) cluster, or Ray's executor. The parent plans the grid
(headers and digests only), skips pairs a previous run stored in ``out``, and combines the
outcomes into the ranking (DESIGN §1.3): per subject, and over subjects with t-intervals and
paired t-tests, subjects as the random effect."""

from __future__ import annotations

import ctypes
import json
import os
from ctypes import c_char_p, c_void_p
from typing import Callable, Sequence

from ._lib import call, encode_path, take_string
from .errors import FactortopyError

_METHODS = {"factortopy": 0, "ridge": 1}


def _config(options, method: str, with_layers: bool, n_images: int):
    """The library's settings of a grid: the fit options', the method and the layer scores."""
    c = options.method_config(n_images, method)
    if with_layers:
        c.set("score_layers", True)
    return c


class RankGridError(FactortopyError, RuntimeError):
    """Some pairs of a grid failed. ``failures`` lists ``(network_path, subject, message)`` for
    each; the other pairs finished (and were stored when ``out`` was given, so a rerun fits only
    the failed ones)."""

    status = "FT_ERR_RANK_PAIRS"

    def __init__(self, failures: list[tuple[str, str, str]], total: int):
        self.failures = failures
        lines = "; ".join(f"{net} × {subject}: {msg}" for net, subject, msg in failures)
        super().__init__(f"{len(failures)} of {total} pairs failed: {lines}")


def brain_file_header(path) -> dict:
    """``n_images``, ``n_voxels`` and ``subject`` of a brain file, from its header alone."""
    out = c_void_p()
    call("ft_brain_file_header", encode_path(path), ctypes.byref(out))
    return json.loads(take_string(out))


def _paths(items, what: str) -> list[bytes]:
    if isinstance(items, (str, bytes, os.PathLike)):
        items = [items]
    paths = [encode_path(p) for p in items]
    if not paths:
        raise ValueError(f"a ranking needs at least one {what}")
    return paths


def _array(paths: list[bytes]):
    return (c_char_p * len(paths))(*paths)


def _check(options, method: str) -> None:
    from .fitting import FitOptions

    if method not in _METHODS:
        raise ValueError(f"unknown rank method {method!r}; expected 'factortopy' or 'ridge'")
    if options is not None and not isinstance(options, FitOptions):
        raise TypeError(f"options must be a FitOptions, got {type(options).__name__}")


def fit_pair(network, brain, network_index: int, subject_index: int, options=None, method: str = "factortopy",
             with_layers: bool = False) -> str:
    """Fits one pair of a grid where it is called (a worker process or a cluster node) and
    returns its outcome as JSON text, for :func:`rank_grid`'s combination. Module-level, so
    executors can pickle it.

    Parameters
    ----------
    network, brain : path-like
        The features file and the brain file.
    network_index, subject_index : int
        The pair's place in the grid.
    options : FitOptions, optional
        The grid's settings (the default schedule when omitted).
    method : {"factortopy", "ridge"}
    with_layers : bool
        Also score every layer with the layer-wise ridge baseline.

    Returns
    -------
    str
        The pair's outcome (JSON).
    """
    from .fitting import FitOptions

    from . import _lib

    _check(options, method)
    if _lib.FORKED_AFTER_LOAD:
        raise RuntimeError(
            "this process was forked from one that had loaded factortopy, whose worker threads do not "
            "survive a fork; start workers with `spawn` or `forkserver` (e.g. ProcessPoolExecutor("
            "mp_context=multiprocessing.get_context('spawn'))); dask and Ray workers already do"
        )
    o = options if options is not None else FitOptions()
    n_images = brain_file_header(brain)["n_images"]
    out = c_void_p()
    cfg = _config(o, method, with_layers, n_images)
    call("ft_rank_pair_with", cfg.handle, encode_path(network), encode_path(brain), network_index, subject_index, ctypes.byref(out))
    return take_string(out)


def rank_grid(
    networks: Sequence,
    brains: Sequence,
    options=None,
    *,
    method: str = "factortopy",
    executor=None,
    with_layers: bool = False,
    out=None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """Fits every network against every subject and ranks the networks.

    Parameters
    ----------
    networks : sequence of path-like
        Features files, one per network.
    brains : path-like or sequence of path-like
        Brain files, one per subject; all must list the same images.
    options : FitOptions, optional
        Settings shared by every pair (the default schedule when omitted).
    method : {"factortopy", "ridge"}
        How each pair is fitted.
    executor : concurrent.futures.Executor, optional
        Where pairs run (each pair is one task: ``fit_pair`` on two paths and the settings).
        ``None`` fits them in this process, one after another.
    with_layers : bool
        Also report each layer's held-out R² per ROI from the layer-wise ridge baseline.
    out : path-like, optional
        Folder that keeps every finished pair (``out/pairs``): a rerun with the same ``out``
        fits only the pairs whose inputs or settings changed or that never finished.
    progress : callable, optional
        Called as ``progress(done, total, label)`` after each pair.

    Returns
    -------
    dict
        The ranking: with one subject the layout of :func:`factortopy.rank`; with several,
        ``subjects`` and ``rows`` (best first by mean slope), each with ``across`` (mean over
        subjects and t-interval of ``slope``, ``spearman``, ``b1``, ``noise_normalized_mean``),
        ``vs_next`` (paired t-test over subjects) and ``subjects`` (the network's row in each
        subject's own ranking). Identical whatever the executor.

    Raises
    ------
    RankGridError
        When pairs failed, naming each by network and subject, after the others finished.
    """
    from .fitting import FitOptions

    _check(options, method)
    o = options if options is not None else FitOptions()
    nets, brs = _paths(networks, "network"), _paths(brains, "brain")
    n_images = brain_file_header(brs[0])["n_images"]
    cfg = _config(o, method, with_layers, n_images)
    out_dir = encode_path(out) if out is not None else None
    if executor is None:
        result = c_void_p()
        call("ft_rank_grid_with", cfg.handle, _array(nets), len(nets), _array(brs), len(brs), out_dir, ctypes.byref(result))
        return json.loads(take_string(result))

    plan_out = c_void_p()
    call("ft_rank_plan_with", cfg.handle, _array(nets), len(nets), _array(brs), len(brs), out_dir, ctypes.byref(plan_out))
    plan = json.loads(take_string(plan_out))
    subjects, jobs = plan["subjects"], plan["jobs"]
    total = len(jobs)
    outcomes: list[str] = []
    pending = []
    for job in jobs:
        if job["done"]:
            text = c_void_p()
            call("ft_rank_load", out_dir, job["digest"].encode(), job["network"], job["subject"], ctypes.byref(text))
            outcomes.append(take_string(text))
        else:
            pending.append(job)
    done = len(outcomes)
    if progress and done:
        progress(done, total, "resumed")

    import concurrent.futures as cf

    futures = {
        executor.submit(
            fit_pair,
            os.fsdecode(nets[j["network"]]),
            os.fsdecode(brs[j["subject"]]),
            j["network"],
            j["subject"],
            o,
            method,
            with_layers,
        ): j
        for j in pending
    }
    failures = []
    for fut in cf.as_completed(futures):
        j = futures[fut]
        label = f"{os.fsdecode(nets[j['network']])} × {subjects[j['subject']]}"
        try:
            text = fut.result()
            if out_dir is not None:
                call("ft_rank_store", out_dir, text.encode())
            outcomes.append(text)
        except Exception as e:  # noqa: BLE001 - every failure is reported, by pair, below
            failures.append((os.fsdecode(nets[j["network"]]), subjects[j["subject"]], str(e)))
            label += " FAILED"
        done += 1
        if progress:
            progress(done, total, label)
    if failures:
        raise RankGridError(failures, total)
    arr = _array([t.encode() for t in outcomes])
    result = c_void_p()
    call("ft_rank_combine", arr, len(outcomes), ctypes.byref(result))
    return json.loads(take_string(result))


__all__ = ["rank_grid", "fit_pair", "brain_file_header", "RankGridError"]
