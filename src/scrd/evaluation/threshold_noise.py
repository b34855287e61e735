"""How much a calibrated threshold's sensitivity moves with the normal images it was calibrated on.

A conformal threshold from n normals lands anywhere in a band of the normal scores' upper tail
(its specificity follows Beta(k, n + 1 − k)); where the abnormal scores are dense near that tail, a
small move in specificity is a large move in sensitivity. Over seeds this shows up as a sensitivity
that swings far more than the AUROC. On a labelled set the two parts can be told apart: draw many
calibration sets of n normal images from the set's own normals, set the conformal threshold on each,
and measure the specificity on the normals left over and the sensitivity on the abnormal images. The
spread over draws is the threshold's share of the swing at this calibration size; run at 2n and 4n it
says how many normals a stable threshold needs. The model is fixed, so its own seed-to-seed variation
is not in it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import conformal_rank

MIN_LEFT_OVER = 50  # normals kept out of every draw to measure its specificity on


def can_draw(calibration_size: int, normal_count: int) -> bool:
    """Whether a set of ``normal_count`` normal scores affords calibration sets of this size (with
    :data:`MIN_LEFT_OVER` left over to measure each one's specificity on)."""
    return 1 <= calibration_size <= normal_count - MIN_LEFT_OVER


def threshold_noise(
    normal_scores: Any,
    abnormal_scores: Any,
    calibration_size: int,
    target_specificity: float = 0.95,
    draws: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Specificity and sensitivity of conformal thresholds from random calibration sets of one size.

    Each draw takes ``calibration_size`` of ``normal_scores`` without replacement, thresholds at
    their k-th smallest score (an image is abnormal when its score is above it), and measures the
    specificity on the other normal scores and the sensitivity on ``abnormal_scores``. Returns the
    mean, std and 5th / 95th percentiles of both over ``draws`` (seeded: the same figures each call).
    """
    normal = np.asarray(normal_scores, dtype=np.float64).ravel()
    abnormal = np.asarray(abnormal_scores, dtype=np.float64).ravel()
    if abnormal.size == 0:
        raise ValueError("threshold_noise needs abnormal scores")
    if not can_draw(calibration_size, normal.size):
        raise ValueError(
            f"calibration_size {calibration_size} needs at least {MIN_LEFT_OVER} more normal scores "
            f"than it draws; there are {normal.size}"
        )
    rng = np.random.default_rng(seed)
    # each row a random order of the normals: the first calibration_size calibrate, the rest test
    shuffled = normal[np.argsort(rng.random((draws, normal.size)), axis=1)]
    specificity, sensitivity = rates_at_conformal_thresholds(
        shuffled[:, :calibration_size], shuffled[:, calibration_size:], abnormal, target_specificity
    )
    return {
        "calibration_size": calibration_size,
        "draws": draws,
        "specificity": _spread(specificity),
        "sensitivity": _spread(sensitivity),
    }


def rates_at_conformal_thresholds(
    calibration: np.ndarray, left_over: np.ndarray, abnormal: np.ndarray, target_specificity: float
) -> tuple[np.ndarray, np.ndarray]:
    """(specificity on ``left_over`` [D, m], sensitivity on ``abnormal``) of the conformal threshold of
    each row of ``calibration`` [D, n], as :func:`~scrd.evaluation.metrics.conformal_threshold` sets it
    (a score is normal when at most the k-th smallest calibration score)."""
    n = calibration.shape[1]
    k = min(conformal_rank(n, target_specificity), n)  # too few for the target: the largest, as calibrate does
    thresholds = np.partition(calibration, k - 1, axis=1)[:, k - 1]
    specificity = (left_over <= thresholds[:, None]).mean(axis=1)
    ordered = np.sort(abnormal)
    sensitivity = 1.0 - np.searchsorted(ordered, thresholds, side="right") / ordered.size
    return specificity, sensitivity


def threshold_noise_by_size(
    labels: Any, scores: Any, calibration_size: int, target_specificity: float = 0.95, draws: int = 1000
) -> dict[str, Any] | None:
    """:func:`threshold_noise` at 1×, 2× and 4× a threshold's calibration size, where this set has
    enough normal images for it; None where it has too few even for 1×."""
    y, s = np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)
    normal, abnormal = s[y == 0], s[y == 1]
    sizes = [m * calibration_size for m in (1, 2, 4) if can_draw(m * calibration_size, normal.size)]
    if not sizes or abnormal.size == 0:  # can_draw refuses a size below 1
        return None
    return {
        "note": (
            f"conformal {target_specificity:g} thresholds from {draws} random draws of n of this set's normal "
            "images: specificity on the normals not drawn, sensitivity on the abnormal images. The model is "
            "fixed, so this is the threshold's part of the seed-to-seed swing; more calibration normals shrink it"
        ),
        "by_size": [threshold_noise(normal, abnormal, n, target_specificity, draws) for n in sizes],
    }


def _spread(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "p5": float(np.quantile(values, 0.05)),
        "p95": float(np.quantile(values, 0.95)),
    }
