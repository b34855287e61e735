"""What one report page shows, gathered by :mod:`.report` and drawn by :mod:`.report_html`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Two different things were both called α; every page, figure, bar and key label says which it is.
HEAD_ALPHA = "scale-head α (learned, paper Eq. 3)"
FUSION_WEIGHTS = "fusion weights (per image, from normal statistics)"


def scale_weights_label(config: Any) -> str | None:
    """What the per-scale weights of a model's scored images are (``Scored.alpha``): the fusion
    weights of ``scoring.scale_fusion = normal_softmax``, else the learned scale head's α (marked
    when the scoring does not use it); None for the knn method, which has neither."""
    if config.model.method == "knn":
        return None
    if config.scoring.scale_fusion == "normal_softmax":
        return FUSION_WEIGHTS
    used = config.scoring.alpha_weighting != "none"
    return HEAD_ALPHA if used else f"{HEAD_ALPHA}; not used by this model's scoring"


@dataclass
class GalleryItem:
    path: str
    label: int
    score: float  # from scores.csv
    png: bytes | None  # the panel; None when the image could not be read again


@dataclass
class ReportData:
    run: Path  # the folder of model.pt
    metadata: dict[str, Any]
    training_png: bytes | None
    metrics: dict[str, Any] | None = None
    eval_dir: Path | None = None
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG, as evaluate writes them
    false_positive_suspects: list[GalleryItem] = field(default_factory=list)
    misses: list[GalleryItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the page could not show, and why
