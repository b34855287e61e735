"""The spatial scale head: one α per location, its per-location separation objective, maps
weighted per location, and its statistics (hand-computed values)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import tiny_config

from scrd.config import ConfigError
from scrd.detector import Detector
from scrd.evaluation.evaluate import alpha_statistics
from scrd.losses.scale_objective import spatial_separation_objective
from scrd.losses.step import _head_objective
from scrd.model import SCRD
from scrd.model.scale_head import SpatialScaleHead
from scrd.scoring.maps import combine_scales
from scrd.training.train import train

SPATIAL = {
    "model__scale_head": "spatial",
    "loss__alpha_objective": "separation",
    "loss__alpha_entropy": 0.1,
    "scoring__alpha_weighting": "weighted",
    "scoring__scale_fusion": "sum",  # α weights the raw maps (the preset fuses them on normal statistics)
}


def test_the_head_reads_all_three_scales_at_each_location_of_the_middle_grid():
    head = SpatialScaleHead((1, 1, 1))
    with torch.no_grad():  # logit_k = feature of scale k: α(x) = softmax(u_1↓(x), u_2(x), u_3↑(x))
        head.logits.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        head.logits.bias.zero_()
    u1 = torch.arange(16.0).view(1, 1, 4, 4)  # 2x2 block means at the 2x2 grid: 2.5, 4.5, 10.5, 12.5
    u2 = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    u3 = torch.full((1, 1, 1, 1), 7.0)  # upsampled: 7 everywhere
    alpha = head([u1, u2, u3])
    assert alpha.shape == (1, 3, 2, 2)
    expected = torch.softmax(torch.tensor([10.5, 2.0, 7.0]), 0)  # location (1, 0)
    assert torch.allclose(alpha[0, :, 1, 0], expected, atol=1e-6)
    assert torch.allclose(alpha.sum(1), torch.ones(1, 2, 2))


def test_the_objective_by_hand():
    # one image, 2 scales on a 2x2 grid; α = (0.75, 0.25) everywhere; the patch is the top-left pixel
    alpha = torch.tensor([0.75, 0.25]).view(1, 2, 1, 1)
    stack = torch.tensor([[[[0.8, 0.2], [0.2, 0.2]], [[0.4, 0.0], [0.0, 0.4]]]])
    mask = torch.tensor([[[True, False], [False, False]]])
    # fused = 0.75·m1 + 0.25·m2 = [[0.7, 0.15], [0.15, 0.25]]: inside 0.7, outside mean 0.55/3
    # level = mean of the stack = 2.2/8 = 0.275; H(α) = −(0.75 ln 0.75 + 0.25 ln 0.25)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = (0.55 / 3 - 0.7) / 0.275 - 0.5 * entropy
    value = spatial_separation_objective(alpha, stack, mask, entropy_weight=0.5)
    assert value.shape == (1,) and value.item() == pytest.approx(expected, rel=1e-6)


def test_maps_are_weighted_per_location():
    stack = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[10.0, 20.0], [30.0, 40.0]]]])
    per_location = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]], [[0.0, 1.0], [0.5, 1.0]]]])
    assert combine_scales(stack, per_location).tolist() == [[[1.0, 20.0], [16.5, 40.0]]]
    # a [B, K, 1, 1] α is the per-image weighting
    per_image = torch.tensor([[0.25, 0.75]])
    assert torch.equal(combine_scales(stack, per_image.view(1, 2, 1, 1)), combine_scales(stack, per_image))


def test_the_head_objective_trains_the_head_and_nothing_else():
    torch.manual_seed(0)
    config = tiny_config("denoising", **SPATIAL)
    model = SCRD("mobilenet_v2", "spatial").train()
    noisy = torch.randn(2, 3, 64, 64)
    patches = torch.tensor([[[16, 16, 8, 8]], [[12, 20, 30, 4]]])
    objective = _head_objective(model, model.encode(noisy), noisy, patches, config.loss, torch.device("cpu"), "fp32")
    objective.backward()
    assert model.scale_head.logits.weight.grad.abs().sum() > 0
    trained_elsewhere = [p for m in (model.bottleneck, model.decoder) for p in m.parameters() if p.grad is not None]
    assert trained_elsewhere == []


def test_a_spatial_head_needs_the_separation_objective():
    with pytest.raises(ConfigError, match="spatial"):
        tiny_config(
            "denoising", model__scale_head="spatial", scoring__alpha_weighting="weighted", scoring__scale_fusion="sum"
        )
    with pytest.raises(ConfigError, match="spatial"):
        tiny_config("denoising", **{**SPATIAL, "scoring__alpha_weighting": "inside_cosine"})


def test_largest_weight_is_read_per_location():
    # two images whose α alternates between scales 1 and 2 across locations: one-hot everywhere, so
    # it has collapsed per location although each image's mean α is (0.5, 0.5, 0)
    mean_alpha = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    stats = alpha_statistics(mean_alpha, np.array([1.0, 1.0]))
    assert stats["mean_max_weight"] == 1.0 and stats["mean"] == [0.5, 0.5, 0.0]
    assert alpha_statistics(mean_alpha)["mean_max_weight"] == 0.5  # a global α of (0.5, 0.5, 0)


def test_a_trained_spatial_model_saves_loads_and_scores(phantom_data, tmp_path):
    run = tmp_path / "run"
    train(tiny_config("denoising", **SPATIAL), phantom_data, run, progress=False)
    detector = Detector.load(run)
    images = torch.rand(3, 3, 64, 64)
    features = detector.features(images)
    stack, alpha = detector.head.scale_stack(*features), features.alpha
    assert alpha.shape == (3, 3, 8, 8) and torch.allclose(alpha.sum(1), torch.ones(3, 8, 8), atol=1e-5)
    scored = detector.score(images)
    assert torch.allclose(scored.alpha, alpha.mean((2, 3)).cpu())
    assert torch.allclose(scored.alpha_peak, alpha.amax(1).mean((1, 2)).cpu())
    assert torch.allclose(scored.maps, detector.head.fuse_scales(stack, alpha)[0].cpu())
