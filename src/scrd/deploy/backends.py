"""The predict backends by name: what scores the images, and the file that identifies the model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol

from ..config import Config
from ..errors import ConfigError

if TYPE_CHECKING:
    import torch

BACKENDS = ("torch", "onnxruntime")


class Scorer(Protocol):
    """What ``predict`` needs of a backend (``Detector`` and ``OrtDetector`` both are one)."""

    config: Config
    metadata: dict[str, Any]
    precision: str
    device: torch.device  # where batches go (the DataLoader pins memory for CUDA)

    @property
    def image_size(self) -> int: ...

    @property
    def threshold(self) -> float | None: ...

    def iterate(self, loader: Any) -> Iterator[tuple[dict[str, Any], Any]]: ...


def load_scorer(backend: str, model: str | Path, device: str, precision: str) -> tuple[Scorer, Path]:
    """(the scorer, the model file whose sha256 identifies the predictions) for ``backend``."""
    if backend == "torch":
        from ..detector import Detector, resolve_model_path

        return Detector.load(model, device, precision), resolve_model_path(model)
    if backend == "onnxruntime":
        from .ort_detector import OrtDetector

        detector = OrtDetector.load(model, device, precision)
        return detector, detector.path
    raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
