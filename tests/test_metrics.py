"""Metrics: exact parity with the official evaluation, calibrated thresholds, input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from golden import json_file
from hypothesis import given, settings
from hypothesis import strategies as st

from scrd.evaluation.metrics import (
    best_f1_threshold,
    conformal_threshold,
    metrics_at_threshold,
    official_metrics,
    oracle_metrics,
)

CASES = json_file("metrics_official.json")["cases"]


def _ap_by_hand(labels, scores) -> float:
    """Average precision from its definition: Σ over distinct thresholds t (highest first) of
    (recall(t) − recall(previous t)) · precision(t), predicting abnormal when score >= t."""
    y, s = np.asarray(labels), np.asarray(scores, float)
    total, last_recall = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        pred = s >= t
        tp = int((pred & (y == 1)).sum())
        recall, precision = tp / int((y == 1).sum()), tp / int(pred.sum())
        total += (recall - last_recall) * precision
        last_recall = recall
    return total


def test_average_precision_on_hand_computed_numbers() -> None:
    # Ranked: 0.9 (1), 0.8 (0), 0.7 (1), 0.1 (0): AP = 0.5 * 1/1 + 0.5 * 2/3.
    assert oracle_metrics([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])["ap"] == pytest.approx(0.5 + 1 / 3, abs=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_official_metrics_reproduced_exactly(name: str) -> None:
    case = CASES[name]
    labels, scores = case["labels"], case["scores"]
    assert official_metrics(labels, scores) == {
        "auroc": case["auroc"],
        "f1": case["f1"],
        "acc": case["acc"],
        "threshold": case["best_thr"],
    }
    assert best_f1_threshold(labels, scores) == case["best_thr"]
    oracle = oracle_metrics(labels, scores)
    assert oracle["auroc"] == case["auroc_unrounded"]
    assert oracle["f1"] == case["f1_unrounded"]
    assert oracle["acc"] == case["acc_unrounded"]
    assert oracle["ap"] == pytest.approx(_ap_by_hand(labels, scores), abs=1e-12)
    at_thr = metrics_at_threshold(labels, scores, oracle["threshold"])
    assert at_thr["tp"] + at_thr["fp"] == case["n_pred_pos_at_thr"]
    assert at_thr["f1"] == pytest.approx(oracle["f1"], abs=1e-12)
    assert at_thr["acc"] == pytest.approx(oracle["acc"], abs=1e-12)


def test_accepts_numpy_and_torch_inputs() -> None:
    case = CASES["ties"]
    expected = official_metrics(case["labels"], case["scores"])
    scores = torch.tensor(case["scores"], dtype=torch.float64)
    assert official_metrics(np.array(case["labels"]), scores) == expected


# ----------------------------------------------------------------------------- calibrated threshold
def flagged_fraction(scores: np.ndarray, thr: float) -> float:
    return float(np.mean(scores >= thr))


def test_conformal_threshold_passes_the_k_lowest_scores() -> None:
    scores = np.arange(1.0, 11.0)  # n = 10
    at_80 = conformal_threshold(scores, 0.8)  # k = ceil(11 · 0.8) = 9: scores 1..9 pass, 10 is flagged
    assert at_80["threshold"] == np.nextafter(9.0, np.inf) and at_80["passed"] == 9 and at_80["guaranteed"]
    assert at_80["expected_specificity"] == pytest.approx(9 / 11)
    at_90 = conformal_threshold(scores, 0.9)  # k = ceil(9.9) = 10: every score passes
    assert at_90["threshold"] > 10.0 and at_90["passed"] == 10 and at_90["guaranteed"]
    at_95 = conformal_threshold(scores, 0.95)  # k = ceil(10.45) = 11 > n: no threshold can promise 0.95
    assert not at_95["guaranteed"] and at_95["passed"] == 10 and at_95["min_images_for_target"] == 19


def test_conformal_threshold_never_splits_ties() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.3, 0.3])
    thr = conformal_threshold(scores, 0.5)["threshold"]  # k = 3 lands inside the tied block: all pass
    assert thr > 0.3 and flagged_fraction(scores, thr) == 0.0
    assert conformal_threshold(np.full(4, 2.0), 0.5)["threshold"] > 2.0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 12), min_size=1, max_size=60),
    st.floats(0.01, 0.99, allow_nan=False),
)
def test_conformal_threshold_passes_exactly_the_scores_up_to_the_kth(values: list[int], target: float) -> None:
    scores = np.asarray(values, dtype=np.float64) / 4.0  # many ties
    result = conformal_threshold(scores, target)
    k = min(len(scores), math.ceil((len(scores) + 1) * target - 1e-9))
    kth = np.sort(scores)[k - 1]
    assert result["passed"] == np.sum(scores <= kth) >= k  # ties with the k-th pass with it
    assert result["threshold"] > kth and not np.any((scores > kth) & (scores < result["threshold"]))


def test_conformal_threshold_keeps_its_promise_on_new_normals() -> None:
    """Over many calibration sets, new normal images pass with probability k / (n + 1) >= target."""
    rng = np.random.default_rng(0)
    n, target = 40, 0.9
    reached = [
        np.mean(rng.normal(size=2000) < conformal_threshold(rng.normal(size=n), target)["threshold"])
        for _ in range(300)
    ]
    one = conformal_threshold(rng.normal(size=n), target)
    assert np.mean(reached) >= target and np.mean(reached) == pytest.approx(one["expected_specificity"], abs=0.01)
    assert np.std(reached) == pytest.approx(one["specificity_std"], rel=0.15)


def test_calibrate_validation() -> None:
    with pytest.raises(ValueError, match="target_specificity"):
        conformal_threshold([0.1, 0.2], 0.0)
    with pytest.raises(ValueError, match="target_specificity"):
        conformal_threshold([0.1, 0.2], 1.5)
    with pytest.raises(ValueError, match="empty"):
        conformal_threshold([], 0.95)
    with pytest.raises(ValueError, match="NaN"):
        conformal_threshold([0.1, float("nan")], 0.95)


# ----------------------------------------------------------------------------- fixed threshold
def test_metrics_at_threshold_counts_and_rates() -> None:
    labels = [0, 0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.4, 0.5, 0.2, 0.5, 0.9, 0.3]
    m = metrics_at_threshold(labels, scores, 0.5)  # score >= thr is anomalous
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 3, 1)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["acc"] == pytest.approx(5 / 7)


def test_metrics_at_threshold_undefined_rates_are_nan() -> None:
    m = metrics_at_threshold([0, 0, 0], [0.1, 0.2, 0.3], 0.5)
    assert m["specificity"] == 1.0 and m["acc"] == 1.0
    assert math.isnan(m["sensitivity"]) and math.isnan(m["precision"]) and math.isnan(m["f1"])


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("fn", [best_f1_threshold, oracle_metrics, official_metrics])
def test_single_class_is_rejected_where_needed(fn) -> None:
    with pytest.raises(ValueError, match="both normal"):
        fn([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="both normal"):
        fn([1, 1], [0.1, 0.2])


@pytest.mark.parametrize("fn", [oracle_metrics, lambda y, s: metrics_at_threshold(y, s, 0.5)])
def test_bad_inputs_are_rejected(fn) -> None:
    with pytest.raises(ValueError, match="same length"):
        fn([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        fn([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1"):
        fn([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
