"""scrd: Scale-aware Contrastive Reverse Distillation for unsupervised medical anomaly detection.

The names below are imported lazily from their modules, so ``import scrd`` and ``scrd --help``
stay fast (torch is loaded when a name that needs it is first used)::

    from scrd import Detector
    detector = Detector.load("runs/my-run")
    rows = detector.score_files(["scan.png"])
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "Detector": "scrd.detector",
    "FileScore": "scrd.detector",
    "load_image": "scrd.data.dataset",
    "Config": "scrd.config",
    "preset": "scrd.config",
    "train": "scrd.training.train",
    "resume": "scrd.training.train",
    "evaluate": "scrd.evaluation.evaluate",
    "calibrate": "scrd.evaluation.calibrate",
    "predict": "scrd.inference.predict",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scrd' has no attribute {name!r}")
