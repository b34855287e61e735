"""A trained SCRD model ready to score images, and its saved format.

A saved model is two files in one folder: ``model.pt``, a state dict loaded with
``weights_only=True`` (it cannot run code), and ``model.json``, its config, teacher weights,
calibration and provenance.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from . import __version__
from .config import Config
from .data.transforms import normalize
from .device import autocast, choose_device, memory_format, resolve_precision
from .errors import CheckpointError
from .filenames import CHECKPOINT_FORMAT, MODEL_FILE, MODEL_META
from .method.anomaly_map import anomaly_map, image_score
from .model import SCRD
from .storage import load_tensors, read_json, save_tensors, write_json


def resolve_model_path(path: str | Path) -> Path:
    """A run directory or a ``model.pt`` file -> the model's state-dict file."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no trained model here (expected a run directory or a {MODEL_FILE} file)")
    return path


@dataclass
class Scored:
    scores: torch.Tensor  # [B] float64, on CPU
    maps: torch.Tensor  # [B, H, W] float32, on CPU
    alpha: torch.Tensor  # [B, 3] scale weights, on CPU
    by_reduction: dict[str, torch.Tensor]  # both image scores ("mean", "max") of the same maps


@dataclass
class Detector:
    """A model with its config and metadata. ``precision`` (auto, fp32, bf16) and ``channels_last``
    are how this process runs it, chosen when it is loaded, not read from the training config."""

    model: SCRD
    config: Config
    device: torch.device
    metadata: dict[str, Any] = field(default_factory=dict)
    precision: str = "auto"
    channels_last: bool = True

    def __post_init__(self) -> None:
        self.precision = resolve_precision(self.precision, self.device)
        self.model.to(memory_format=memory_format(self.channels_last))

    @property
    def image_size(self) -> int:
        return self.config.model.image_size

    @property
    def threshold(self) -> float | None:
        calibration = self.metadata.get("calibration")
        return None if calibration is None else float(calibration["threshold"])

    @torch.no_grad()
    def score(self, images01: torch.Tensor) -> Scored:
        """Scores and smoothed anomaly maps for a batch of [0, 1] images [B, 3, S, S]."""
        self.model.eval()
        x = normalize(images01.to(self.device, non_blocking=True))
        with autocast(self.device, self.precision):
            out = self.model(x.contiguous(memory_format=memory_format(self.channels_last)))
        teacher = [f.float() for f in out.teacher]
        student = [f.float() for f in out.student]
        scoring = self.config.scoring
        alpha = out.alpha.float() if scoring.alpha_weighting == "weighted" else None
        maps = anomaly_map(teacher, student, self.image_size, alpha=alpha, sigma=scoring.sigma)
        by_reduction = {r: image_score(maps, r).double().cpu() for r in ("mean", "max")}
        return Scored(by_reduction[scoring.score], maps.float().cpu(), out.alpha.float().cpu(), by_reduction)

    def iterate(self, loader: Any) -> Iterator[tuple[dict[str, Any], Scored | None]]:
        """(batch, scores) per batch; None when every image of the batch was skipped."""
        for batch in loader:
            yield batch, self.score(batch["image"]) if len(batch["image"]) else None

    # ---------------------------------------------------------------------- persistence
    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        directory = Path(directory)
        path = directory / MODEL_FILE
        save_tensors(path, {"state_dict": self.model.state_dict()})
        self.metadata.update(extra or {})
        self.metadata.update(
            {
                "format": CHECKPOINT_FORMAT,
                "arch": self.model.arch,
                "scrd_version": __version__,
                "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "config": self.config.to_dict(),
            }
        )
        write_json(directory / MODEL_META, self.metadata)
        return path

    def save_metadata(self, directory: str | Path) -> None:
        write_json(Path(directory) / MODEL_META, self.metadata)

    @classmethod
    def load(
        cls, path: str | Path, device: str = "auto", precision: str = "auto", channels_last: bool = True
    ) -> "Detector":
        """Load from a run directory or a ``model.pt`` (with its ``model.json`` beside it)."""
        model_path = resolve_model_path(path)
        metadata = read_json(model_path.parent / MODEL_META)
        if metadata.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{model_path.parent / MODEL_META}: not a {CHECKPOINT_FORMAT} file")
        config = Config.from_dict(metadata["config"])
        model = SCRD(metadata["arch"])
        state = load_tensors(model_path)
        try:
            model.load_state_dict(state["state_dict"], strict=True)
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{model_path}: does not fit a {metadata['arch']} SCRD model: {exc}") from exc
        target = choose_device(device)
        return cls(model.to(target).eval(), config, target, metadata, precision, channels_last)
