"""Reading the scoring state of a model saved by scrd 0.2 (model.json ``format`` scrd-checkpoint/1).

Those models kept the normal-image statistics in model.json, under string keys built from the scoring
options, and the memory bank beside the state dict; today a :class:`~scrd.scoring.head.ScoringHead`
holds both as buffers. :func:`fill_head` copies the statistics of the model's own scoring into a head,
so an old model scores as it did.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import ScoringConfig
from .head import ScoringHead


def scale_scores_key(scoring: ScoringConfig) -> str:
    """scrd 0.2's key of the per-scale image-score statistics: what of ``scoring`` changes them."""
    k = f"-{scoring.top_k_percent:g}" if scoring.score == "top_k" else ""
    inside = "-inside_cosine" if scoring.alpha_weighting == "inside_cosine" else ""
    return f"pool{scoring.feature_pool}-sigma{scoring.sigma:g}-{scoring.score}{k}{inside}"


def bank_key(scoring: ScoringConfig) -> str:
    """scrd 0.2's key of the (student, bank) image-score statistics."""
    weights = ",".join(f"{w:g}" for w in scoring.scale_weights)
    standardized = scoring.scale_fusion == "standardized"  # 0.2's normalize 'scale' with fusion 'sum'
    fusion = ("sum" if standardized else scoring.scale_fusion) + (
        f"-t{scoring.fusion_temperature:g}" if scoring.scale_fusion == "normal_softmax" else ""
    )
    normalize = "scale" if standardized else "none"
    return f"{scale_scores_key(scoring)}-{fusion}-w{weights}-{normalize}-{scoring.alpha_weighting}"


def fill_head(head: ScoringHead, statistics: dict[str, Any]) -> None:
    """Copy the statistics a 0.2 model stored (model.json ``normal_statistics``) for its own scoring
    into ``head``; what the model never stored stays unmeasured (scoring then names what is missing)."""
    scoring, k = head.scoring, head.num_scales

    def put(name: str, values: Any) -> None:
        if values is not None and len(values) == getattr(head, name).numel():
            getattr(head, name).copy_(torch.tensor(values, dtype=torch.float64))

    if k > 1:
        put("map_mean", statistics.get("scale_mean"))
        put("map_std", statistics.get("scale_std"))
    found = statistics.get("scale_scores", {}).get(scale_scores_key(scoring))
    if found is not None:
        put("score_mean", found["mean"])
        put("score_std", found["std"])
    found = statistics.get("memory_bank", {}).get(bank_key(scoring))
    if found is not None:
        put("pair_mean", found["mean"])
        put("pair_std", found["std"])
