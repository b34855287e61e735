"""The command line end to end on a tiny generated dataset: train -> calibrate -> evaluate -> predict,
and a training process killed with SIGKILL that resumes to exactly the uninterrupted weights."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import TINY_FLAGS as FAST
from sklearn.metrics import roc_auc_score

from scrd.cli import main


@pytest.fixture
def dataset(phantom_data) -> Path:
    return phantom_data


@pytest.fixture(scope="module")
def trained(phantom_data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(phantom_data),
                "--out",
                str(run),
                "--iterations",
                "6",
                "--set",
                "train.checkpoint_every=4",
                "--set",
                "train.holdout_fraction=0.25",
                "--calibration",
                *FAST,
            ]
        )
        == 0
    )
    return run


def test_training_writes_the_run_directory(trained):
    for name in (
        "config.yaml",
        "environment.json",
        "train_log.csv",
        "model.pt",
        "model.json",
        "checkpoints/last.pt",
        "checkpoints/last.json",
    ):
        assert (trained / name).is_file(), name
    meta = json.loads((trained / "model.json").read_text())
    assert meta["arch"] == "mobilenet_v2" and meta["iterations"] == 6
    assert meta["calibration"]["target_specificity"] == 0.95
    assert "never selected on test labels" in meta["selection"]
    with open(trained / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [6]  # log_every 10, plus the last iteration
    alpha = [float(rows[-1][f"alpha_{k}"]) for k in (1, 2, 3)]
    assert abs(sum(alpha) - 1) < 1e-3  # softmax weights, averaged over the batch
    assert float(rows[-1]["alpha_max"]) >= max(alpha) - 1e-4  # the mean of the largest is at least the largest mean


def test_evaluate_writes_metrics_scores_and_figures(trained, dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(trained), "--data", str(dataset), "--out", str(out)]) == 0
    assert "ORACLE threshold" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_normal"] == 6 and metrics["n_abnormal"] == 6
    assert "oracle" in metrics["oracle_threshold"]["note"]
    assert metrics["calibrated_threshold"]["n_images"] == 4  # the checkpoint carries the held-out calibration
    with open(out / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    assert metrics["auroc"] == roc_auc_score([int(r["label"]) for r in rows], [float(r["score"]) for r in rows])
    for png in ("roc.png", "histogram.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_writes_scores_decisions_and_heatmaps(trained, dataset, tmp_path):
    out = tmp_path / "pred"
    assert (
        main(["predict", str(dataset / "images"), "--model", str(trained), "--out", str(out), "--batch-size", "5"]) == 0
    )
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    threshold = json.loads((trained / "model.json").read_text())["calibration"]["threshold"]
    assert len(rows) == 28
    assert [r["decision"] for r in rows] == ["abnormal" if float(r["score"]) >= threshold else "normal" for r in rows]
    assert len(list((out / "heatmaps").glob("*.png"))) == 28


def test_predict_resumes_without_duplicates_after_a_torn_write(trained, dataset, tmp_path):
    out = tmp_path / "pred"
    images = sorted((dataset / "images").glob("*.png"))
    assert main(["predict", *map(str, images[:7]), "--model", str(trained), "--out", str(out), "--no-heatmaps"]) == 0
    with open(out / "predictions.csv", "a") as f:
        f.write(f"{images[7]},0.12")  # a kill in the middle of a row
    assert main(["predict", str(dataset / "images"), "--model", str(trained), "--out", str(out), "--no-heatmaps"]) == 0
    with open(out / "predictions.csv") as f:
        paths = [r["path"] for r in csv.DictReader(f)]
    assert sorted(paths) == sorted(map(str, images)) and len(paths) == len(set(paths))


def _train_cmd(data: Path, run: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scrd.cli",
        "train",
        "--data",
        str(data),
        "--out",
        str(run),
        "--iterations",
        "40",
        "--deterministic",
        "--set",
        "train.checkpoint_every=5",
        *FAST,
        *extra,
    ]


def test_training_killed_with_sigkill_resumes_to_identical_weights(dataset, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run(_train_cmd(dataset, reference), check=True, env=env, capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(dataset, run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = run / "checkpoints" / "last.json"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (run / "model.pt").exists()
    killed_at = json.loads(marker.read_text())["iteration"]
    assert 0 < killed_at < 40

    resume = [
        sys.executable,
        "-m",
        "scrd.cli",
        "train",
        "--data",
        str(dataset),
        "--out",
        str(run),
        "--resume",
        "--no-progress",
    ]
    subprocess.run(resume, check=True, env=env, capture_output=True)
    expected = torch.load(reference / "model.pt", weights_only=True)["state_dict"]
    actual = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    with open(run / "train_log.csv") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == [10, 20, 30, 40]


def test_a_second_train_into_a_used_directory_is_refused(trained, dataset, capsys):
    assert main(["train", "--data", str(dataset), "--out", str(trained), *FAST]) == 2
    assert "not empty; pass --resume" in capsys.readouterr().err


def test_help_does_not_import_torch():
    code = (
        "import sys, contextlib, io\nfrom scrd import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: cli.main(['--help'])\n    except SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'scrd --help imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_calibration_on_a_split_with_abnormal_images_is_refused(trained, dataset, tmp_path, capsys):
    for command in (
        ["calibrate", "--model", str(trained), "--data", str(dataset), "--split", "test"],
        [
            "evaluate",
            "--model",
            str(trained),
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "e"),
            "--calibration",
            str(dataset),
            "--calibration-split",
            "test",
        ],
    ):
        assert main(command) == 2
        assert "calibration needs normal images only" in capsys.readouterr().err
