"""AUROC intervals and the paired test, against a hand computation and an independent brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from scrd.evaluation.intervals import auroc_interval, delong, paired_delong, verdict, wilson_interval


def _brute_force(labels, a, b=None):
    """DeLong's structural components from every (abnormal, normal) pair, written from the 1988 paper."""

    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0

    def parts(s):
        pos, neg = s[labels == 1], s[labels == 0]
        v10 = np.array([np.mean([psi(x, y) for y in neg]) for x in pos])
        v01 = np.array([np.mean([psi(x, y) for x in pos]) for y in neg])
        return v10.mean(), v10, v01

    auc_a, v10_a, v01_a = parts(a)
    if b is None:
        return auc_a, v10_a.var(ddof=1) / len(v10_a) + v01_a.var(ddof=1) / len(v01_a)
    auc_b, v10_b, v01_b = parts(b)
    cov = lambda u, v: np.cov(u, v, ddof=1)[0, 1]  # noqa: E731
    var = (v10_a.var(ddof=1) + v10_b.var(ddof=1) - 2 * cov(v10_a, v10_b)) / len(v10_a)
    var += (v01_a.var(ddof=1) + v01_b.var(ddof=1) - 2 * cov(v01_a, v01_b)) / len(v01_a)
    return auc_a - auc_b, var


def test_delong_by_hand():
    # abnormal 3, 2; normal 1, 2 -> pairs: 3>1, 3>2, 2>1, 2=2 (½): AUROC 3.5 / 4
    labels, scores = np.array([1, 1, 0, 0]), np.array([3.0, 2.0, 1.0, 2.0])
    auc, variance = delong(labels, scores)
    assert auc == 0.875
    # V10 = (1, 0.75), V01 = (1, 0.75): each variance 1/32, over 2 -> 1/64 + 1/64
    assert variance == pytest.approx(1 / 32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_equals_the_brute_force_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = np.array([0] * 30 + [1] * 25)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounded: ties happen
    auc, variance = delong(labels, scores)
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    expected_auc, expected_var = _brute_force(labels, scores)
    assert auc == pytest.approx(expected_auc) and variance == pytest.approx(expected_var)
    other = np.round(scores + rng.normal(0, 0.7, len(scores)), 1)
    test = paired_delong(labels, scores, other)
    diff, var = _brute_force(labels, scores, other)
    assert test["difference"] == pytest.approx(diff) and test["se"] == pytest.approx(math.sqrt(var))


def test_the_interval_covers_as_a_bootstrap_would():
    rng = np.random.default_rng(7)
    labels = np.array([0] * 200 + [1] * 200)
    scores = rng.normal(labels * 1.0, 1.0)
    ci = auroc_interval(labels, scores)
    boot = []
    normal, abnormal = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    for _ in range(400):  # stratified bootstrap: the classes resampled apart
        idx = np.concatenate([rng.choice(normal, len(normal)), rng.choice(abnormal, len(abnormal))])
        boot.append(roc_auc_score(labels[idx], scores[idx]))
    assert ci["se"] == pytest.approx(np.std(boot), rel=0.15)
    assert ci["low"] < ci["auroc"] < ci["high"]


def test_paired_test_tells_a_better_score_from_a_level_one():
    rng = np.random.default_rng(3)
    labels = np.array([0] * 300 + [1] * 300)
    signal = rng.normal(labels * 1.0, 1.0)
    better = signal + rng.normal(0, 0.3, len(labels))  # the same signal, less noise
    worse = signal + rng.normal(0, 1.5, len(labels))
    assert verdict(paired_delong(labels, better, worse)) == "above"
    assert verdict(paired_delong(labels, worse, better)) == "below"
    twin = signal + rng.normal(0, 0.3, len(labels))
    assert verdict(paired_delong(labels, better, twin)) == "level"
    same = paired_delong(labels, signal, signal)
    assert same["difference"] == 0 and same["p"] == 1.0


def test_wilson_interval():
    ci = wilson_interval(8, 10)
    assert (
        ci["value"] == 0.8
        and ci["low"] == pytest.approx(0.4902, abs=1e-4)
        and ci["high"] == pytest.approx(0.9433, abs=1e-4)
    )
    assert wilson_interval(0, 5)["low"] == 0.0 and wilson_interval(5, 5)["high"] == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        delong(np.array([0, 1]), np.array([0.1, 0.2]))


def _scores_csv(path, paths, labels, scores):
    path.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,score,alpha_1,alpha_2,alpha_3"]
    rows += [f"{p},{y},{float(s)!r},nan,nan,nan" for p, y, s in zip(paths, labels, scores)]
    (path / "scores.csv").write_text("\n".join(rows) + "\n")
    return path


def test_scrd_compare_pairs_two_evaluations_by_image(tmp_path, capsys):
    import json

    from scrd.cli import main

    rng = np.random.default_rng(0)
    labels = np.array([0] * 150 + [1] * 150)
    signal = rng.normal(labels * 1.2, 1.0)
    paths = [f"img{i}.png" for i in range(len(labels))]
    a = _scores_csv(tmp_path / "a", paths, labels, signal + rng.normal(0, 0.2, len(labels)))
    # b lists the same images in another order, with a noisier score
    order = rng.permutation(len(labels))
    noisy = signal + rng.normal(0, 2.0, len(labels))
    b = _scores_csv(tmp_path / "b", [paths[i] for i in order], labels[order], noisy[order])
    assert main(["compare", str(a), str(b), "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "c.json").read_text())
    expected = paired_delong(labels, signal + 0, noisy)  # the pairing follows the paths, not the rows
    assert result["verdict"] == "above" and "a is above b" in out
    assert result["auroc_b"] == pytest.approx(roc_auc_score(labels, noisy))
    assert result["n_normal"] == result["n_abnormal"] == 150 and expected["auroc_b"] == result["auroc_b"]
    c = _scores_csv(tmp_path / "c", paths[:-1], labels[:-1], signal[:-1])
    assert main(["compare", str(a), str(c)]) != 0
    assert "did not score the same images" in capsys.readouterr().err
