"""scrd: Scale-aware Contrastive Reverse Distillation for unsupervised medical anomaly detection.

The names below are imported lazily from their modules, so ``import scrd`` and ``scrd --help``
stay fast (torch is loaded when a name that needs it is first used); type checkers see the real
types through the ``TYPE_CHECKING`` imports::

    from scrd import Detector
    detector = Detector.load("runs/my-run")
    for row in detector.score_files(["scan.png"]):
        print(row.path, row.score, row.decision)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:  # what the lazy names below are, for type checkers; never run
    from .config import Config, preset
    from .data.dataset import load_image
    from .detector import Detector, FileScore
    from .evaluation.calibrate import calibrate
    from .evaluation.evaluate import evaluate
    from .inference.predict import predict
    from .training.train import resume, train

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
__all__ = [
    "Config",
    "Detector",
    "FileScore",
    "__version__",
    "calibrate",
    "evaluate",
    "load_image",
    "predict",
    "preset",
    "resume",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scrd' has no attribute {name!r}")
