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
from scrd.filenames import MODEL_META
from scrd.scoring.maps import gaussian_smooth, image_score
from scrd.scoring.scale_fusion import (
    fuse_on_normal_scale,
    fusion_weights,
    per_scale_scores,
    scale_score_statistics,
)
from scrd.scoring.statistics import measure_statistics
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
    stored = meta["scoring_statistics"]
    assert stored["count"] == meta["data"]["n_holdout"] == 4  # measured on the held-out normals
    assert all(s > 0 for s in stored["score_std"]) and stored["score_std"] == detector.head.score_std.tolist()
    assert "map_mean" not in stored and "pair_mean" not in stored  # only what this scoring reads


def test_detector_fuses_and_reports_the_weights_as_alpha(fused_run):
    detector = Detector.load(fused_run, "cpu", precision="fp32")
    scoring = detector.config.scoring
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    scored = detector.score(images)
    # independently: smooth each scale, standardise by the stored statistics, softmax of z / T
    stack = detector.head.scale_stack(*detector.features(images))
    smoothed = gaussian_smooth(stack, scoring.sigma)
    mean, std = detector.head.score_mean.tolist(), detector.head.score_std.tolist()
    standardized = (smoothed - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    z = torch.stack([image_score(standardized[:, k], "top_k", 5.0) for k in range(3)], 1)
    weights = torch.softmax(z / scoring.fusion_temperature, dim=1)
    expected = (standardized * weights[:, :, None, None]).sum(1)
    torch.testing.assert_close(scored.maps, expected.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scored.alpha, weights.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scored.scores, image_score(expected, "top_k", 5.0).double(), rtol=1e-5, atol=1e-5)


def test_statistics_of_several_heads_share_one_network_pass(fused_run, monkeypatch):
    detector = Detector.load(fused_run, "cpu", precision="fp32")
    own = detector.head
    heads = [
        own.with_options(score="max"),
        own.with_options(feature_pool=1),
        own.with_options(feature_pool=1, scale_fusion="standardized"),
    ]
    batches = [torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    features = [detector.features(b) for b in batches]
    passes = []
    original = detector.features
    monkeypatch.setattr(detector, "features", lambda x: passes.append(1) or original(x))
    assert detector.fit_statistics(iter(batches), heads) == 4
    assert len(passes) == 2  # one network pass per batch, for the detector's head and all three
    for head in (own, *heads):  # what each statistic is, computed one head at a time
        stacks = torch.cat([head.scale_stack(*f) for f in features])
        if head.scoring.scale_fusion == "standardized":
            torch.testing.assert_close(head.map_mean, stacks.double().mean((0, 2, 3)))
            torch.testing.assert_close(head.map_std, stacks.double().std((0, 2, 3), unbiased=False))
            assert torch.isnan(head.score_mean).all()
            continue
        expected = scale_score_statistics(per_scale_scores(gaussian_smooth(stacks, head.scoring.sigma), head.scoring))
        torch.testing.assert_close(head.score_mean, torch.tensor(expected["mean"], dtype=torch.float64))
        torch.testing.assert_close(head.score_std, torch.tensor(expected["std"], dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 2"):
        measure_statistics([own.with_options(score="mean")], [])


def test_a_model_without_the_statistics_says_so(fused_run):
    detector = Detector.load(fused_run, "cpu")
    detector.head.score_mean.fill_(float("nan"))
    with pytest.raises(CheckpointError, match="scale_fusion normal_softmax.*scale_scores.*held-out normal images"):
        detector.score(torch.rand(1, 3, 64, 64))


def test_variants_are_measured_on_the_held_out_normals_and_leave_the_model_as_it_was(fused_run, tmp_path):
    from scrd.evaluation.normal_reference import normal_batches, reference_samples
    from scrd.lab.scoring_variants import variant_heads

    run = tmp_path / "run"
    shutil.copytree(fused_run, run)
    before = (run / "model.pt").read_bytes()
    detector = Detector.load(run, "cpu")
    variants = {"pool1_softmax": {"feature_pool": 1}, "pool1_sum": {"feature_pool": 1, "scale_fusion": "normal_sum"}}
    heads = variant_heads(detector, run, variants)
    # the same statistics as measuring the variant alone on the run's held-out normals
    alone = detector.head.with_options(feature_pool=1)
    detector.fit_statistics(normal_batches(detector, reference_samples(run)), [alone])
    torch.testing.assert_close(heads["pool1_softmax"].score_mean, alone.score_mean)
    assert (run / "model.pt").read_bytes() == before
    (run / "holdout_samples.csv").unlink()
    (run / "train_samples.csv").unlink()
    with pytest.raises(Exception, match="holdout_samples.csv"):
        variant_heads(detector, run, variants)
