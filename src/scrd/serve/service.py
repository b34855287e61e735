"""The scoring service without the web framework: one model loaded once, a micro-batcher in front of
it, and the answer for each image (score, decision, threshold, percentile among normal images, model
id, and on request the heat-map panel and the DICOM heat map).

Scores come from the same :meth:`Detector.score` on the same decoded tensors as ``scrd predict``;
only the batch an image shares differs (float32 rounding of a few 1e-8 relative). The answer of one
image never depends on another image's outcome: a bad upload is refused before anything is queued.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..detector import Detector, decision_of
from ..model.weights import sha256_of
from ..reporting.colour_scale import colour_scale
from ..reporting.dicom_capture import Finding, dicom_bytes, secondary_capture
from ..reporting.panels import panel_figure
from ..runs.normal_scores import percentile_or_none, stored_normal_scores
from ..version import __version__
from .batcher import MicroBatcher
from .uploads import Prepared


@dataclass(frozen=True)
class ServeSettings:
    """How the service batches and what it accepts (the ``scrd serve`` flags)."""

    max_batch: int = 16  # images per model pass (default: the model's training batch size)
    max_wait_ms: float = 5.0  # how long the oldest queued image waits for others to fill its batch
    queue: int = 64  # images waiting at most; a request that does not fit gets 503
    max_bytes: int = 64 * 1024 * 1024  # per uploaded file
    max_files: int = 16  # per request
    max_connections: int = 64  # requests open at once (uvicorn answers 503 beyond): bounds what is being read


@dataclass
class Scored:
    score: float
    map: np.ndarray  # [S, S] the smoothed anomaly map


class ScoringService:
    def __init__(self, detector: Detector, model_file: str | Path, settings: ServeSettings) -> None:
        self.detector, self.settings = detector, settings
        self.model_file = Path(model_file)
        self.model_sha256 = sha256_of(self.model_file)
        self.normals = stored_normal_scores(detector.metadata)
        self.batcher = MicroBatcher(self._run_batch, settings.max_batch, settings.max_wait_ms / 1000, settings.queue)
        self._render = threading.Lock()  # matplotlib figures are drawn one at a time

    def start(self) -> None:
        self.batcher.start()

    def stop(self) -> None:
        self.batcher.stop()

    def _run_batch(self, images: list[torch.Tensor]) -> list[Scored]:
        scored = self.detector.score(torch.stack(images))
        return [Scored(float(scored.scores[i]), scored.maps[i].numpy()) for i in range(len(images))]

    def percentile(self, score: float) -> float | None:
        return percentile_or_none(self.normals, score)

    def answer(self, upload: Prepared, scored: Scored, heatmap: bool, dicom: bool) -> dict[str, Any]:
        """The JSON of one image (``heatmap``: the panel as base64 PNG; ``dicom``: the Secondary Capture
        as base64, for a DICOM upload)."""
        threshold = self.detector.threshold
        percentile = self.percentile(scored.score)
        out: dict[str, Any] = {
            "file": upload.name,
            "score": scored.score,
            "decision": decision_of(scored.score, threshold),
            "threshold": threshold,
            "normal_percentile": percentile,
            "normal_images": len(self.normals or []),
            "model_sha256": self.model_sha256,
        }
        display_range = self.detector.metadata.get("display_range")
        if heatmap:
            out["heatmap_png"] = base64.b64encode(self.panel(upload, scored, display_range)).decode("ascii")
        if dicom:
            if upload.suffix == ".dcm":
                finding = Finding(scored.score, threshold, percentile, len(self.normals or []), self.model_sha256)
                ds = secondary_capture(upload.path, None, scored.map, display_range, finding, self.detector.config.data)
                out["dicom"] = base64.b64encode(dicom_bytes(ds)).decode("ascii")
            else:
                out["dicom"] = None
                out["dicom_note"] = "not a DICOM upload: there is no study to add a DICOM heat map to"
        return out

    def panel(self, upload: Prepared, scored: Scored, display_range: list[float] | None) -> bytes:
        """The panel ``scrd predict`` writes for the image (original | heat map | overlay, titled)."""
        scale = colour_scale(display_range, self.detector.threshold, scored.map)
        image = upload.image.permute(1, 2, 0).numpy()
        with self._render:
            return panel_figure(
                image,
                scored.map,
                scale.low,
                scale.high,
                upload.name,
                scored.score,
                self.detector.threshold,
                scale.note,
                scale.label,
            )

    def health(self) -> dict[str, Any]:
        stats = self.batcher.stats()
        return {"status": "ok" if stats["alive"] else "stopped", "model_sha256": self.model_sha256, **stats}

    def model_info(self) -> dict[str, Any]:
        """What the model is: config, calibration, provenance (from model.json) and how it is served."""
        meta = self.detector.metadata
        normals = self.normals or []
        return {
            "model_sha256": self.model_sha256,
            "model_file": self.model_file.name,
            "scrd_version_serving": __version__,
            "scrd_version_trained": meta.get("scrd_version"),
            "method": meta.get("method"),
            "arch": meta.get("arch"),
            "image_size": self.detector.image_size,
            "threshold": self.detector.threshold,
            "calibration": meta.get("calibration"),
            "normal_scores": {
                "images": (meta.get("normal_scores") or {}).get("images"),
                "count": len(normals),
                "min": normals[0] if normals else None,
                "median": float(np.median(normals)) if normals else None,
                "max": normals[-1] if normals else None,
            },
            "display_range": meta.get("display_range"),
            "iterations": meta.get("iterations"),
            "selection": meta.get("selection"),
            "teacher_weights": meta.get("teacher_weights"),
            "data": meta.get("data"),
            "provenance": meta.get("provenance"),
            "saved": meta.get("saved"),
            "config": meta.get("config"),
            "service": {
                **asdict(self.settings),
                "device": str(self.detector.device),
                "precision": self.detector.precision,
            },
        }


__all__ = ["ScoringService", "ServeSettings"]
