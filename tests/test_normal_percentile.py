"""A score's percentile among the run's held-out normal images: the function against hand-computed
values, the scores training stores, and where a reader sees the percentile (predictions.csv, report)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from helpers import tiny_config

from scrd.cli import main
from scrd.detector import Detector
from scrd.runs.normal_scores import (
    normal_percentile,
    percentile_or_none,
    percentile_text,
    stored_normal_scores,
)
from scrd.runs.sample_lists import read_sample_list


@pytest.mark.parametrize(
    "score, expected",
    [
        (0.5, 0.0),  # below every normal score
        (1.0, 12.5),  # ties with the lowest: (0 below + 1/2 of 1 tie) / 4
        (1.5, 25.0),  # 1 of 4 below
        (2.0, 50.0),  # 1 below + 1/2 of 2 ties = 2 of 4
        (2.5, 75.0),
        (3.0, 87.5),  # 3 below + 1/2 of 1 tie = 3.5 of 4
        (7.0, 100.0),
    ],
)
def test_percentile_counts_below_plus_half_the_ties(score, expected):
    assert normal_percentile([1.0, 2.0, 2.0, 3.0], score) == expected


def test_percentile_edge_cases():
    assert normal_percentile([5.0], 5.0) == 50.0
    assert normal_percentile([1.0, 1.0, 1.0], 1.0) == 50.0
    assert normal_percentile(list(range(1000)), 997.5) == pytest.approx(99.8)
    with pytest.raises(ValueError, match="no normal scores"):
        normal_percentile([], 1.0)
    with pytest.raises(ValueError, match="NaN"):
        normal_percentile([1.0], math.nan)
    assert percentile_or_none(None, 1.0) is None and percentile_or_none([1.0], math.nan) is None
    assert percentile_text(None) == "" and percentile_text(99.75) == "99.75"
    assert stored_normal_scores({}) is None
    assert stored_normal_scores({"normal_scores": {"scores": [3, 1, 2]}}) == [1.0, 2.0, 3.0]


def test_training_stores_the_held_out_normal_scores(tiny_run):
    meta = json.loads((tiny_run / "model.json").read_text())
    stored = meta["normal_scores"]
    assert stored["images"] == "held-out normal training images" and stored["count"] == 4
    assert stored["scores"] == sorted(stored["scores"])
    held_out = read_sample_list(tiny_run / "holdout_samples.csv")
    detector = Detector.load(tiny_run, "cpu")
    scores = sorted(detector.score(torch.stack([detector.load_image(s.path) for s in held_out])).scores.tolist())
    assert scores == pytest.approx(stored["scores"], rel=1e-5)


def test_predict_writes_the_percentile_and_the_report_a_line(tiny_run, phantom_data, tmp_path):
    out = tmp_path / "pred"
    assert main(["predict", str(phantom_data / "images"), "--model", str(tiny_run), "--out", str(out)]) == 0
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    normals = stored_normal_scores(json.loads((tiny_run / "model.json").read_text()))
    assert rows and all(r["normal_percentile"] == f"{normal_percentile(normals, float(r['score'])):.2f}" for r in rows)
    assert all(r["dicom"] == "" for r in rows)

    page = tmp_path / "report.html"
    evaluation = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(phantom_data), "--out", str(evaluation)]) == 0
    assert main(["report", str(tiny_run), "--eval", str(evaluation), "--out", str(page)]) == 0
    assert "th percentile of the 4 held-out normal scores stored with the model" in page.read_text()


def test_a_run_without_held_out_images_gives_no_percentile(phantom_data, tmp_path):
    from scrd.training.train import train

    run = tmp_path / "run"
    train(tiny_config(train__holdout_fraction=0.0, train__iterations=2), phantom_data, run, progress=False)
    assert "normal_scores" not in json.loads((run / "model.json").read_text())
    out = tmp_path / "pred"
    assert (
        main(
            ["predict", str(phantom_data / "images" / "test_normal_0000.png"), "--model", str(run)]
            + [
                "--out",
                str(out),
                "--no-heatmaps",
            ]
        )
        == 0
    )
    with open(out / "predictions.csv", newline="") as f:
        assert [r["normal_percentile"] for r in csv.DictReader(f)] == [""]


def test_an_output_folder_of_older_columns_is_refused(tiny_run, phantom_data, tmp_path, capsys):
    out = tmp_path / "pred"
    image = str(phantom_data / "images" / "test_normal_0000.png")
    assert main(["predict", image, "--model", str(tiny_run), "--out", str(out), "--no-heatmaps"]) == 0
    info = json.loads((out / "predict_info.json").read_text())
    del info["columns"]  # as an older scrd wrote it: path, score, decision, heatmap, panel
    (out / "predict_info.json").write_text(json.dumps(info))
    assert main(["predict", image, "--model", str(tiny_run), "--out", str(out), "--no-heatmaps"]) == 2
    assert "with other columns; pass --fresh" in capsys.readouterr().err
