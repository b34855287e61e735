"""How unusual a score is among the run's own normal images: its percentile among the image scores of
the held-out normal training images, which training stores (sorted) in model.json.

"The 99.7th percentile of normal" reads at a glance where a raw distance does not. The percentile
counts the normal scores strictly below the score plus half of those equal to it (the mid-rank
convention: a score equal to every normal score is at the 50th percentile, not the 0th or 100th).
A model without stored normal scores (trained before they were stored, or without held-out
images) gives no percentile, never a guess.

It lives in ``runs`` (a record of the run, read from model.json) so that prediction, the report
and the service, which sit on different layers, share one definition.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from typing import Any, Mapping, Sequence

NORMAL_SCORES = "normal_scores"  # the model.json key
NORMAL_SCORES_IMAGES = "held-out normal training images"


def normal_percentile(scores_sorted: Sequence[float], score: float) -> float:
    """The percentage (0 to 100) of ``scores_sorted`` (ascending) strictly below ``score``, plus half
    of those equal to it. Raises ValueError for an empty list or a NaN score."""
    if not scores_sorted:
        raise ValueError("no normal scores to compare with")
    if math.isnan(score):
        raise ValueError("a NaN score has no percentile")
    below = bisect_left(scores_sorted, score)
    ties = bisect_right(scores_sorted, score) - below
    return 100.0 * (below + 0.5 * ties) / len(scores_sorted)


def normal_scores_record(scores: Sequence[float]) -> dict[str, Any]:
    """What training stores under ``normal_scores`` in model.json: the scores, sorted."""
    return {"images": NORMAL_SCORES_IMAGES, "count": len(scores), "scores": sorted(float(s) for s in scores)}


def stored_normal_scores(metadata: Mapping[str, Any]) -> list[float] | None:
    """The sorted normal scores a model's model.json holds, or None when it holds none."""
    record = metadata.get(NORMAL_SCORES)
    scores = record.get("scores") if isinstance(record, Mapping) else None
    return sorted(float(s) for s in scores) if scores else None


def percentile_or_none(scores_sorted: Sequence[float] | None, score: float) -> float | None:
    """:func:`normal_percentile`, or None without stored scores (or for a NaN score)."""
    if not scores_sorted or math.isnan(score):
        return None
    return normal_percentile(scores_sorted, score)


def percentile_text(percentile: float | None) -> str:
    """'' (no stored normal scores), else the percentile with enough digits to tell 99.7 from 100."""
    return "" if percentile is None else f"{percentile:.2f}"


__all__ = [
    "NORMAL_SCORES",
    "normal_percentile",
    "normal_scores_record",
    "percentile_or_none",
    "percentile_text",
    "stored_normal_scores",
]
