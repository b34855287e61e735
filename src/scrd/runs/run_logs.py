"""Reading back what a run and an evaluation wrote: ``train_log.csv`` and ``scores.csv``, checked
column by column, so a damaged or foreign file is named with its problem instead of drawn wrong."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

# The columns of train_log.csv, in order (the training loop writes them).
LOG_FIELDS = [
    "iteration",
    "loss",
    "d_uv_1",
    "d_uv_2",
    "d_uv_3",
    "d_zv_1",
    "d_zv_2",
    "d_zv_3",
    "alpha_1",
    "alpha_2",
    "alpha_3",
    "alpha_max",
    "images_per_s",
    "elapsed_s",
]


def _rows(path: Path, required: list[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: not a file scrd wrote: columns {', '.join(missing)} missing")
            return list(reader)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text CSV file ({exc})") from None


def _number(path: Path, line: int, column: str, text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        raise InputError(f"{path}: line {line}, column {column}: {text!r} is not a number") from None


def read_train_log(path: str | Path) -> dict[str, np.ndarray]:
    """Every column of a training log as a float array (NaN where a run leaves one empty, e.g. the
    noisy-teacher distances of the rd4ad loss)."""
    path = Path(path)
    rows = _rows(path, LOG_FIELDS)
    return {c: np.array([_number(path, i + 2, c, r[c]) for i, r in enumerate(rows)]) for c in LOG_FIELDS}


@dataclass
class EvaluatedScores:
    paths: list[str]
    labels: np.ndarray  # int: 0 normal, 1 abnormal
    scores: np.ndarray
    alpha: np.ndarray  # [N, 3], NaN for the knn method


SCORE_FIELDS = ["path", "label", "score", "alpha_1", "alpha_2", "alpha_3"]


def read_scores(path: str | Path) -> EvaluatedScores:
    """An evaluation's ``scores.csv``."""
    path = Path(path)
    rows = _rows(path, SCORE_FIELDS)
    if not rows:
        raise InputError(f"{path}: holds no scored images")
    labels = np.array([_number(path, i + 2, "label", r["label"]) for i, r in enumerate(rows)])
    if not np.isin(labels, (0, 1)).all():
        raise InputError(f"{path}: column label must be 0 (normal) or 1 (abnormal) on every line")
    scores = np.array([_number(path, i + 2, "score", r["score"]) for i, r in enumerate(rows)])
    alpha = np.array(
        [[_number(path, i + 2, f"alpha_{k}", r[f"alpha_{k}"]) for k in (1, 2, 3)] for i, r in enumerate(rows)]
    )
    return EvaluatedScores([r["path"] for r in rows], labels.astype(int), scores, alpha)
