"""Scoring a trained model in other ways than its own: the columns of the experiment tables.

A scoring variant is a set of scoring options over the model's own (``{score: max}``, ``{feature_pool:
3, scale_fusion: normal_softmax}``...). Each becomes a :class:`~scrd.scoring.head.ScoringHead` of the
model's shape, sharing its memory bank, with its own normal-image statistics measured on the run's
held-out normal images; every head scores from one network pass per batch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ScoringConfig
from ..config.legacy import upgrade_scoring_options
from ..detector import Detector
from ..errors import ConfigError
from ..evaluation.normal_reference import measure_on_normals, reference_samples
from ..scoring.head import NORMAL_FUSIONS, ScoringHead


def variant_scoring(base: ScoringConfig, options: dict[str, Any]) -> ScoringConfig:
    """``options`` over ``base``, validated. A normal-statistics fusion sets the scale weights itself, so
    over a row that weights its maps by α it scores without α (what scrd 0.2 computed, now explicit)."""
    options = upgrade_scoring_options(options)
    if options.get("scale_fusion", base.scale_fusion) in NORMAL_FUSIONS and "alpha_weighting" not in options:
        if base.alpha_weighting == "weighted":
            options = {**options, "alpha_weighting": "none"}
    try:
        return dataclasses.replace(base, **options)
    except TypeError as exc:
        raise ConfigError(f"scoring options {options}: {exc}") from None


def variant_heads(
    detector: Detector, run_dir: str | Path, scorings: dict[str, dict[str, Any]]
) -> dict[str, ScoringHead]:
    """A measured head per named scoring (statistics from the run's held-out normals, one pass)."""
    heads = {name: detector.head.variant(variant_scoring(detector.config.scoring, o)) for name, o in scorings.items()}
    if heads:
        measure_on_normals(detector, reference_samples(run_dir), list(heads.values()))
    return heads


def score_variants(
    detector: Detector, samples: list, heads: dict[str, ScoringHead], batch_size: int = 16
) -> tuple[list[str], np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(paths, labels, image scores per head, per-image fusion weights per head that sets its own) of
    the readable ``samples``, in one order."""
    paths: list[str] = []
    labels: list[np.ndarray] = []
    scores: dict[str, list[np.ndarray]] = {name: [] for name in heads}
    weights: dict[str, list[np.ndarray]] = {}
    for batch in detector.loader(samples, batch_size):
        paths.extend(batch["path"])
        labels.append(batch["label"].numpy())
        for name, out in detector.score_heads(batch["image"], heads).items():
            scores[name].append(out.scores.double().cpu().numpy())
            if out.fusion_weights is not None:
                weights.setdefault(name, []).append(out.fusion_weights.float().cpu().numpy())
    return (
        paths,
        np.concatenate(labels).astype(int),
        {k: np.concatenate(v) for k, v in scores.items()},
        {k: np.concatenate(v) for k, v in weights.items()},
    )


def fusion_weights_of(detector: Detector, heads: dict[str, ScoringHead]):
    """A function of images [B, 3, S, S] -> {name: per-image fusion weights} for the heads that set them."""

    def weights(images01: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = detector.score_heads(images01, heads)
        return {name: out.fusion_weights for name, out in outs.items() if out.fusion_weights is not None}

    return weights
