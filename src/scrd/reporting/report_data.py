"""What one report page shows, gathered by :mod:`.report` and drawn by :mod:`.report_html`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
