"""scoring.scale_fusion: per-scale maps on the scale of normal images, weighted per image by where the
image departs most from them. Hand-computed weights, the identity z_k = score(m̃_k), the detector's
maps against an independent computation, and the statistics a run stores and an evaluation measures."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import pytest
import torch
from helpers import tiny_config

from scrd.config import ScoringConfig
from scrd.detector import Detector
from scrd.errors import CheckpointError, ConfigError
from scrd.evaluation.evaluate import evaluate
from scrd.filenames import MODEL_META
from scrd.scoring.maps import gaussian_smooth, image_score
from scrd.scoring.scale_fusion import (
    fuse_on_normal_scale,
    fusion_weights,
    per_scale_scores,
    scale_score_statistics,
    statistics_key,
)
from scrd.training.train import train


def test_fusion_weights_by_hand():
    z = torch.tensor([[0.0, 2.0, -2.0]])
    # softmax([0, 1, -1]) = (1, e, 1/e) / (1 + e + 1/e)
    total = 1 + math.e + 1 / math.e
    expected = torch.tensor([[1 / total, math.e / total, (1 / math.e) / total]])
    torch.testing.assert_close(fusion_weights(z, 2.0), expected)
    # a dropped scale gets weight 0 and the others share the softmax: (1, e) / (1 + e)
    dropped = torch.tensor([[1 / (1 + math.e), math.e / (1 + math.e), 0.0]])
    torch.testing.assert_close(fusion_weights(z, 2.0, (1.0, 1.0, 0.0)), dropped)
    # a fixed weight w multiplies exp(z / T) by w: (2, e, 1/e) / (2 + e + 1/e)
    total = 2 + math.e + 1 / math.e
    torch.testing.assert_close(
        fusion_weights(z, 2.0, (2.0, 1.0, 1.0)), torch.tensor([[2 / total, math.e / total, (1 / math.e) / total]])
    )


def test_constant_maps_fuse_by_hand():
    maps = torch.tensor([2.0, 5.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    mean, std = [1.0, 3.0, 1.0], [1.0, 2.0, 0.5]  # standardised: (1, 1, 0) everywhere
    scoring = ScoringConfig(score="mean", scale_fusion="normal_softmax", fusion_temperature=1.0)
    fused, weights = fuse_on_normal_scale(maps, mean, std, scoring)
    e = math.e
    torch.testing.assert_close(weights, torch.tensor([[e, e, 1.0]]) / (2 * e + 1))
    torch.testing.assert_close(fused, torch.full((1, 4, 4), 2 * e / (2 * e + 1)))
    fused, weights = fuse_on_normal_scale(maps, mean, std, dataclasses.replace(scoring, scale_fusion="normal_sum"))
    torch.testing.assert_close(weights, torch.ones(1, 3))
    torch.testing.assert_close(fused, torch.full((1, 4, 4), 2.0))


@pytest.mark.parametrize("score", ["mean", "max", "top_k"])
def test_standardised_maps_score_as_the_standardised_scores(score):
    """z_k = score(m̃_k) = (score(m_k) − μ_k) / σ_k: the weights read how unusual each scale's own score is."""
    torch.manual_seed(0)
    maps = torch.rand(4, 3, 16, 16)
    mean, std = torch.tensor([0.2, 0.5, 0.1]), torch.tensor([0.1, 0.3, 0.05])
    scoring = ScoringConfig(score=score, top_k_percent=5.0, scale_fusion="normal_softmax", fusion_temperature=0.7)
    z = (per_scale_scores(maps, scoring) - mean) / std
    _, weights = fuse_on_normal_scale(maps, mean.tolist(), std.tolist(), scoring)
    torch.testing.assert_close(weights, torch.softmax(z / 0.7, dim=1))
    per_scale = torch.stack([image_score(maps[:, k], score, 5.0) for k in range(3)], 1)
    torch.testing.assert_close(per_scale_scores(maps, scoring), per_scale)


def test_statistics_are_population_mean_and_std():
    stats = scale_score_statistics(torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 6.0]]))
    assert stats == {"mean": [2.0, 0.0, 4.0], "std": [1.0, 0.0, 2.0], "images": 2}
    with pytest.raises(ValueError, match="at least 2"):
        scale_score_statistics(torch.ones(1, 3))


def test_statistics_key_names_what_changes_a_scale_score():
    base = ScoringConfig(score="top_k", top_k_percent=5.0, feature_pool=3, alpha_weighting="none")
    keys = {
        statistics_key(base),
        statistics_key(dataclasses.replace(base, top_k_percent=1.0)),
        statistics_key(dataclasses.replace(base, feature_pool=1)),
        statistics_key(dataclasses.replace(base, sigma=2.0)),
        statistics_key(dataclasses.replace(base, score="max")),
        statistics_key(dataclasses.replace(base, alpha_weighting="inside_cosine")),
    }
    assert len(keys) == 6
    # what only fuses (temperature, fixed weights, the fusion itself) shares the statistics
    assert statistics_key(dataclasses.replace(base, fusion_temperature=4.0, scale_weights=(1, 1, 0))) == (
        statistics_key(base)
    )


def test_config_rejects_conflicting_fusion_options():
    with pytest.raises(ConfigError, match="fusion_temperature"):
        tiny_config("denoising", scoring__scale_fusion="normal_softmax", scoring__fusion_temperature=0.0)
    with pytest.raises(ConfigError, match="scale_fusion"):
        tiny_config("paper", scoring__scale_fusion="normal_softmax", scoring__alpha_weighting="weighted")


