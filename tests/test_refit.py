"""scrd refit and a grid's student_from: a trained student kept, its memory bank and scoring fitted anew."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_config
from test_experiment import TINY_BASE

from scrd.cli import main
from scrd.errors import ConfigError
from scrd.filenames import MODEL_FILE, MODEL_META, TRAIN_LOG
from scrd.lab.experiment import SUMMARY, load_grid
from scrd.storage import load_tensors
from scrd.training.train import train


@pytest.fixture(scope="module")
def trained(phantom_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("refit") / "run"
    # a 10 % random bank (the knn preset's), so that a 2 % coreset is the smaller bank
    config = tiny_config(
        "denoising_knn", train__iterations=4, train__holdout_fraction=0.25, knn__sampling="random", knn__fraction=0.1
    )
    train(config, phantom_data, run, False)
    return run


def _network_weights(run):
    return load_tensors(run / MODEL_FILE)["state_dict"]


def test_refit_keeps_the_student_and_fits_a_smaller_bank_with_its_own_statistics_and_threshold(
    trained, tmp_path, capsys
):
    out = tmp_path / "small"
    args = ["refit", "--model", str(trained), "--out", str(out), "--no-progress"]
    assert main([*args, "--set", "knn.sampling=coreset", "--set", "knn.fraction=0.02"]) == 0
    printed = capsys.readouterr().out
    assert "knn.fraction=0.02, knn.sampling=coreset" in printed and "calibrated threshold" in printed
    before, after = _network_weights(trained), _network_weights(out)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    old, new = (json.loads((r / MODEL_META).read_text()) for r in (trained, out))
    assert new["memory_bank_shape"][0] < old["memory_bank_shape"][0]
    assert new["memory_bank_shape"][1] == old["memory_bank_shape"][1]
    assert new["student_from"] == {"run": str(trained), "changed": ["knn.fraction", "knn.sampling"]}
    assert new["iterations"] == old["iterations"] and new["data"] == old["data"]
    # statistics and threshold belong to the new bank: measured anew on the same held-out images
    assert new["scoring_statistics"]["count"] == old["scoring_statistics"]["count"]
    assert new["normal_scores"]["scores"] != old["normal_scores"]["scores"]
    assert new["calibration"]["n_images"] == old["data"]["n_holdout"]  # calibrated on the held-out normals
    assert (out / TRAIN_LOG).read_text() == (trained / TRAIN_LOG).read_text()


def test_refit_refuses_an_option_that_changes_the_training(trained, tmp_path, capsys):
    args = ["refit", "--model", str(trained), "--out", str(tmp_path / "x"), "--set", "train.iterations=8"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "change the training itself" in err and "train.iterations: trained 4, asked 8" in err
    assert not (tmp_path / "x").exists()


def test_a_grid_row_keeps_an_earlier_rows_students_and_matches_its_bank_analysis(phantom_data, tmp_path):
    # the refitted row's AUROC is the earlier row's bank analysis of the same bank: one computation
    coreset = {"sampling": "coreset", "fraction": 0.05}
    spec = {
        "title": "refit",
        "data": str(phantom_data),
        "seeds": [1],
        "base": TINY_BASE,
        "variants": [
            {"name": "default", "preset": "denoising_knn"},
            {
                "name": "small",
                "preset": "denoising_knn",
                "student_from": "default",
                "analyses": False,  # its bank is the earlier row's analysis already
                "set": {"knn.sampling": "coreset", "knn.fraction": 0.05},
            },
        ],
        "banks": {"coreset": coreset},
    }
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps(spec))
    out = tmp_path / "runs"
    assert main(["experiment", "run", str(grid), "--out", str(out), "--no-progress"]) == 0
    default, small = (json.loads((out / v / "seed-1" / SUMMARY).read_text()) for v in ("default", "small"))
    assert small["auroc"] == pytest.approx(default["banks"]["coreset"]["auroc"], abs=1e-9)
    small_meta = json.loads((out / "small" / "seed-1" / MODEL_META).read_text())
    assert small_meta["memory_bank_shape"][0] == default["banks"]["coreset"]["rows"]
    assert "banks" not in small and "banks" in default  # analyses: false spares the refitted row
    assert not (out / "small" / "seed-1" / "checkpoints").exists()  # nothing was trained


def test_a_grid_refuses_student_from_a_later_row_or_a_training_change(phantom_data, tmp_path):
    rows = [
        {"name": "a", "preset": "denoising_knn", "student_from": "b"},
        {"name": "b", "preset": "denoising_knn"},
    ]
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"data": str(phantom_data), "base": TINY_BASE, "variants": rows}))
    with pytest.raises(ConfigError, match="student_from 'b' must name an earlier row"):
        load_grid(grid)
    rows = [rows[1], {"name": "a", "preset": "denoising_knn", "student_from": "b", "set": {"loss.eps": 1e-3}}]
    grid.write_text(json.dumps({"data": str(phantom_data), "base": TINY_BASE, "variants": rows}))
    with pytest.raises(ConfigError, match=r"a cannot keep b's students: .*loss.eps"):
        load_grid(grid)
    rows = [rows[1], {"name": "a", "preset": "denoising_knn", "student_from": "b", "analyses": "no"}]
    grid.write_text(json.dumps({"data": str(phantom_data), "base": TINY_BASE, "variants": rows}))
    with pytest.raises(ConfigError, match="a: analyses must be true or false, got 'no'"):
        load_grid(grid)
