"""How sure a figure is: AUROC with a 95 % interval (DeLong), a paired test of two AUROCs on the same
images, and intervals for the rates at a threshold (Wilson).

DeLong et al. (1988), in the fast form of Sun & Xu (2014): with m abnormal scores X and n normal scores
Y, the AUROC is the mean of ψ(X_i, Y_j) (1 when X_i > Y_j, ½ on a tie); its variance is
S10/m + S01/n, where S10 and S01 are the variances of the structural components V10_i (the mean of
ψ(X_i, ·)) and V01_j. Two scores of the same images have correlated AUROCs: their difference has
variance from the 2x2 covariance of the components, and z = Δ / sd(Δ) is the paired test.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata


def _split(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D of one length, got {y.shape} and {s.shape}")
    positives, negatives = s[y == 1], s[y == 0]
    if len(positives) < 2 or len(negatives) < 2:
        raise ValueError("an AUROC interval needs at least 2 normal and 2 abnormal images")
    return positives, negatives


def _components(positives: np.ndarray, negatives: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(AUROC, V10 [m], V01 [n]) by midranks (ties count ½)."""
    m, n = len(positives), len(negatives)
    together = rankdata(np.concatenate([positives, negatives]))
    within_pos, within_neg = rankdata(positives), rankdata(negatives)
    v10 = (together[:m] - within_pos) / n  # share of normals each abnormal score exceeds
    v01 = 1.0 - (together[m:] - within_neg) / m  # share of abnormals above each normal score
    return float(v10.mean()), v10, v01


def delong(labels: Any, scores: Any) -> tuple[float, float]:
    """(AUROC, its DeLong variance)."""
    auc, v10, v01 = _components(*_split(labels, scores))
    return auc, float(v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01))


def auroc_interval(labels: Any, scores: Any, level: float = 0.95) -> dict[str, float]:
    """AUROC with its DeLong standard error and a ``level`` interval (normal approximation, clipped to [0, 1])."""
    auc, variance = delong(labels, scores)
    se = math.sqrt(max(variance, 0.0))
    z = float(norm.ppf(0.5 + level / 2))
    return {"auroc": auc, "se": se, "low": max(0.0, auc - z * se), "high": min(1.0, auc + z * se), "level": level}


def paired_delong(labels: Any, scores_a: Any, scores_b: Any) -> dict[str, float]:
    """DeLong's test of AUROC(a) = AUROC(b) for two scorings of the same images: both AUROCs, their
    difference a − b with its standard error and 95 % interval, z and the two-sided p-value."""
    pos_a, neg_a = _split(labels, scores_a)
    pos_b, neg_b = _split(labels, scores_b)
    auc_a, v10_a, v01_a = _components(pos_a, neg_a)
    auc_b, v10_b, v01_b = _components(pos_b, neg_b)
    s10, s01 = np.cov(np.stack([v10_a, v10_b])), np.cov(np.stack([v01_a, v01_b]))
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / len(v10_a) + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / len(
        v01_a
    )
    diff, se = auc_a - auc_b, math.sqrt(max(float(variance), 0.0))
    z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    z95 = float(norm.ppf(0.975))
    return {
        "auroc_a": auc_a,
        "auroc_b": auc_b,
        "difference": diff,
        "se": se,
        "low": diff - z95 * se,
        "high": diff + z95 * se,
        "z": z,
        "p": float(2 * norm.sf(abs(z))),
    }


def wilson_interval(successes: int, total: int, level: float = 0.95) -> dict[str, float]:
    """A proportion with Wilson's score interval (sensible at 0 and 1, unlike the normal one)."""
    if total <= 0:
        return {"value": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    z = float(norm.ppf(0.5 + level / 2))
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return {"value": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half), "n": total}


def verdict(test: dict[str, float], alpha: float = 0.05) -> str:
    """'above' / 'below' where the paired test rejects equal AUROCs at ``alpha``, else 'level'."""
    if test["p"] >= alpha:
        return "level"
    return "above" if test["difference"] > 0 else "below"
