"""Thresholds come from normal images the model was not trained on, or are labelled in-sample;
calibration honours --device and --on-bad-image."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import tiny_config
from PIL import Image

from scrd.cli import main
from scrd.errors import InputError
from scrd.evaluation.calibrate import calibrate
from scrd.evaluation.evaluate import evaluate
from scrd.filenames import HOLDOUT_SAMPLES, METRICS_FILE, MODEL_META, SKIPPED_FILE
from scrd.storage import read_json
from scrd.training.train import train


@pytest.fixture(scope="module")
def run_without_holdout(phantom_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("noholdout") / "run"
    train(tiny_config(), phantom_data, run, progress=False)
    return run


def test_the_default_calibration_uses_the_held_out_normals(tiny_run):
    info = read_json(tiny_run / MODEL_META)["calibration"]
    assert info["in_sample"] is False and info["n_images"] == 4 and info["source"].endswith(HOLDOUT_SAMPLES)
    assert read_json(tiny_run / MODEL_META)["config"]["train"]["holdout_fraction"] == 0.25


def test_calibrating_on_the_training_split_leaves_trained_images_out(tiny_run, phantom_data, copy_run):
    info = calibrate(copy_run(tiny_run), phantom_data, "train", target_specificity=0.75)
    assert info["in_sample"] is False and info["n_images"] == 4
    assert info["note"] == "12 of the 16 images were training images and were left out"


def test_a_run_without_held_out_images_is_calibrated_in_sample_and_says_so(
    run_without_holdout, phantom_data, tmp_path, capsys
):
    with pytest.raises(InputError, match="holds out no training images"):
        calibrate(run_without_holdout, target_specificity=0.9)
    run = tmp_path / "run"
    shutil.copytree(run_without_holdout, run)
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(run),
                "--data",
                str(phantom_data),
                "--out",
                str(tmp_path / "e"),
                "--calibration",
                str(phantom_data),
            ]
        )
        == 0
    )
    assert "(IN-SAMPLE calibration)" in capsys.readouterr().out
    calibrated = read_json(tmp_path / "e" / METRICS_FILE)["calibrated_threshold"]
    assert calibrated["in_sample"] is True and calibrated["n_images"] == 16 and "IN-SAMPLE" in calibrated["note"]


def test_calibration_skips_bad_images_when_asked(tiny_run, copy_run, tmp_path):
    run = copy_run(tiny_run)
    data = tmp_path / "normals"
    (data / "train" / "normal").mkdir(parents=True)
    for i in range(5):
        Image.new("L", (64, 64), 40 * i).save(data / "train" / "normal" / f"{i}.png")
    (data / "train" / "normal" / "broken.png").write_bytes(b"not an image")
    assert main(["calibrate", "--model", str(run), "--data", str(data)]) == 2
    assert main(["calibrate", "--model", str(run), "--data", str(data), "--on-bad-image", "skip"]) == 0
    info = read_json(run / MODEL_META)["calibration"]
    assert info["n_images"] == 5 and info["skipped_images"] == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_calibration_honours_the_device_flag(tiny_run, capsys):
    assert main(["calibrate", "--model", str(tiny_run), "--device", "cuda"]) == 2
    assert "device 'cuda' requested but CUDA is not available on this machine; use --device cpu" in (
        capsys.readouterr().err
    )


def test_evaluate_reports_the_stored_calibration(tiny_run, phantom_data, tmp_path):
    evaluate(tiny_run, phantom_data, tmp_path / "e")
    metrics = json.loads((tmp_path / "e" / METRICS_FILE).read_text())
    stored = read_json(tiny_run / MODEL_META)["calibration"]
    assert metrics["calibrated_threshold"]["threshold"] == stored["threshold"]
    assert metrics["calibrated_threshold"]["in_sample"] is False
    assert not (tmp_path / "e" / SKIPPED_FILE).exists()
