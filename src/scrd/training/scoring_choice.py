"""Choosing a trained model's image score without labels (``scoring.choose = label_free``).

The image score that separates best depends on the anomalies: a focal tumour shows in the top few
per cent of a map, a diffuse pneumonia in its mean. Users have no abnormal images, so the score is
chosen on a pseudo-task built from the run's held-out normal images: each is scored beside an altered
copy of itself, the alterations focal (small blobs, cut-paste) and diffuse (large faint opacities,
haze) in equal shares (:func:`~scrd.anomalies.label_free.scoring_choice_set`), none of them the
training's noise patches. Every candidate scoring below gets its normal statistics from the same
held-out images and is scored in one network pass per batch; the candidate with the best AUROC on the
pseudo-task is stored as the model's scoring, and the whole table in model.json.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..anomalies.label_free import scoring_choice_set
from ..config import ScoringConfig
from ..detector import Detector
from .selection import head_scores

# What is chosen: the reduction of the map to a score, the local pooling of the features, and how the
# scales are fused (the temperature and the bank's weight stay the configured ones).
REDUCTIONS = (("mean", 1.0), ("top_k", 20.0), ("top_k", 5.0), ("top_k", 1.0), ("max", 1.0))
POOLS = (3, 1)
FUSIONS = ("normal_softmax", "normal_sum")


def _name(options: dict[str, Any]) -> str:
    score = (
        "mean"
        if options["score"] == "mean"
        else "max"
        if options["score"] == "max"
        else (f"top{options['top_k_percent']:g}")
    )
    return f"{options['scale_fusion']}-pool{options['feature_pool']}-{score}"


def candidates(base: ScoringConfig, has_student: bool = True) -> dict[str, ScoringConfig]:
    """The scorings the choice is among, by name; the configured one first (it wins ties). A model
    without a student (the knn method) has one map: only its reduction is chosen."""
    grid = [{"score": s, "top_k_percent": k} for s, k in REDUCTIONS]
    if has_student:
        grid = [{**g, "feature_pool": p, "scale_fusion": f} for f in FUSIONS for p in POOLS for g in grid]
    found: dict[str, ScoringConfig] = {}
    for options in grid:
        scoring = dataclasses.replace(base, **options, choose="fixed")
        named = {**dataclasses.asdict(scoring)}
        found[_name(named)] = scoring
    own = _name(dataclasses.asdict(base))
    if own in found:
        found = {own: found[own], **{k: v for k, v in found.items() if k != own}}
    return found


def choose_scoring(detector: Detector, normals01: torch.Tensor, seed: int) -> tuple[ScoringConfig, dict[str, Any]]:
    """(the chosen scoring, the record for model.json): every candidate's AUROC on the pseudo-task,
    overall and per kind of alteration, and which one was chosen. Ties go to the configured scoring."""
    options = candidates(detector.config.scoring, detector.head.has_student)
    heads = {name: detector.head.variant(scoring) for name, scoring in options.items()}
    batches = (normals01[i : i + 16] for i in range(0, len(normals01), 16))
    detector.fit_statistics(batches, list(heads.values()))
    images, labels, kinds = scoring_choice_set(normals01, seed)
    scores = head_scores(detector, images, heads)
    kinds_array = np.array(kinds)
    table = {}
    for name, values in scores.items():
        row = {"auroc": float(roc_auc_score(labels, values))}
        for kind in sorted(set(kinds) - {"normal"}):
            keep = (kinds_array == "normal") | (kinds_array == kind)
            row[kind] = float(roc_auc_score(labels[keep], values[keep]))
        table[name] = {k: round(v, 6) for k, v in row.items()}
    chosen = max(table, key=lambda name: table[name]["auroc"])  # the first of equals: the configured one
    record = {
        "chosen": chosen,
        "configured": next(iter(options)),
        "images": f"{len(normals01)} held-out normal images and one altered copy of each (focal: blob, "
        "cut-paste; diffuse: opacity, haze)",
        "criterion": "AUROC of the held-out normals against their altered copies; no real label",
        "candidates": table,
    }
    return dataclasses.replace(options[chosen], choose=detector.config.scoring.choose), record
