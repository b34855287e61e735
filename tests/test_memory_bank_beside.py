"""model.memory_bank: the knn reference's bank of teacher patches fitted beside a trained student, its
map added to the student's, each in units of its image score's spread over normal images. Hand-computed
sums, the detector's maps against an independent computation (brute-force nearest neighbours), the
statistics training stores and evaluation measures, saving and loading, and the clear refusals."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config

from scrd.detector import Detector
from scrd.errors import CheckpointError, ConfigError
from scrd.filenames import MODEL_FILE, MODEL_META
from scrd.scoring.bank_fusion import add_bank_map
from scrd.scoring.maps import gaussian_smooth, image_score
from scrd.storage import load_tensors, save_tensors
from scrd.training.train import train


def test_add_bank_map_by_hand():
    student = torch.full((1, 2, 2), 5.0)
    bank = torch.tensor([[[1.0, 3.0], [3.0, 7.0]]])
    # student (5 − 1) / 2 = 2 everywhere; bank (b − 3) / 2 = (−1, 0, 0, 2); weight 0.5
    combined = add_bank_map(student, bank, mean=[1.0, 3.0], std=[2.0, 2.0], weight=0.5)
    torch.testing.assert_close(combined, torch.tensor([[[1.5, 2.0], [2.0, 3.0]]]))


def test_the_head_keeps_the_bank_and_its_statistics_in_the_state_dict(bank_run):
    """The scoring state travels in model.pt: the bank and the (student, bank) statistics are buffers."""
    state = load_tensors(bank_run / MODEL_FILE)["scoring"]
    assert {"bank", "pair_mean", "pair_std", "score_mean", "score_std"} <= set(state)
    assert not torch.isnan(state["pair_mean"]).any() and (state["pair_std"] > 0).all()


def test_config_refuses_a_bank_beside_no_student_and_negative_weights():
    with pytest.raises(ConfigError, match="model.memory_bank .*model.method 'scrd'"):
        tiny_config("knn", model__memory_bank=True)
    with pytest.raises(ConfigError, match="scoring.memory_bank_weight must be >= 0"):
        tiny_config("denoising_knn", scoring__memory_bank_weight=-1.0)


@pytest.fixture(scope="module")
def bank_run(phantom_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("bank") / "run"
    train(
        tiny_config("denoising_knn", train__iterations=4, train__holdout_fraction=0.25),
        phantom_data,
        run,
        progress=False,
    )
    return run


def test_training_fits_the_bank_and_stores_both_maps_statistics(bank_run):
    meta = json.loads((bank_run / MODEL_META).read_text())
    detector = Detector.load(bank_run, "cpu")
    knn = detector.config.knn
    assert detector.has_memory_bank
    # 12 training images (16 less 4 held out) x 8 x 8 positions of scale 2 at 64 px, knn.fraction kept
    assert detector.head.bank.shape[0] == round(12 * 8 * 8 * knn.fraction)
    assert meta["memory_bank_shape"] == list(detector.head.bank.shape)
    stored = meta["scoring_statistics"]
    assert stored["count"] == meta["data"]["n_holdout"] == 4  # measured on the held-out normals
    assert stored["images"] == "held-out normal training images"
    assert len(stored["pair_mean"]) == 2 and all(s > 0 for s in stored["pair_std"])
    assert meta["train_seconds"] >= meta["memory_bank_seconds"] >= 0  # recorded; the bank counts as training time


def test_the_map_is_the_standardised_sum_of_the_student_and_the_bank(bank_run):
    detector = Detector.load(bank_run, "cpu", precision="fp32")
    scoring = detector.config.scoring
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    scored = detector.score(images)
    # independently: the student's own map (weight 0), and the bank's brute-force nearest distances
    student_head = detector.head.with_options(memory_bank_weight=0.0).copy_statistics_from(detector.head)
    student_maps = detector.score_heads(images, {"s": student_head})["s"].maps.double()
    from scrd.data.transforms import normalize

    features = detector.network.teacher(normalize(images))
    picked = [F.avg_pool2d(features[k - 1].float(), 3, stride=1, padding=1) for k in detector.config.knn.scales]
    picked = [F.interpolate(f, size=picked[0].shape[-2:], mode="bilinear", align_corners=False) for f in picked]
    vectors = torch.cat(picked, 1).permute(0, 2, 3, 1)
    nearest = torch.cdist(vectors.reshape(-1, vectors.shape[-1]), detector.head.bank).amin(1)
    bank = F.interpolate(nearest.view(3, 1, 8, 8), size=(64, 64), mode="bilinear", align_corners=False)
    bank_maps = gaussian_smooth(bank, scoring.sigma)[:, 0].double()
    mean, std = detector.head.pair_mean.tolist(), detector.head.pair_std.tolist()
    expected = (student_maps - mean[0]) / std[0] + (bank_maps - mean[1]) / std[1]
    torch.testing.assert_close(scored.maps.double(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(scored.scores, image_score(expected, "top_k", 5.0), rtol=1e-4, atol=1e-4)


def test_the_stored_statistics_are_those_of_the_held_out_normals(bank_run):
    from scrd.evaluation.normal_reference import normal_batches, reference_samples

    detector = Detector.load(bank_run, "cpu")
    head = detector.head
    student_head = head.with_options(memory_bank_weight=0.0).copy_statistics_from(head)
    student_scores, bank_scores = [], []
    for images in normal_batches(detector, reference_samples(bank_run)):
        student_scores.append(detector.score_heads(images, {"s": student_head})["s"].scores.double())
        bank_map = head.bank_map(detector.features(images).teacher)
        bank_scores.append(image_score(bank_map, "top_k", 5.0).double())
    for values, mean, std in zip((student_scores, bank_scores), head.pair_mean.tolist(), head.pair_std.tolist()):
        values = torch.cat(values)
        assert values.mean().item() == pytest.approx(mean, rel=1e-4)
        assert values.std(unbiased=False).item() == pytest.approx(std, rel=1e-3)


def test_scoring_variants_score_the_student_alone_and_other_scorings_of_the_bank(bank_run, phantom_data):
    from scrd.data.layouts import load_samples
    from scrd.lab.scoring_variants import score_variants, variant_heads

    detector = Detector.load(bank_run, "cpu")
    variants = {"student_alone": {"memory_bank_weight": 0.0}, "softmax_t4": {"fusion_temperature": 4.0}}
    heads = variant_heads(detector, bank_run, variants)
    _, labels, scores, weights = score_variants(detector, load_samples(str(phantom_data), "test"), heads)
    assert set(scores) == set(variants) and len(labels) == 12
    assert not torch.isnan(heads["softmax_t4"].pair_mean).any()  # its own statistics, measured
    assert torch.isnan(heads["student_alone"].pair_mean).all()  # it reads none
    assert set(weights) == set(variants)  # both fuse the scales per image (normal_softmax)


def test_a_model_file_without_its_bank_is_refused(bank_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(bank_run, run)
    state = load_tensors(run / MODEL_FILE)
    del state["scoring"]["bank"]
    save_tensors(run / MODEL_FILE, state)
    with pytest.raises(CheckpointError, match="has a memory bank, but the file holds none"):
        Detector.load(run, "cpu")


def test_missing_statistics_are_a_clear_error_and_the_model_exports_with_its_bank(bank_run, tmp_path):
    detector = Detector.load(bank_run, "cpu")
    detector.head.pair_mean.fill_(float("nan"))
    with pytest.raises(CheckpointError, match="needs normal-image statistics \\(pair\\)"):
        detector.score(torch.rand(1, 3, 64, 64))
    pytest.importorskip("onnxruntime")
    from scrd.deploy.onnx_export import export_onnx

    result = export_onnx(bank_run, tmp_path / "model.onnx")  # the bank is inside the graph
    assert result.max_score_rel_diff <= 1e-4 and result.onnx.stat().st_size > detector.head.bank.numel() * 4


def test_predict_scores_files_with_the_bank(bank_run, phantom_data, tmp_path):
    import csv

    from scrd.cli import main

    images = sorted((phantom_data / "images").glob("*.png"))[:5]
    out = tmp_path / "pred"
    assert main(["predict", *map(str, images), "--model", str(bank_run), "--out", str(out), "--no-heatmaps"]) == 0
    with open(out / "predictions.csv") as f:
        predicted = {r["path"]: float(r["score"]) for r in csv.DictReader(f)}
    detector = Detector.load(bank_run, "cpu")
    expected = detector.score(torch.stack([detector.load_image(p) for p in images])).scores
    alone_head = detector.head.with_options(memory_bank_weight=0.0).copy_statistics_from(detector.head)
    batch = torch.stack([detector.load_image(p) for p in images])
    alone = detector.score_heads(batch, {"a": alone_head})["a"].scores.double()
    assert [predicted[str(p)] for p in images] == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-5)
    assert not torch.allclose(expected, alone)  # the bank's map is part of what predict scores


def test_the_command_line_exports_the_default_and_scores_it_with_onnxruntime(bank_run, phantom_data, tmp_path):
    """`scrd export` of a default-preset model (its 1 % coreset bank inside the graph), then `scrd predict
    --backend onnxruntime`: the decisions torch makes, scores within the parity tolerance."""
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'scrd[onnx]')")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install 'scrd[onnx]')")
    import csv

    from scrd.cli import main

    assert Detector.load(bank_run, "cpu").config.knn.sampling == "coreset"  # the default's bank
    onnx = tmp_path / "default.onnx"
    assert main(["export", str(bank_run), "--format", "onnx", "--out", str(onnx)]) == 0
    images = [str(p) for p in sorted((phantom_data / "images").glob("*.png"))[:6]]
    rows = {}
    for name, model, extra in (
        ("torch", bank_run, ["--precision", "fp32"]),
        ("ort", onnx, ["--backend", "onnxruntime"]),
    ):
        out = tmp_path / name
        assert main(["predict", *images, "--model", str(model), "--out", str(out), "--no-heatmaps", *extra]) == 0
        with open(out / "predictions.csv") as f:
            rows[name] = {r["path"]: (float(r["score"]), r["decision"]) for r in csv.DictReader(f)}
    assert rows["ort"].keys() == rows["torch"].keys() == set(images)
    for path in images:
        (torch_score, torch_decision), (ort_score, ort_decision) = rows["torch"][path], rows["ort"][path]
        assert ort_decision == torch_decision and ort_score == pytest.approx(torch_score, rel=1e-4, abs=1e-4)
