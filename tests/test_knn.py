"""The memory-bank reference detector: exact nearest distances, a coreset that covers, and the
method usable from the same train / evaluate / predict jobs as SCRD."""

from __future__ import annotations

import json

import torch
from helpers import tiny_config

from scrd.cli import main
from scrd.data.dataset import ImageDataset
from scrd.data.layouts import load_samples
from scrd.detector import Detector
from scrd.filenames import METRICS_FILE, MODEL_META, PREDICTIONS_FILE
from scrd.scoring.bank import greedy_coreset, nearest_distance
from scrd.training.train import train


def test_nearest_distance_equals_brute_force():
    g = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(300, 16, generator=g), torch.randn(500, 16, generator=g)
    expected = torch.cdist(queries.double(), bank.double()).min(1).values
    torch.testing.assert_close(nearest_distance(queries, bank, chunk=64).double(), expected, atol=1e-4, rtol=0)


def test_greedy_coreset_takes_the_outlier():
    points = torch.tensor([[0.0], [0.1], [0.2], [10.0]])
    for seed in range(5):
        chosen = set(greedy_coreset(points, 2, torch.Generator().manual_seed(seed)).tolist())
        assert 3 in chosen and len(chosen & {0, 1, 2}) == 1, chosen


def test_knn_is_trained_evaluated_and_predicts_like_scrd(phantom_data, tmp_path, capsys):
    run = tmp_path / "knn"
    config = tiny_config("knn", knn__fraction=1.0)
    result = train(config, phantom_data, run, progress=False)
    assert result.iterations == 0
    meta = json.loads((run / MODEL_META).read_text())
    assert meta["method"] == "knn" and meta["memory_bank_shape"][0] == 16 * 8 * 8  # every 8x8 patch of 16 images
    detector = Detector.load(run, "cpu", precision="fp32")
    train_set = ImageDataset(load_samples(phantom_data, "train"), 64)
    own = detector.head.unsmoothed_bank_map(detector.features(train_set[0]["image"][None]).teacher)
    assert own.abs().max() < 1e-2  # a training image's patches are all in the bank
    assert main(["evaluate", "--model", str(run), "--data", str(phantom_data), "--out", str(tmp_path / "e")]) == 0
    metrics = json.loads((tmp_path / "e" / METRICS_FILE).read_text())
    assert metrics["score"] == "max" and metrics["alpha"] is None and metrics["n_images"] == 12
    assert main(["predict", str(phantom_data / "images"), "--model", str(run), "--out", str(tmp_path / "p")]) == 0
    assert len((tmp_path / "p" / PREDICTIONS_FILE).read_text().splitlines()) == 29
