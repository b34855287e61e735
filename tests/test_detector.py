"""The trained detector: presets trained end to end, its map and score paths against an
independent computation, the same score from evaluate and predict, decisions at the threshold."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config
from scipy.ndimage import gaussian_filter

from scrd.detector import Detector
from scrd.evaluation.evaluate import evaluate
from scrd.filenames import MODEL_META, PREDICTIONS_FILE, SCORES_FILE, TRAIN_LOG
from scrd.inference.predict import predict
from scrd.model import SCRD, parameter_counts
from scrd.runs.runtime import Runtime
from scrd.training.train import train


@pytest.mark.parametrize("name, form", [("paper", "per_scale_ratio"), ("rd4ad", "rd4ad")])
def test_presets_train_end_to_end(phantom_data, tmp_path, name, form):
    run = tmp_path / name
    train(tiny_config(name, train__iterations=4), phantom_data, run, progress=False)
    meta = json.loads((run / MODEL_META).read_text())
    assert meta["iterations"] == 4 and meta["config"]["loss"]["form"] == form
    with open(run / TRAIN_LOG) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [2, 4]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    if name == "rd4ad":  # no synthetic anomalies, so no student-to-noisy-teacher distance
        assert all(r["d_zv_1"] == "nan" for r in rows)
    detector = Detector.load(run, "cpu")
    scored = detector.score(torch.rand(3, 3, 64, 64))
    assert scored.scores.shape == (3,) and torch.isfinite(scored.scores).all()


def _oracle_map(detector: Detector, images01: torch.Tensor, weighted: bool) -> np.ndarray:
    """Σ_k [α_k] up(1 − cos(u_k, v_k)) smoothed with scipy, from the raw features (no scrd map code)."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        out = detector.network((images01 - mean) / std)
    total = 0.0
    for k, (u, v) in enumerate(zip(out.teacher, out.student)):
        cos = (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1)).clamp_min(1e-8)
        up = F.interpolate((1 - cos)[:, None].double(), size=images01.shape[-2:], mode="bilinear", align_corners=True)[
            :, 0
        ]
        total = total + (out.alpha[:, k, None, None].double() if weighted else 1.0) * up
    return np.stack([gaussian_filter(m, sigma=4.0) for m in total.numpy()])


@pytest.mark.parametrize("weighting, score", [("none", "mean"), ("weighted", "mean"), ("weighted", "max")])
def test_detector_maps_and_scores_match_an_independent_computation(weighting, score):
    torch.manual_seed(0)
    config = tiny_config("paper", scoring__alpha_weighting=weighting, scoring__score=score)
    detector = Detector.from_network(SCRD("mobilenet_v2").eval(), config, torch.device("cpu"), precision="fp32")
    torch.nn.init.normal_(detector.network.scale_head.linear.weight, std=0.5)  # α far from uniform
    images = torch.rand(2, 3, 64, 64)
    scored = detector.score(images)
    expected = _oracle_map(detector, images, weighted=weighting == "weighted")
    np.testing.assert_allclose(scored.maps.numpy(), expected, atol=2e-5)
    reduce = np.max if score == "max" else np.mean
    np.testing.assert_allclose(scored.scores.numpy(), reduce(expected, axis=(1, 2)), atol=2e-5)
    if weighting == "weighted":  # the weighting really changes the map
        assert not np.allclose(expected, _oracle_map(detector, images, weighted=False), atol=1e-3)


def test_bf16_inference_stays_close_to_fp32():
    torch.manual_seed(0)
    model, images = SCRD("mobilenet_v2").eval(), torch.rand(4, 3, 64, 64)
    fp32 = Detector.from_network(model, tiny_config(), torch.device("cpu"), precision="fp32").score(images)
    bf16 = Detector.from_network(model, tiny_config(), torch.device("cpu"), precision="bf16").score(images)
    assert bf16.maps.dtype == torch.float32  # maps are computed in float32 from bf16 features
    assert not torch.equal(bf16.maps, fp32.maps)  # it really ran in bf16
    torch.testing.assert_close(bf16.scores, fp32.scores, rtol=2e-2, atol=0)


def test_evaluate_and_predict_agree_and_decide_at_the_threshold(tiny_run, phantom_data, tmp_path):
    evaluate(tiny_run, phantom_data, tmp_path / "eval")
    predict(tiny_run, [str(phantom_data / "images")], tmp_path / "pred", Runtime(batch_size=5), heatmaps=False)
    with open(tmp_path / "eval" / SCORES_FILE) as f:
        evaluated = {r["path"]: float(r["score"]) for r in csv.DictReader(f)}
    with open(tmp_path / "pred" / PREDICTIONS_FILE) as f:
        predicted = {r["path"]: r for r in csv.DictReader(f)}
    assert len(evaluated) == 12 and len(predicted) == 28
    for path, score in evaluated.items():
        assert float(predicted[str(phantom_data.resolve() / "images" / path.rsplit("/", 1)[-1])]["score"]) == score
    threshold = json.loads((tiny_run / MODEL_META).read_text())["calibration"]["threshold"]
    decisions = {r["decision"] for r in predicted.values()}
    assert decisions == {"normal", "abnormal"}, "the tiny run's threshold should split these images"
    for row in predicted.values():
        assert row["decision"] == ("abnormal" if float(row["score"]) >= threshold else "normal")


def test_wide_resnet50_2_parameter_counts_are_pinned():
    counts = parameter_counts(SCRD("wide_resnet50_2"))
    assert counts["trainable (OCBE used + decoder + scale head)"] == 83_808_771
    assert (counts["OCBE bottleneck (used)"], counts["student decoder"], counts["scale head"]) == (
        58_885_120,
        24_917_504,
        6_147,
    )
    assert counts["teacher (layers used)"] == 24_862_528 and counts["total stored"] == 161_084_715
