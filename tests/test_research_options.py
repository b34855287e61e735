"""The options of the detection research, each against hand-computed values: the entropy bonus
and the separation objective of the scale head, the scoring options (top k %, per-scale
normalisation, feature pooling, the released code's α inside the cosine with a saturated α), and
the validation anomalies of the label-free criterion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config

from scrd.anomalies.label_free import validation_set
from scrd.config import LossConfig
from scrd.detector import Detector
from scrd.errors import ConfigError
from scrd.losses.distillation import alpha_entropy, distillation_loss
from scrd.losses.scale_objective import patch_mask, patch_separation, separation_objective
from scrd.model import SCRD
from scrd.scoring.maps import image_score, scale_maps, standardize_scales


# ---------------------------------------------------------------------------------- α objectives
def test_alpha_entropy_of_uniform_and_one_hot_weights():
    assert alpha_entropy(torch.full((2, 3), 1 / 3)).item() == pytest.approx(math.log(3))
    assert alpha_entropy(torch.tensor([[1.0, 0.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-9)
    # H(0.5, 0.25, 0.25) = 0.5 ln 2 + 2 · 0.25 ln 4 = 1.5 ln 2
    assert alpha_entropy(torch.tensor([[0.5, 0.25, 0.25]])).item() == pytest.approx(1.5 * math.log(2))


def _features(values):
    """[B=1, C=1, 1, 1] features per scale from plain numbers, so 1 − cos is 0 or 2 (signs)."""
    return [torch.tensor(float(v)).view(1, 1, 1, 1) for v in values]


def test_entropy_bonus_is_subtracted_from_the_loss_it_trains():
    u, v = _features([1, 1, 1]), _features([1, -1, 1])  # d_uv = (0, 2, 0)
    z = _features([-1, -1, -1])  # d_zv = (2, 0, 2)
    alpha = torch.tensor([[0.5, 0.25, 0.25]], requires_grad=True)
    plain = LossConfig(form="ratio_of_sums", alpha_placement="outside", batch_reduction="mean_of_ratios")
    bonus = LossConfig(
        form="ratio_of_sums", alpha_placement="outside", batch_reduction="mean_of_ratios", alpha_entropy=0.1
    )
    # num = 0.25 · 2 = 0.5; den = 0.5 · 2 + 0.25 · 2 = 1.5
    assert distillation_loss(u, v, alpha, plain, z).loss.item() == pytest.approx(0.5 / 1.5)
    expected = 0.5 / 1.5 - 0.1 * 1.5 * math.log(2)
    assert distillation_loss(u, v, alpha, bonus, z).loss.item() == pytest.approx(expected)


def test_separation_objective_leaves_alpha_out_of_the_distillation_loss():
    u, z = _features([1, 1, 1]), _features([-1, -1, -1])
    v = [f.requires_grad_(True) for f in _features([1, -1, 1])]
    alpha = torch.tensor([[0.5, 0.25, 0.25]], requires_grad=True)
    config = LossConfig(form="ratio_of_sums", alpha_placement="outside", alpha_objective="separation")
    distillation_loss(u, v, alpha, config, z).loss.backward()
    assert alpha.grad is None and v[1].grad is not None  # the student learns; the head only from its objective


def test_patch_mask_and_separation_by_hand():
    mask = patch_mask(torch.tensor([[[2, 3, 1, 0]]]), 4, 4)
    assert mask.int().tolist() == [[[0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]]
    # one scale at 4x4: teacher 1 everywhere, student −1 inside the patch and 1 outside -> map 2 / 0
    teacher = [torch.ones(1, 1, 4, 4)]
    student = [torch.where(mask[:, None], -1.0, 1.0)]
    assert patch_separation(teacher, student, mask).tolist() == [[2.0]]


def test_separation_objective_standardises_per_scale_and_rewards_the_better_scale():
    separation = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # each image separates best at another scale
    alpha = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
    # standardised per scale: column means 0.5, std 0.7071 -> ŝ = ±0.7071
    s = 0.5 / math.sqrt(0.5)
    expected = -((0.7 * s - 0.3 * s) + (-0.4 * s + 0.6 * s)) / 2
    assert separation_objective(alpha, separation, 0.0).item() == pytest.approx(expected)
    with_entropy = separation_objective(alpha, separation, 0.5).item()
    assert with_entropy == pytest.approx(expected - 0.5 * alpha_entropy(alpha).item())


# ---------------------------------------------------------------------------------- scoring options
def test_top_k_score_is_the_mean_of_the_highest_values():
    maps = torch.arange(100.0).view(1, 10, 10)
    assert image_score(maps, "top_k", 5.0).item() == pytest.approx((95 + 96 + 97 + 98 + 99) / 5)
    assert image_score(maps, "top_k", 0.1).item() == 99.0  # at least one value
    assert image_score(maps, "top_k", 100.0).item() == pytest.approx(49.5)


def test_standardize_scales_by_hand():
    stack = torch.tensor([[[[1.0]], [[10.0]]]])
    out = standardize_scales(stack, mean=[0.0, 6.0], std=[2.0, 4.0])
    assert out.flatten().tolist() == [0.5, 1.0]


def test_feature_pooling_compares_neighbourhood_means():
    u = torch.tensor([[[[1.0, -1.0, 1.0]]]]).repeat(1, 1, 3, 1)  # one channel, alternating sign by column
    v = torch.ones(1, 1, 3, 3)
    plain = scale_maps([u], [v])[0]
    pooled = scale_maps([u], [v], feature_pool=3)[0]
    assert plain[0, 1].tolist() == [0.0, 2.0, 0.0]
    # centre column: 3x3 mean of u is (1 − 1 + 1)/3 > 0 and of v 1 -> cos 1 -> 0
    assert pooled[0, 1, 1].item() == pytest.approx(0.0, abs=1e-6)


def test_fixed_scale_weights_drop_or_scale_a_scale_map():
    model = SCRD("mobilenet_v2").eval()
    stack = torch.tensor([1.0, 10.0, 100.0]).view(1, 3, 1, 1).expand(2, 3, 4, 4).clone()
    alpha = torch.tensor([[0.5, 0.25, 0.25]]).expand(2, 3)
    deep = tiny_config(scoring__sigma=0.0, scoring__scale_weights=[0.0, 1.0, 2.0])
    deep = Detector.from_network(model, deep, torch.device("cpu"))
    assert deep.head.fuse_scales(stack, alpha)[0][0, 0, 0].item() == pytest.approx(10 + 200)  # 0·1 + 1·10 + 2·100
    both = tiny_config(scoring__sigma=0.0, scoring__scale_weights=[0.0, 1.0, 2.0], scoring__alpha_weighting="weighted")
    combined = Detector.from_network(model, both, torch.device("cpu")).head.fuse_scales(stack, alpha)[0]
    assert combined[0, 0, 0].item() == pytest.approx(0.25 * 10 + 0.25 * 2 * 100)  # α times the fixed weight
    with pytest.raises(ConfigError, match="scale_weights"):
        tiny_config(scoring__scale_weights=[0.0, 0.0, 0.0])


def test_a_scoring_variant_scores_as_a_detector_configured_with_it():
    """The experiment runner's extra scorings share one network pass; each must give exactly the score
    of a model whose config has those options."""
    torch.manual_seed(0)
    model = SCRD("mobilenet_v2").eval()
    images = torch.rand(3, 3, 64, 64)
    variants = {
        "pool3_top5": {"score": "top_k", "top_k_percent": 5.0, "feature_pool": 3},
        "max": {"score": "max"},
        "pool3_mean": {"score": "mean", "feature_pool": 3},
    }
    detector = Detector.from_network(model, tiny_config(), torch.device("cpu"), precision="fp32")
    heads = {name: detector.head.with_options(**options) for name, options in variants.items()}
    scored = detector.score_heads(images, heads)
    for name, options in variants.items():
        own = tiny_config(**{f"scoring__{k}": v for k, v in options.items()})
        expected = Detector.from_network(model, own, torch.device("cpu"), precision="fp32").score(images).scores
        torch.testing.assert_close(scored[name].scores.double(), expected, rtol=0, atol=0)
    assert not torch.equal(scored["pool3_mean"].scores, detector.score(images).by_reduction["mean"].float())


def test_the_released_codes_alpha_inside_the_cosine_with_a_saturated_alpha():
    """Golden-style: the released code's expression F.cosine_similarity(α·u, α·v, eps=1e-8) per pixel.
    With α = (1e-22, 1e-11, 1) the first two scales read 1 everywhere (the norm floor), so their
    map is not the unweighted one that a cancelling α would give."""
    torch.manual_seed(0)
    config = tiny_config(scoring__alpha_weighting="inside_cosine", scoring__sigma=0.0)
    model = SCRD("mobilenet_v2").eval()
    with torch.no_grad():  # saturate the head: logits (−50, −25, 0) -> α ≈ (2e-22, 1.4e-11, 1)
        model.scale_head.linear.weight.zero_()
        model.scale_head.linear.bias.copy_(torch.tensor([-50.0, -25.0, 0.0]))
    detector = Detector.from_network(model, config, torch.device("cpu"), precision="fp32")
    images = torch.rand(2, 3, 64, 64)
    features = detector.features(images)
    stack, alpha = detector.head.scale_stack(*features), features.alpha
    assert alpha[0, 0] < 1e-20 and alpha[0, 1] < 1e-10
    x = (images - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        out = model(x)
    for k in range(3):
        a = alpha[:, k].view(-1, 1, 1, 1)
        released = 1 - F.cosine_similarity(out.teacher[k] * a, out.student[k] * a, dim=1, eps=1e-8)
        up = F.interpolate(released[:, None], size=(64, 64), mode="bilinear", align_corners=True)[:, 0]
        torch.testing.assert_close(stack[:, k], up, atol=1e-6, rtol=0)
    assert torch.allclose(stack[:, 0], torch.ones_like(stack[:, 0]), atol=1e-6)  # saturated: 1 everywhere
    unweighted = tiny_config(scoring__sigma=0.0, scoring__alpha_weighting="none")
    unweighted = Detector.from_network(model, unweighted, torch.device("cpu"), precision="fp32")
    plain = unweighted.head.scale_stack(*unweighted.features(images))
    assert (plain[:, 0] - 1).abs().max() > 0.05  # a cancelling α would have kept this scale's own map
    torch.testing.assert_close(plain[:, 2], stack[:, 2], atol=1e-6, rtol=0)  # α_3 ≈ 1 changes nothing


# ---------------------------------------------------------------------------------- validation anomalies
def test_validation_set_pairs_each_normal_with_an_altered_copy():
    normals = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    images, labels = validation_set(normals, seed=3)
    assert images.shape == (8, 3, 64, 64) and labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert torch.equal(images[:4], normals)
    changed = (images[4:] != normals).flatten(1).float().mean(1)
    assert (changed > 0.005).all()  # every copy is altered somewhere ...
    assert (changed < 0.5).all()  # ... but not everywhere
    again, _ = validation_set(normals, seed=3)
    assert torch.equal(again, images)  # the same set at every evaluation


def test_validation_set_needs_two_images():
    with pytest.raises(ValueError, match="at least 2"):
        validation_set(torch.zeros(1, 3, 8, 8), seed=0)


def test_label_free_criterion_per_scoring_is_each_scorings_own_criterion():
    """The runner's label-free choice of a scoring compares, per option, exactly the AUROC that
    label-free selection would compute for a model configured with that option."""
    from sklearn.metrics import roc_auc_score

    from scrd.training.selection import label_free_auroc, label_free_aurocs

    torch.manual_seed(0)
    model = SCRD("mobilenet_v2").eval()
    images, labels = validation_set(torch.rand(6, 3, 64, 64), seed=0)
    variants = {"max": {"score": "max"}, "pool3_top5": {"score": "top_k", "top_k_percent": 5.0, "feature_pool": 3}}
    detector = Detector.from_network(model, tiny_config(), torch.device("cpu"), precision="fp32")
    heads = {name: detector.head.with_options(**options) for name, options in variants.items()}
    by_scoring = label_free_aurocs(detector, images, labels, heads)
    assert set(by_scoring) == set(variants)
    for name, options in variants.items():
        own = Detector.from_network(
            model,
            tiny_config(**{f"scoring__{k}": v for k, v in options.items()}),
            torch.device("cpu"),
            precision="fp32",
        )
        assert by_scoring[name] == label_free_auroc(own, images, labels)
        assert by_scoring[name] == roc_auc_score(labels, own.score(images).scores.numpy())


def test_label_free_selection_keeps_the_best_checkpoint(phantom_data, tmp_path):
    from scrd.filenames import MODEL_META, SELECTION_LOG
    from scrd.storage import read_json
    from scrd.training.train import train

    config = tiny_config(
        train__holdout_fraction=0.25, train__select_every=2, train__iterations=6, train__selection="label_free"
    )
    train(config, phantom_data, tmp_path / "run", progress=False)
    with open(tmp_path / "run" / SELECTION_LOG) as f:
        rows = [line.strip().split(",") for line in f][1:]
    values = {int(i): float(v) for i, v in rows}
    best = max(values, key=lambda i: (values[i], -i))
    meta = read_json(tmp_path / "run" / MODEL_META)
    assert sorted(values) == [2, 4, 6]
    assert f"at iteration {best}; no real labels used" in meta["selection"]
    assert np.isclose(float(meta["selection"].split("AUROC ")[1].split(" ")[0]), values[best], atol=1e-4)


def test_a_noisy_student_input_reconstructs_the_clean_features_from_the_noisy_ones():
    from scrd.losses.distillation import flat_cosine_distance
    from scrd.losses.step import scrd_loss

    torch.manual_seed(0)
    model = SCRD("mobilenet_v2").eval()
    clean, noisy = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    config = LossConfig(form="ratio_of_sums", alpha_placement="none", student_input="noisy")
    terms, out = scrd_loss(model, clean, noisy, config, noisy_branch="encoder_only")
    with torch.no_grad():
        u, z = model.encode(clean), model.encode(noisy)
        v = model.reconstruct(z)[1]
    for k in range(3):
        torch.testing.assert_close(out.student[k], v[k])
        torch.testing.assert_close(terms.d_uv[:, k], flat_cosine_distance(u[k], v[k]))  # pulled to the clean u
        torch.testing.assert_close(terms.d_zv[:, k], flat_cosine_distance(z[k], v[k]))  # pushed from z


def test_the_rd4ad_loss_with_a_noisy_student_is_a_denoising_distillation(phantom_data, tmp_path):
    from scrd.config import uses_synthetic_anomalies
    from scrd.losses.distillation import flat_cosine_distance
    from scrd.losses.step import scrd_loss
    from scrd.training.train import train

    config = LossConfig(form="rd4ad", alpha_placement="none", student_input="noisy")
    assert uses_synthetic_anomalies(config) and not uses_synthetic_anomalies(
        LossConfig(form="rd4ad", student_input="clean")
    )
    torch.manual_seed(0)
    model = SCRD("mobilenet_v2").eval()
    clean, noisy = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    terms, _ = scrd_loss(model, clean, noisy, config, noisy_branch="encoder_only")
    with torch.no_grad():
        u, v = model.encode(clean), model.reconstruct(model.encode(noisy))[1]
    expected = sum(flat_cosine_distance(a, b).mean() for a, b in zip(u, v))
    assert terms.d_zv is None and terms.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # and a run trains with it: the noise is made although the rd4ad form needs none
    run = tmp_path / "denoise"
    train(tiny_config("rd4ad", loss__student_input="noisy", train__iterations=2), phantom_data, run, progress=False)
    assert (run / "model.pt").is_file()
