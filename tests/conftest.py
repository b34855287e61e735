"""Fixtures shared by the test suite: phantom datasets, tiny runs, golden loaders.

Everything here is generated in code or read from tests/fixtures; nothing is downloaded and no
benchmark script is imported. Constants and the tiny config are in helpers.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import golden as golden_files
import pytest
from helpers import tiny_config

from scrd.data.phantom import make_phantom_dataset


@pytest.fixture(scope="session")
def phantom_data(tmp_path_factory) -> Path:
    """A 64-px phantom dataset: 16 normal training images, 6 normal + 6 abnormal test images."""
    return make_phantom_dataset(
        tmp_path_factory.mktemp("phantom"), n_train=16, n_test_normal=6, n_test_abnormal=6, size=64, seed=1
    )


@pytest.fixture(scope="session")
def tiny_run(phantom_data, tmp_path_factory) -> Path:
    """A finished 6-iteration run on ``phantom_data`` with 4 held-out normals, calibrated on them.
    Tests that change it must copy it first (``copy_run``)."""
    from scrd.evaluation.calibrate import calibrate
    from scrd.training.train import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(train__holdout_fraction=0.25, train__checkpoint_every=4), phantom_data, run, progress=False)
    calibrate(run, target_specificity=0.5)  # 4 held out: k = ceil(5 · 0.5) = 3, so one of them is flagged
    return run


@pytest.fixture
def copy_run(tmp_path):
    def copy(run: Path) -> Path:
        target = tmp_path / run.name
        shutil.copytree(run, target)
        return target

    return copy


@pytest.fixture(scope="session")
def golden():
    """The released code's reference values (tests/fixtures/golden, see its README)."""
    return golden_files
