"""Shared fixtures: small planted-hierarchy data written by the library's own generator, and fit
settings small enough for a test suite on two cores."""

import numpy as np
import pytest

import factortopy as ft


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    ft.synth.write(d, n_images=160, n_voxels=120, n_layers=3, width=8, grid=3, noise_ceiling=0.9, seed=4)
    return d


@pytest.fixture()
def brain(synth_dir):
    return ft.Brain.load(synth_dir / "brain.safetensors")


@pytest.fixture()
def features(synth_dir):
    return ft.Features.load(synth_dir / "features.safetensors")


@pytest.fixture()
def fast():
    return ft.FitOptions.preset("fast", grid=3, d=8, max_epochs=25)


@pytest.fixture()
def rng():
    return np.random.default_rng(0)
