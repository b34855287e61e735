"""``scrd predict --backend onnxruntime``: score images with an exported graph in ONNX Runtime.

The detector reads its sidecar JSON for the model's config (how to decode images), threshold and
display range, so the CSV and heat maps come out as the torch backend writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from ..config import Config
from ..detector import Detector, Scored
from ..errors import CheckpointError, ConfigError
from ..model.weights import sha256_of
from ..storage import read_json
from .onnx_format import INPUT, ONNX_FORMAT, OUTPUTS, ort_session, sidecar_path


@dataclass
class OrtDetector:
    """An exported detector: same ``image_size``, ``threshold``, ``config`` and ``iterate`` as
    :class:`~scrd.detector.Detector`, scoring with ONNX Runtime."""

    path: Path
    session: Any
    config: Config
    metadata: dict[str, Any] = field(default_factory=dict)
    contract: dict[str, Any] = field(default_factory=dict)
    device: torch.device = torch.device("cpu")  # where batches are put: ORT takes numpy arrays
    precision: str = "fp32"

    @property
    def image_size(self) -> int:
        return self.config.model.image_size

    @property
    def threshold(self) -> float | None:
        value = self.contract.get("threshold")
        return None if value is None else float(value)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", precision: str = "auto") -> OrtDetector:
        path = Path(path)
        if path.is_dir() or path.suffix != ".onnx":
            raise CheckpointError(f"{path}: --backend onnxruntime needs the .onnx file of `scrd export` as --model")
        if not path.is_file():
            raise CheckpointError(f"{path}: no such file")
        if precision not in ("auto", "fp32"):
            raise ConfigError(f"--precision {precision}: the exported graph is float32; use fp32 or auto")
        side = sidecar_path(path)
        if not side.is_file():
            raise CheckpointError(f"{path}: its {side.name} (config, threshold, input contract) is not beside it")
        contract = read_json(side)
        if contract.get("format") != ONNX_FORMAT:
            raise CheckpointError(f"{side}: not a {ONNX_FORMAT} file")
        if contract.get("onnx_sha256") != sha256_of(path):
            raise CheckpointError(f"{side}: was written for another {path.name} (sha256 differs); export again")
        metadata = contract["model"]
        return cls(path, ort_session(path, device), Config.from_dict(metadata["config"]), metadata, contract)

    def score(self, images01: torch.Tensor) -> Scored:
        """Scores [B] (float64) and smoothed maps [B, S, S] of [0, 1] images [B, 3, S, S]."""
        x = images01.float().contiguous().numpy()
        maps, scores = self.session.run(list(OUTPUTS), {INPUT: x})
        scores64 = torch.from_numpy(scores).double()
        name = self.config.scoring.score
        alpha = torch.full((len(x), 3), float("nan"))  # inside the graph; not an output
        return Scored(scores64, torch.from_numpy(maps), alpha, {name: scores64})

    # The torch detector's, unchanged: it needs only config, image_size, iterate and threshold.
    score_files = Detector.score_files
    loader = Detector.loader

    def iterate(self, loader: Any) -> Iterator[tuple[dict[str, Any], Scored | None]]:
        for batch in loader:
            yield batch, self.score(batch["image"]) if len(batch["image"]) else None
