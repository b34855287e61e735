"""Image-level detection metrics: AUROC, AP, and F1/ACC at an oracle or a calibrated threshold.

The official evaluation picks the best-F1 threshold on the evaluated set itself and reports F1 and
ACC there: an *oracle* threshold (``oracle_metrics``, ``official_metrics``). For honest numbers,
choose the threshold on held-out normal images (``conformal_threshold``) and report
``metrics_at_threshold``. A score counts as anomalous when ``score >= threshold``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
)


def _as_numpy(x: Any, dtype: type) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, possibly on an accelerator
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype).reshape(-1)


def _validate(labels: Any, scores: Any, both_classes: bool) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert: 1-D labels in {0, 1}, finite float64 scores of the same length."""
    y = _as_numpy(labels, np.float64)
    s = _as_numpy(scores, np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores must have the same length, got {y.size} and {s.size}")
    if y.size == 0:
        raise ValueError("labels and scores are empty")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomalous)")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN or infinite value(s)")
    if both_classes and (y.min() == y.max()):
        raise ValueError("AUROC and the best-F1 threshold need both normal (0) and anomalous (1) labels")
    return y.astype(np.int64), s


def best_f1_threshold(labels: Any, scores: Any) -> float:
    """Threshold maximising F1 on (labels, scores), exactly as the official ``return_best_thr``.

    sklearn ``precision_recall_curve``; f1 = 2PR / (P + R + 1e-7); the last point (no threshold) is
    dropped, NaNs are dropped, and the first argmax wins.
    """
    y, s = _validate(labels, scores, both_classes=True)
    precision, recall, thresholds = precision_recall_curve(y, s)
    f1 = (2 * precision * recall / (precision + recall + 1e-7))[:-1]
    keep = ~np.isnan(f1)
    return float(thresholds[keep][np.argmax(f1[keep])])


def oracle_metrics(labels: Any, scores: Any) -> dict[str, float]:
    """AUROC, AP, and F1/ACC at the best-F1 threshold chosen on these same labels (an oracle; unrounded)."""
    y, s = _validate(labels, scores, both_classes=True)
    threshold = best_f1_threshold(y, s)
    pred = s >= threshold
    return {
        "auroc": float(roc_auc_score(y, s)),
        "ap": float(average_precision_score(y, s)),
        "threshold": threshold,
        "f1": float(f1_score(y, pred)),
        "acc": float(accuracy_score(y, pred)),
    }


def trivial_rule_check(labels: Any, scores: Any, threshold: float, share: float = 0.95) -> dict[str, Any]:
    """Whether ``threshold`` calls (almost) every image abnormal, and the F1 of the trivial rule that
    does exactly that (2p / (1 + p) for a fraction p of abnormal images): an oracle F1 close to it
    says nothing about the detector."""
    y, s = _validate(labels, scores, both_classes=False)
    flagged = float(np.mean(s >= threshold))
    p = float(np.mean(y == 1))
    return {
        "flagged_fraction": flagged,
        "labels_almost_everything_abnormal": flagged >= share,
        "all_abnormal_f1": 2 * p / (1 + p) if p > 0 else 0.0,
    }


def official_metrics(labels: Any, scores: Any) -> dict[str, float]:
    """The official report: AUROC, F1 and ACC at the oracle best-F1 threshold, rounded to 4 decimals."""
    m = oracle_metrics(labels, scores)
    rounded = {key: round(m[key], 4) for key in ("auroc", "f1", "acc")}
    return {**rounded, "threshold": m["threshold"]}


def conformal_rank(n: int, target_specificity: float) -> int:
    """k = ⌈(n + 1)·target⌉ of the conformal rule: which smallest of n calibration scores is the threshold
    (above n when n is too few for the target). 1e-9 absorbs float error in (n + 1)·target."""
    return math.ceil((n + 1) * target_specificity - 1e-9)


def conformal_threshold(normal_scores: Any, target_specificity: float = 0.95) -> dict[str, Any]:
    """The split-conformal threshold and what it promises.

    With n calibration scores sorted s_(1) ≤ … ≤ s_(n) and k = ⌈(n + 1)·target⌉, the threshold is the
    next float above s_(k): a score passes (is called normal) when it is at most s_(k).
    For a new normal image whose score is exchangeable with the calibration images' (same distribution,
    not trained on), P(score < threshold) ≥ k / (n + 1) ≥ target, over the draw of the calibration
    images (Vovk et al. 2005; Angelopoulos & Bates 2021). The specificity one calibration set reaches
    varies: it follows Beta(k, n + 1 − k), whose mean, std and 5th percentile are returned. When
    k > n there are too few images for the target: every image passes and ``guaranteed`` is False.
    """
    from scipy.stats import beta

    if not 0.0 < target_specificity < 1.0:
        raise ValueError(f"target_specificity must be in (0, 1), got {target_specificity}")
    s = np.sort(_as_numpy(normal_scores, np.float64))
    if s.size == 0:
        raise ValueError("normal_scores is empty")
    if not np.isfinite(s).all():
        raise ValueError("normal_scores contain NaN or infinite values")
    n = s.size
    k = conformal_rank(n, target_specificity)
    guaranteed = k <= n
    k = min(k, n)
    threshold = float(np.nextafter(s[k - 1], np.inf))
    spread = beta(k, n + 1 - k)
    return {
        "threshold": threshold,
        "rule": "conformal",
        "guaranteed": guaranteed,
        "passed": int(np.sum(s < threshold)),
        "expected_specificity": k / (n + 1),
        "specificity_std": float(spread.std()),
        "specificity_p5": float(spread.ppf(0.05)),
        "min_images_for_target": math.ceil(target_specificity / (1 - target_specificity)),
    }


def metrics_at_threshold(labels: Any, scores: Any, threshold: float) -> dict[str, float | int]:
    """Confusion counts and rates at a fixed threshold (anomalous when score >= threshold).

    Returns f1, acc, sensitivity, specificity, precision (NaN where undefined, e.g. no positives)
    and the counts tp, fp, tn, fn.
    """
    y, s = _validate(labels, scores, both_classes=False)
    pred = s >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))

    def ratio(num: int, den: int) -> float:
        return num / den if den else math.nan

    return {
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "acc": (tp + tn) / y.size,
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "precision": ratio(tp, tp + fp),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""

    def ranks(v: list[float]) -> np.ndarray:
        v = np.asarray(v, float)
        order = v.argsort(kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for value in np.unique(v):  # ties share their mean rank
            r[v == value] = r[v == value].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if len(rx) < 3 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])
