"""Out of sample by default: `scrd train` without flags holds out normal images, measures its scoring's
statistics and calibrates its threshold on them, records which; a scoring that reads normal statistics
refuses to train without held-out images."""

from __future__ import annotations

import json

import pytest
from helpers import TINY_FLAGS

from scrd.cli import main
from scrd.filenames import HOLDOUT_SAMPLES, MODEL_META, TRAIN_SAMPLES
from scrd.runs.sample_lists import read_sample_list
from scrd.training.data import holdout_count


@pytest.mark.parametrize(
    "n, fraction, minimum, held",
    [
        (1000, 0.1, 50, 100),
        (300, 0.1, 50, 50),
        (100, 0.1, 50, 25),
        (16, 0.1, 50, 4),
        (1000, 0.0, 50, 0),
        (5, 0.1, 0, 2),
        (2, 0.1, 0, 1),
    ],
)
def test_how_many_normals_are_held_out(n, fraction, minimum, held):
    assert holdout_count(n, fraction, minimum) == held


def test_the_default_trains_out_of_sample_with_no_flags(phantom_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(phantom_data), "--out", str(run), *TINY_FLAGS, "--iterations", "2"]) == 0
    held = read_sample_list(run / HOLDOUT_SAMPLES)
    trained = {str(s.path) for s in read_sample_list(run / TRAIN_SAMPLES)}
    assert len(held) == 4 and not {str(s.path) for s in held} & trained  # 16 normals: a quarter, not 50
    meta = json.loads((run / MODEL_META).read_text())
    assert meta["scoring_statistics"]["images"] == "held-out normal training images"
    assert meta["scoring_statistics"]["count"] == 4 and meta["data"]["n_holdout"] == 4
    calibration = meta["calibration"]  # calibrated on the held-out images without being asked
    assert calibration["in_sample"] is False and calibration["n_images"] == 4 and calibration["rule"] == "conformal"
    assert calibration["source"].endswith(HOLDOUT_SAMPLES)
    assert "calibrated threshold" in capsys.readouterr().out


def test_a_scoring_with_normal_statistics_refuses_to_train_in_sample(phantom_data, tmp_path, capsys):
    command = ["train", "--data", str(phantom_data), "--out", str(tmp_path / "run"), *TINY_FLAGS]
    assert main([*command, "--set", "train.holdout_fraction=0"]) == 2
    err = capsys.readouterr().err
    assert "measures statistics of normal images on held-out ones" in err and "train.holdout_fraction" in err
    assert not (tmp_path / "run").exists()  # nothing was left behind
    # a scoring that reads none trains without held-out images, as the released code does
    assert main([*command, "--preset", "official", "--iterations", "1"]) == 0
