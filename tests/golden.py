"""Access to the golden fixtures produced by the released SCRD code (tests/fixtures/golden)."""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).parent / "fixtures" / "golden"


def _canonical_module():
    spec = importlib.util.spec_from_file_location("canonical_weights", GOLDEN / "canonical_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def keys(arch: str) -> dict:
    return json.loads((GOLDEN / f"keys_{arch}.json").read_text())


def canonical_state_dict(arch: str):
    module = _canonical_module()
    return module.canonical_state_dict(module.spec_from_json(keys(arch)), seed=0)


@lru_cache(maxsize=None)
def npz(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / name) as data:
        return {k: data[k] for k in data.files}


@lru_cache(maxsize=None)
def json_file(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))