@pytest.fixture(scope="module")
def fused_run(phantom_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("fusion") / "run"
    config = tiny_config(
        "denoising",
        train__iterations=4,
        train__holdout_fraction=0.25,
        scoring__scale_fusion="normal_softmax",
        scoring__score="top_k",
        scoring__top_k_percent=5.0,
    )
    train(config, phantom_data, run, progress=False)
    return run


def test_training_stores_the_statistics_its_scoring_needs(fused_run):
    meta = json.loads((fused_run / MODEL_META).read_text())
    detector = Detector.load(fused_run, "cpu")
    stored = meta["normal_statistics"]["scale_scores"][statistics_key(detector.config.scoring)]
    assert stored["images"] == meta["data"]["n_holdout"] == 4  # measured on the held-out normals
    assert all(s > 0 for s in stored["std"])


def test_detector_fuses_and_reports_the_weights_as_alpha(fused_run):
    detector = Detector.load(fused_run, "cpu", precision="fp32")
    scoring = detector.config.scoring
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    scored = detector.score(images)
    # independently: smooth each scale, standardise by the stored statistics, softmax of z / T
    stack, _ = detector.scale_stack(images)
    smoothed = gaussian_smooth(stack, scoring.sigma)
    mean, std = detector.scale_score_statistics()
    standardized = (smoothed - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    z = torch.stack([image_score(standardized[:, k], "top_k", 5.0) for k in range(3)], 1)
    weights = torch.softmax(z / scoring.fusion_temperature, dim=1)
    expected = (standardized * weights[:, :, None, None]).sum(1)
    torch.testing.assert_close(scored.maps, expected.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scored.alpha, weights.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scored.scores, image_score(expected, "top_k", 5.0).double(), rtol=1e-5, atol=1e-5)


def test_normal_statistics_share_one_network_pass_per_feature_pooling(fused_run, monkeypatch):
    detector = Detector.load(fused_run, "cpu", precision="fp32")
    own = detector.config.scoring  # 3x3 pooling (the preset's)
    same_pass = dataclasses.replace(own, score="max")
    other_pass = dataclasses.replace(own, feature_pool=1)
    batches = [torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    # what each statistic is, computed one scoring at a time
    stacks = {p: torch.cat([detector.scale_stack(b, s)[0] for b in batches]) for p, s in ((3, own), (1, other_pass))}
    expected_mean = stacks[3].double().mean((0, 2, 3))
    expected_std = stacks[3].double().std((0, 2, 3), unbiased=False)

    passes = []
    original = detector.scale_stack
    monkeypatch.setattr(detector, "scale_stack", lambda x, s=None: passes.append(s) or original(x, s))
    stats = detector.measure_normal_statistics(iter(batches), [own, same_pass, other_pass])
    assert len(passes) == 4  # 2 batches x 2 poolings, not 2 x (1 + 3)
    torch.testing.assert_close(torch.tensor(stats["scale_mean"], dtype=torch.float64), expected_mean)
    torch.testing.assert_close(torch.tensor(stats["scale_std"], dtype=torch.float64), expected_std)
    for scoring, pool in ((own, 3), (same_pass, 3), (other_pass, 1)):
        per_image = per_scale_scores(gaussian_smooth(stacks[pool], scoring.sigma), scoring)
        expected = scale_score_statistics(per_image)
        measured = stats["scale_scores"][statistics_key(scoring)]
        torch.testing.assert_close(torch.tensor(measured["mean"]), torch.tensor(expected["mean"]))
        torch.testing.assert_close(torch.tensor(measured["std"]), torch.tensor(expected["std"]))
        assert detector.scale_score_statistics(scoring) == (measured["mean"], measured["std"])  # kept for fuse
    passes.clear()  # scale scores alone take no pass for the map moments of the detector's own pooling
    assert "scale_mean" not in detector.measure_normal_statistics(iter(batches), [other_pass], map_moments=False)
    assert len(passes) == 2


def test_a_model_without_the_statistics_says_so(fused_run):
    detector = Detector.load(fused_run, "cpu")
    detector.metadata["normal_statistics"].pop("scale_scores")
    with pytest.raises(CheckpointError, match="scale_fusion = normal_softmax .*held-out normal images"):
        detector.score(torch.rand(1, 3, 64, 64))


def test_evaluate_measures_a_scoring_variant_on_the_held_out_normals(fused_run, phantom_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(fused_run, run)
    variants = {"pool1_softmax": {"feature_pool": 1}, "pool1_sum": {"feature_pool": 1, "scale_fusion": "normal_sum"}}
    metrics = evaluate(run, phantom_data, tmp_path / "eval", scoring_variants=variants, report=False)
    assert set(variants) <= set(metrics["auroc_by_image_score"])
    assert 0.0 <= metrics["auroc_by_image_score"]["pool1_sum"] <= 1.0
    # measured in memory for this evaluation; the model's own file is left as training wrote it
    stored = json.loads((run / MODEL_META).read_text())["normal_statistics"]["scale_scores"]
    assert list(stored) == [statistics_key(Detector.load(run, "cpu").config.scoring)]
    (run / "holdout_samples.csv").unlink()
    (run / "train_samples.csv").unlink()
    with pytest.raises(Exception, match="holdout_samples.csv"):
        evaluate(run, phantom_data, tmp_path / "eval2", scoring_variants=variants, report=False)
