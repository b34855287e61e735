"""No silent traps: each test is one way a user could get a wrong or confusing result without being
told, and checks that scrd now says so (or prevents it)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_FLAGS, tiny_config
from PIL import Image

from scrd.cli import build_parser, main
from scrd.evaluation import evaluate as evaluate_module
from scrd.evaluation.metrics import trivial_rule_check
from scrd.filenames import (
    CONFIG_FILE,
    ENV_FILE,
    HEATMAP_DIR,
    METRICS_FILE,
    MODEL_FILE,
    MODEL_META,
    PREDICTIONS_FILE,
    STATE_FILE,
    STATE_META,
)
from scrd.storage import read_json
from scrd.training.train import train

README = Path(__file__).resolve().parents[1] / "README.md"


# ------------------------------------------------------------------- meaningless figures
def test_an_auroc_below_chance_is_a_warning(tiny_run, phantom_data, tmp_path, monkeypatch):
    real = evaluate_module.score_samples

    def inverted(*args, **kwargs):
        scored = real(*args, **kwargs)
        scored.scores = -scored.labels.astype(float) + 0.001 * np.arange(len(scored.labels))
        return scored

    monkeypatch.setattr(evaluate_module, "score_samples", inverted)
    with pytest.warns(UserWarning, match="AUROC 0.0000 is below 0.5"):
        evaluate_module.evaluate(tiny_run, phantom_data, tmp_path / "e")


def test_an_oracle_threshold_that_flags_everything_says_so(tiny_run, phantom_data, tmp_path, monkeypatch, capsys):
    real = evaluate_module.score_samples

    def constant(*args, **kwargs):
        scored = real(*args, **kwargs)
        scored.scores = np.ones(len(scored.labels))
        return scored

    monkeypatch.setattr(evaluate_module, "score_samples", constant)
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(phantom_data), "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "calls 100% of the images abnormal: labelling every image abnormal gives F1 0.6667" in out
    oracle = read_json(tmp_path / "e" / METRICS_FILE)["oracle_threshold"]
    assert oracle["labels_almost_everything_abnormal"] is True and oracle["f1"] == pytest.approx(2 / 3)


def test_trivial_rule_by_hand():
    check = trivial_rule_check([0, 0, 1, 1, 1], [0.1, 0.5, 0.6, 0.7, 0.9], threshold=0.05)
    assert check["flagged_fraction"] == 1.0 and check["all_abnormal_f1"] == pytest.approx(2 * 0.6 / 1.6)
    assert trivial_rule_check([0, 1], [0.1, 0.9], 0.5)["labels_almost_everything_abnormal"] is False


# ------------------------------------------------------------------- outputs of two models
@pytest.fixture(scope="module")
def other_run(phantom_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("other") / "run"
    train(tiny_config(train__seed=5, train__iterations=2), phantom_data, run, progress=False)
    return run


def test_predict_refuses_a_folder_another_model_wrote(tiny_run, other_run, phantom_data, tmp_path, capsys):
    out, images = tmp_path / "pred", str(phantom_data / "images")
    assert main(["predict", images, "--model", str(tiny_run), "--out", str(out)]) == 0
    assert main(["predict", images, "--model", str(other_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out}: was written by {tiny_run / MODEL_FILE}" in err and "pass --fresh" in err
    assert main(["predict", images, "--model", str(other_run), "--out", str(out), "--fresh"]) == 0
    with open(out / PREDICTIONS_FILE) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 28 and all((out / r["heatmap"]).is_file() for r in rows)
    assert all(r["heatmap"].startswith(HEATMAP_DIR + "/") for r in rows)


# ------------------------------------------------------------------- config semantics
def test_eval_data_without_eval_every_is_an_error(phantom_data, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--data",
                str(phantom_data),
                "--out",
                str(tmp_path / "r"),
                "--eval-data",
                str(phantom_data),
                *TINY_FLAGS,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "train.eval_every iterations, which is 0 (never): add e.g. --set train.eval_every=250" in err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------- interruptions
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_writes_a_checkpoint_at_the_current_iteration(phantom_data, tmp_path, signum):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "scrd.cli",
        "train",
        "--data",
        str(phantom_data),
        "--out",
        str(run),
        "--iterations",
        "400",
        "--set",
        "train.log_every=1",
        *TINY_FLAGS,
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run / "train_log.csv"
    deadline = time.time() + 240
    while (not log.is_file() or len(log.read_text().splitlines()) < 3) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    done = read_json(run / STATE_META)["iteration"]
    assert 2 <= done < 400 and f"interrupted at iteration {done}; a checkpoint was written" in err
    assert not (run / MODEL_FILE).exists()


def test_stale_temporary_files_are_removed_on_resume(tiny_run, phantom_data, copy_run):
    run = copy_run(tiny_run)
    stale = run / "checkpoints" / ".last.pt.x1y2.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert main(["train", "--data", str(phantom_data), "--out", str(run), "--resume", "--no-progress"]) == 0
    assert not stale.exists()


def test_a_train_that_fails_before_its_first_iteration_leaves_the_folder_reusable(phantom_data, tmp_path, capsys):
    run = tmp_path / "run"
    bad = [*TINY_FLAGS]
    bad[bad.index("--weights") + 1] = str(tmp_path / "missing.pth")
    assert main(["train", "--data", str(phantom_data), "--out", str(run), *bad, "--iterations", "2"]) == 2
    assert "weight file not found" in capsys.readouterr().err and not run.exists()
    assert main(["train", "--data", str(phantom_data), "--out", str(run), *TINY_FLAGS, "--iterations", "2"]) == 0


# ------------------------------------------------------------------- permissions
def test_written_files_follow_the_umask(phantom_data, tmp_path):
    previous = os.umask(0o022)
    try:
        run = tmp_path / "run"
        train(tiny_config(train__iterations=2), phantom_data, run, progress=False)
    finally:
        os.umask(previous)
    for name in (CONFIG_FILE, ENV_FILE, MODEL_FILE, MODEL_META, STATE_FILE):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name


# ------------------------------------------------------------------- calibration
def test_evaluate_calibration_is_stored_and_reused(tiny_run, phantom_data, copy_run, tmp_path, capsys, monkeypatch):
    from scrd.evaluation import calibrate as calibrate_module

    run = copy_run(tiny_run)
    command = [
        "evaluate",
        "--model",
        str(run),
        "--data",
        str(phantom_data),
        "--out",
        str(tmp_path / "e"),
        "--calibration",
        str(phantom_data),
        "--specificity",
        "0.9",
    ]
    assert main(command) == 0
    assert "stored in model.json" in capsys.readouterr().out
    stored = read_json(run / MODEL_META)["calibration"]
    assert stored["requested"] == {"source": str(phantom_data), "split": "train"}
    calls = []
    monkeypatch.setattr(calibrate_module, "calibration", lambda *a, **k: calls.append(a))
    assert main(command) == 0
    assert "the model's stored calibration of these images" in capsys.readouterr().out and not calls


# ------------------------------------------------------------------- the Python API
def test_the_readme_python_example_gives_the_clis_scores(tiny_run, phantom_data, tmp_path, capsys, monkeypatch):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("test_abnormal_0000.png", "test_normal_0000.png"):
        shutil.copy(phantom_data / "images" / name, scans / name)
    shutil.copy(phantom_data / "images" / "test_abnormal_0001.png", tmp_path / "scan1.png")
    shutil.copytree(tiny_run, tmp_path / "runs" / "r1")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert main(["predict", "scan1.png", "scans", "--model", "runs/r1", "--out", "p", "--no-heatmaps"]) == 0
    with open(tmp_path / "p" / PREDICTIONS_FILE) as f:
        cli = {Path(r["path"]).name: float(r["score"]) for r in csv.DictReader(f)}
    rows = [line.split() for line in printed]
    python = {Path(r[0]).name: float(r[1]) for r in rows if r[0].endswith(".png")}
    assert python == cli and len(cli) == 3


# ------------------------------------------------------------------- messages that name the fix
def test_a_model_file_of_another_architecture_is_named(tiny_run, phantom_data, copy_run, tmp_path, capsys):
    run = copy_run(tiny_run)
    other = tmp_path / "r18"
    train(tiny_config(model__arch="resnet18", train__iterations=1), phantom_data, other, progress=False)
    shutil.copy(other / MODEL_FILE, run / MODEL_FILE)
    assert main(["evaluate", "--model", str(run), "--data", str(phantom_data), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "holds a scrd resnet18 model, but model.json says scrd mobilenet_v2" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "wrong, message",
    [
        ("image", "is an image; --model expects a run directory"),
        ("checkpoint", "is a training checkpoint, not a model"),
    ],
)
def test_wrong_files_as_model_are_named(tiny_run, phantom_data, tmp_path, capsys, wrong, message):
    path = phantom_data / "images" / "train_0000.png" if wrong == "image" else tiny_run / STATE_FILE
    assert main(["predict", str(phantom_data / "images"), "--model", str(path), "--out", str(tmp_path / "p")]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_input_says_it_does_not_exist(tiny_run, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.png"), "--model", str(tiny_run), "--out", str(tmp_path / "p")]) == 2
    assert "do not exist (no such file or folder)" in capsys.readouterr().err


def test_out_pointing_at_a_file_is_named(tiny_run, phantom_data, tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(["predict", str(phantom_data / "images"), "--model", str(tiny_run), "--out", str(target)]) == 2
    assert "--out is a file; give a folder" in capsys.readouterr().err


def test_an_unknown_device_is_named(tiny_run, phantom_data, tmp_path, capsys):
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tiny_run),
                "--data",
                str(phantom_data),
                "--out",
                str(tmp_path / "e"),
                "--device",
                "gpu",
            ]
        )
        == 2
    )
    assert "unknown device 'gpu'; use auto, cpu, cuda or cuda:N" in capsys.readouterr().err


def test_the_image_size_limit_can_be_raised(tmp_path):
    from scrd.config import DataConfig
    from scrd.data.readers import read_image
    from scrd.errors import ImageReadError

    Image.fromarray(np.zeros((80, 90), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(
        ImageReadError,
        match=r"7,200 pixels, more than data.max_image_pixels \(7,000\).*"
        r"--set data.max_image_pixels=7200",
    ):
        read_image(tmp_path / "big.png", options=DataConfig(max_image_pixels=7000))
    assert read_image(tmp_path / "big.png", options=DataConfig(max_image_pixels=7200)).shape == (80, 90, 1)


# ------------------------------------------------------------------- provenance
def test_environment_and_model_record_their_provenance(tiny_run):
    env = read_json(tiny_run / ENV_FILE)
    meta = read_json(tiny_run / MODEL_META)
    for report in (env, meta["provenance"]):
        assert report["scrd"] and report["torch"] == torch.__version__ and report["torch_git"]
        assert report["cpu"] and report["cpu_threads"] == torch.get_num_threads() and "allocator" in report
        assert "scrd_commit" in report  # None outside a git checkout
    assert len(meta["data"]["fingerprint"]) == 64


# ------------------------------------------------------------------- help
def test_every_flag_has_help_and_every_command_an_example(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"scrd {name} {action.option_strings[0]} has no help"
        assert "example" in (sub.epilog or ""), f"scrd {name} has no example"
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("scrd ")
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "(default: 16)" in capsys.readouterr().out
