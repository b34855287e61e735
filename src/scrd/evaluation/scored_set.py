"""Scoring a list of images in batches into arrays: what evaluate, calibrate and the training
monitors share."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..detector import Detector
from ..runs.progress import batch_images, progress
from ..runs.runtime import DEFAULT_RUNTIME, Runtime


@dataclass
class ScoredSet:
    paths: list[str]
    labels: np.ndarray  # int, -1 when unknown
    scores: np.ndarray  # float64
    alpha: np.ndarray  # [N, 3]
    by_reduction: dict[str, np.ndarray]  # image scores of the same maps: "mean" and "max"
    skipped: list[tuple[str, str]]  # (path, reason) of unreadable images, with on_bad_image=skip
    alpha_peak: np.ndarray | None = None  # [N] largest weight averaged over each image's locations


def score_samples(
    detector: Detector,
    samples: Sequence[Any],
    runtime: Runtime = DEFAULT_RUNTIME,
    show_progress: bool = False,
    desc: str = "scoring",
) -> ScoredSet:
    """Score every sample in batches; ``show_progress``: a bar on stderr named ``desc``, counting images."""
    samples = list(samples)
    loader = detector.loader(samples, runtime.batch_size, runtime.num_workers, runtime.on_bad_image)
    paths: list[str] = []
    skipped: list[tuple[str, str]] = []
    labels, scores, alphas, peaks = [np.zeros(0, int)], [np.zeros(0)], [np.zeros((0, 3))], [np.zeros(0)]
    by_reduction: dict[str, list[np.ndarray]] = defaultdict(list)
    batches = detector.iterate(loader)
    for batch, scored in progress(batches, len(samples), desc, show_progress, weight=batch_images):
        skipped.extend(batch["skipped"])
        if scored is None:
            continue
        paths.extend(batch["path"])
        labels.append(batch["label"].numpy())
        scores.append(scored.scores.numpy())
        alphas.append(scored.alpha.numpy())
        peaks.append(scored.alpha_peak.numpy() if scored.alpha_peak is not None else scored.alpha.numpy().max(1))
        for name, values in scored.by_reduction.items():
            by_reduction[name].append(values.numpy())
    return ScoredSet(
        paths,
        np.concatenate(labels).astype(int),
        np.concatenate(scores),
        np.concatenate(alphas),
        {k: np.concatenate(v) for k, v in by_reduction.items()},
        skipped,
        np.concatenate(peaks),
    )
