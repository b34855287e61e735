"""What a newcomer tripped on (issue 27): predict scoring its own output, silent phases, a resume
that forgot the calibration, tracebacks for unwritable folders, flags the messages named but the
commands lacked, two things both called α, help that hid what the flags default to."""

from __future__ import annotations

import argparse
import csv
import errno
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_FLAGS
from PIL import Image

from scrd.cli import build_parser, main
from scrd.data.layouts import collect_samples, is_own_output, png_text_keys
from scrd.errors import DatasetError, InputError, WeightsError
from scrd.filenames import (
    CALIBRATION_REQUEST,
    HEATMAP_DIR,
    METRICS_FILE,
    MODEL_META,
    OUTPUT_MARKER,
    OUTPUT_PNG_KEY,
    PANEL_DIR,
    PREDICTIONS_FILE,
    REPORT_FILE,
    SKIPPED_FILE,
)
from scrd.reporting.report_data import FUSION_WEIGHTS, HEAD_ALPHA
from scrd.runs.output import check_writable
from scrd.storage import read_json, write_json

ROOT = Path(__file__).resolve().parents[1]
BAR = re.compile(r"\d+/\d+ \[")  # tqdm's "12/12 [00:01<00:00, ...]"


@pytest.fixture
def scans(phantom_data, tmp_path) -> Path:
    """A folder of 4 phantom images, as a user's scans."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("test_abnormal_0000.png", "test_abnormal_0001.png", "test_normal_0000.png", "test_normal_0001.png"):
        shutil.copy(phantom_data / "images" / name, folder / name)
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _predict(tiny_run, *args: str) -> int:
    return main(["predict", *args, "--model", str(tiny_run), "--no-progress"])


# ------------------------------------------------------------------- 1. predict never reads its output
def test_predict_with_out_inside_the_input_gives_the_same_csv_twice(tiny_run, scans, capsys):
    out = scans / "predictions"
    assert _predict(tiny_run, str(scans), "--out", str(out)) == 0
    first = (out / PREDICTIONS_FILE).read_bytes()
    assert len(_rows(out / PREDICTIONS_FILE)) == 4 and len(list((out / PANEL_DIR).glob("*.png"))) == 4
    assert _predict(tiny_run, str(scans), "--out", str(out)) == 0
    assert (out / PREDICTIONS_FILE).read_bytes() == first
    captured = capsys.readouterr()
    assert "scored 0 new images (4 already scored by an earlier run, kept)" in captured.out
    assert "left out 8 file(s) that scrd predict wrote" in captured.err
    # another output folder beside the first: the first one's heat maps are still not inputs
    assert _predict(tiny_run, str(scans), "--out", str(scans / "again")) == 0
    again = {r["path"]: r["score"] for r in _rows(scans / "again" / PREDICTIONS_FILE)}
    assert again == {r["path"]: r["score"] for r in _rows(out / PREDICTIONS_FILE)}


def test_a_copied_output_folder_is_still_recognised(tiny_run, scans, tmp_path):
    out = tmp_path / "pred"
    assert _predict(tiny_run, str(scans), "--out", str(out)) == 0
    for folder in (HEATMAP_DIR, PANEL_DIR):
        assert (out / folder / OUTPUT_MARKER).is_file()
        assert all(OUTPUT_PNG_KEY in png_text_keys(p) for p in (out / folder).glob("*.png"))
        assert all(np.asarray(Image.open(p)).ndim == 3 for p in (out / folder).glob("*.png"))  # still a PNG
    copy = tmp_path / "elsewhere"
    shutil.copytree(out / HEATMAP_DIR, copy / "maps")
    with pytest.raises(DatasetError, match="every image found is one of 4 file"):
        collect_samples([str(copy)])
    (copy / "maps" / OUTPUT_MARKER).unlink()  # the marker file lost: each PNG is marked too
    shutil.copy(scans / "test_normal_0000.png", copy / "scan.png")
    with pytest.warns(UserWarning, match="left out 4 file"):
        assert [s.path.name for s in collect_samples([str(copy)])] == ["scan.png"]
    assert not is_own_output(scans / "test_normal_0000.png") and OUTPUT_PNG_KEY not in png_text_keys(copy / "scan.png")


# ------------------------------------------------------------------- 2. progress
def test_evaluate_calibrate_and_predict_show_progress_unless_told_not_to(
    tiny_run, phantom_data, scans, copy_run, capsys
):
    run = copy_run(tiny_run)
    out = scans.parent
    commands = {
        "evaluate": [
            "evaluate",
            "--model",
            str(run),
            "--data",
            str(phantom_data),
            "--out",
            str(out / "e"),
            "--no-report",
        ],
        "calibrate": ["calibrate", "--model", str(run)],
        "predict": ["predict", str(scans), "--model", str(run), "--out", str(out / "p"), "--no-heatmaps"],
    }
    counts = {"evaluate": "12/12", "calibrate": "4/4", "predict": "4/4"}
    for name, command in commands.items():
        assert main(command) == 0
        err = capsys.readouterr().err
        assert re.search(rf"{name}: .*{counts[name]} \[", err), err
    for name, command in commands.items():
        assert main([*command, "--no-progress", *(["--fresh"] if name == "predict" else [])]) == 0
        assert not BAR.search(capsys.readouterr().err), name


def test_the_training_bar_says_whose_alpha_it_shows(phantom_data, tmp_path, capsys):
    flags = [f for f in TINY_FLAGS if f != "--no-progress"]
    assert main(["train", "--data", str(phantom_data), "--out", str(tmp_path / "r"), *flags, "--iterations", "2"]) == 0
    err = capsys.readouterr().err
    assert "scale-head α=" in err and " alpha=" not in err


# ------------------------------------------------------------------- 3. --resume keeps --calibration
def test_an_interrupted_run_resumes_with_its_calibration(phantom_data, tmp_path, capsys, monkeypatch):
    from scrd.training import loop

    real = loop.after_step

    def interrupt_at_2(it, *args, **kwargs):
        if it == 2:
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C would: the loop stops after this iteration
        return real(it, *args, **kwargs)

    run = tmp_path / "run"
    command = ["train", "--data", str(phantom_data), "--out", str(run), *TINY_FLAGS]
    monkeypatch.setattr(loop, "after_step", interrupt_at_2)
    assert main([*command, "--iterations", "50", "--calibration", "--specificity", "0.9"]) == 130
    err = capsys.readouterr().err
    assert f"--resume --out {run} --data {phantom_data} --calibration --specificity 0.9" in err
    assert read_json(run / CALIBRATION_REQUEST) == {"source": "holdout", "split": "train", "specificity": 0.9}
    monkeypatch.setattr(loop, "after_step", real)
    assert main(["train", "--data", str(phantom_data), "--out", str(run), "--resume", "--no-progress"]) == 0
    assert "calibrated threshold" in capsys.readouterr().out
    assert read_json(run / MODEL_META)["calibration"]["target_specificity"] == 0.9


def test_a_finished_run_calibrates_when_resumed_with_calibration(tiny_run, phantom_data, copy_run, capsys):
    run = copy_run(tiny_run)  # calibrated at specificity 0.5 by the fixture
    command = ["train", "--data", str(phantom_data), "--out", str(run), "--resume", "--no-progress"]
    assert main([*command, "--calibration", "--specificity", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "calibrating as asked" in out and "calibrated threshold" in out
    assert read_json(run / MODEL_META)["calibration"]["target_specificity"] == 0.9
    assert main(command) == 0
    assert "and calibrated as asked; nothing to do" in capsys.readouterr().out


# ------------------------------------------------------------------- 4. unwritable output folders
@pytest.mark.parametrize("command", ["predict", "evaluate", "train"])
def test_an_out_path_through_a_file_is_one_line(tiny_run, phantom_data, tmp_path, capsys, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "results"
    args = {
        "predict": ["predict", str(phantom_data / "images"), "--model", str(tiny_run), "--out", str(out)],
        "evaluate": ["evaluate", "--model", str(tiny_run), "--data", str(phantom_data), "--out", str(out)],
        "train": ["train", "--data", str(phantom_data), "--out", str(out), *TINY_FLAGS],
    }[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    why = "cannot write the output folder (--out): a part of the path is a file, not a folder"
    assert err == f"scrd {command}: error: {out}: {why} (at {blocker})\n"


def test_a_read_only_out_folder_is_one_line(tiny_run, scans, tmp_path, capsys):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("running as root: chmod does not stop root writing (the mapping is tested by monkeypatch)")
        assert _predict(tiny_run, str(scans), "--out", str(out)) == 2
        assert "cannot write the output folder (--out): permission denied" in capsys.readouterr().err
    finally:
        out.chmod(0o755)


def test_permission_errors_name_the_folder(tiny_run, scans, tmp_path, capsys, monkeypatch):
    from scrd.reporting import panels

    out = tmp_path / "pred"
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(InputError, match=rf"{out}: cannot write the output folder \(--out\): permission denied"):
        check_writable(out)
    monkeypatch.undo()

    def refuse(out_dir, name, *args, **kwargs):  # a folder made read-only while predict runs
        raise PermissionError(errno.EACCES, "Permission denied", str(out_dir / HEATMAP_DIR / name))

    monkeypatch.setattr(panels, "write_image_heatmaps", refuse)
    assert _predict(tiny_run, str(scans), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"scrd predict: error: {out}: cannot write the output folder (--out): permission denied")
    assert err.count("\n") == 1 and f"(at {out / HEATMAP_DIR}" in err


# ------------------------------------------------------------------- 5. --set data.* where the guard points
def test_the_image_size_guards_suggestion_works_in_predict(tiny_run, tmp_path, capsys):
    folder = tmp_path / "big"
    folder.mkdir()
    Image.fromarray(np.full((80, 90), 128, np.uint8)).save(folder / "big.png")
    out = tmp_path / "p"
    assert _predict(tiny_run, str(folder), "--out", str(out), "--set", "data.max_image_pixels=7000") == 2
    suggestion = re.search(r"--set (data\.max_image_pixels=\d+)", capsys.readouterr().err).group(1)
    assert suggestion == "data.max_image_pixels=7200"
    assert _predict(tiny_run, str(folder), "--out", str(out), "--set", suggestion) == 0
    assert len(_rows(out / PREDICTIONS_FILE)) == 1


def test_evaluate_and_calibrate_take_data_options_only(tiny_run, phantom_data, copy_run, tmp_path, capsys):
    run = copy_run(tiny_run)
    evaluate = [
        "evaluate",
        "--model",
        str(run),
        "--data",
        str(phantom_data),
        "--out",
        str(tmp_path / "e"),
        "--no-report",
    ]
    assert main([*evaluate, "--set", "data.max_image_pixels=100"]) == 2
    assert "more than data.max_image_pixels (100)" in capsys.readouterr().err
    assert main([*evaluate, "--set", "data.max_image_pixels=4096"]) == 0
    calibrate = ["calibrate", "--model", str(run), "--no-progress"]
    assert main([*calibrate, "--set", "data.max_image_pixels=100"]) == 2
    assert main([*calibrate, "--set", "data.max_image_pixels=4096"]) == 0
    assert main([*calibrate, "--set", "model.arch=resnet18"]) == 2
    assert "--set model.arch: scrd calibrate takes only data.* options" in capsys.readouterr().err


# ------------------------------------------------------------------- 6. skipped images are said aloud
def test_evaluate_says_which_images_it_skipped(tiny_run, phantom_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(phantom_data, data)
    (data / "images" / "test_abnormal_0002.png").write_bytes(b"not a png")
    out = tmp_path / "e"
    command = ["evaluate", "--model", str(tiny_run), "--data", str(data), "--out", str(out), "--no-progress"]
    assert main([*command, "--on-bad-image", "skip"]) == 0
    said = f"skipped 1 unreadable images, left out of every metric above; listed with why in {out / SKIPPED_FILE}"
    assert said in capsys.readouterr().out
    page = (out / REPORT_FILE).read_text()
    assert "1 unreadable images were skipped and left out of every metric on this page" in page
    assert str(out / SKIPPED_FILE) in page


# ------------------------------------------------------------------- 7. two kinds of weights, named apart
def test_the_report_names_the_scale_heads_alpha_and_the_fusion_weights_apart(
    tiny_run, phantom_data, copy_run, tmp_path
):
    run = copy_run(tiny_run)  # the official preset: α of the scale head inside the cosine
    command = ["evaluate", "--model", str(run), "--data", str(phantom_data), "--no-progress", "--out"]
    assert main([*command, str(tmp_path / "head")]) == 0
    assert read_json(tmp_path / "head" / METRICS_FILE)["alpha_label"] == HEAD_ALPHA
    page = (tmp_path / "head" / REPORT_FILE).read_text()
    assert "Scale-head α (learned, paper Eq. 3), per scale and image" in page and FUSION_WEIGHTS not in page
    assert "scale-head α placement inside_cosine" in page
    meta = read_json(run / MODEL_META)
    meta["config"]["scoring"]["scale_fusion"] = "normal_softmax"
    write_json(run / MODEL_META, meta)
    from scrd.detector import Detector
    from scrd.evaluation.normal_reference import measure_on_normals, reference_samples

    fused = Detector.load(run, "cpu")  # the fusion's statistics, measured on the run's held-out normals
    measure_on_normals(fused, reference_samples(run))
    fused.save(run)
    assert main([*command, str(tmp_path / "fusion")]) == 0
    assert read_json(tmp_path / "fusion" / METRICS_FILE)["alpha_label"] == FUSION_WEIGHTS
    page = (tmp_path / "fusion" / REPORT_FILE).read_text()
    assert "Fusion weights (per image, from normal statistics), per scale and image" in page
    assert "unrelated to the scale head" in page
    docs = (ROOT / "docs" / "report.md").read_text()
    assert HEAD_ALPHA in docs and FUSION_WEIGHTS in docs


# ------------------------------------------------------------------- 8. help and messages that name the flag
def test_train_help_shows_the_presets_values(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "teacher architecture (from the preset: mobilenet_v2 in denoising_knn (the default), denoising;" in text
    assert "wide_resnet50_2 in official, paper, rd4ad, knn)" in text
    assert "resized to this square size (from the preset: 256 in every preset)" in text
    assert "(from the preset: 4000 in every preset)" in text


def test_predict_usage_shows_model_as_required_and_every_positional_has_help(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert "--model MODEL --out OUT" in usage and "[--model" not in usage and "--merge --out OUT" in usage
    for name, sub in build_parser()._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"scrd {name} {action.dest} has no help"


def test_the_weights_error_names_the_flag_on_the_command_line(phantom_data, tmp_path, capsys, monkeypatch):
    from scrd.model.weights import resolve_imagenet_weights
    from scrd.training import train as train_module

    with pytest.raises(WeightsError) as caught:
        resolve_imagenet_weights("resnet18", download=False)
    assert "weights='none'" in str(caught.value)  # the Python API's spelling

    def fail(*args, **kwargs):
        raise caught.value

    monkeypatch.setattr(train_module, "train", fail)
    assert main(["train", "--data", str(phantom_data), "--out", str(tmp_path / "r"), "--arch", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert "--weights none" in err and "weights='none'" not in err


@pytest.mark.parametrize("command", ["predict", "evaluate", "calibrate"])
def test_an_onnx_model_without_its_backend_names_the_flag(phantom_data, tmp_path, capsys, command):
    model = str(tmp_path / "model.onnx")
    args = {
        "predict": ["predict", str(phantom_data / "images"), "--model", model, "--out", str(tmp_path / "p")],
        "evaluate": ["evaluate", "--model", model, "--data", str(phantom_data), "--out", str(tmp_path / "e")],
        "calibrate": ["calibrate", "--model", model],
    }[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "an exported ONNX graph" in err and "--backend onnxruntime" in err and "model.json" not in err


def test_the_report_of_a_run_marks_an_in_sample_calibration(tiny_run, copy_run, capsys):
    run = copy_run(tiny_run)
    assert main(["report", str(run)]) == 0
    assert "IN-SAMPLE" not in (run / REPORT_FILE).read_text()
    meta = read_json(run / MODEL_META)
    meta["calibration"]["in_sample"] = True
    write_json(run / MODEL_META, meta)
    assert main(["report", str(run)]) == 0
    assert "IN-SAMPLE: calibrated on the training images themselves" in (run / REPORT_FILE).read_text()


# ------------------------------------------------------------------- 9. Ctrl-C, re-runs and --fresh in predict
def test_an_interrupted_predict_says_how_far_it_got_and_continues(tiny_run, scans, tmp_path, capsys, monkeypatch):
    from scrd.reporting import panels

    real, calls = panels.write_image_heatmaps, []

    def interrupt_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "pred"
    monkeypatch.setattr(panels, "write_image_heatmaps", interrupt_on_the_third)
    assert _predict(tiny_run, str(scans), "--out", str(out)) == 130
    err = capsys.readouterr().err
    assert f"scrd predict: interrupted after 2 new images (2 of 4 now in {out / PREDICTIONS_FILE}); " in err
    assert "run the same command again to continue" in err
    monkeypatch.setattr(panels, "write_image_heatmaps", real)
    assert _predict(tiny_run, str(scans), "--out", str(out)) == 0
    assert "scored 2 new images (2 already scored by an earlier run, kept)" in capsys.readouterr().out
    assert len(_rows(out / PREDICTIONS_FILE)) == 4


def test_fresh_deletes_only_what_predict_wrote(tiny_run, scans, tmp_path):
    out = tmp_path / "pred"
    assert _predict(tiny_run, str(scans), "--out", str(out)) == 0
    mine = out / HEATMAP_DIR / "my-own-figure.png"
    shutil.copy(scans / "test_normal_0000.png", mine)  # a user's file, not marked
    (out / PANEL_DIR / "notes.txt").write_text("keep me")
    orphan = out / PANEL_DIR / "orphan.png"  # ours (marked), though no CSV row names it
    shutil.copy(next((out / PANEL_DIR).glob("test_*.png")), orphan)
    assert _predict(tiny_run, str(scans), "--out", str(out), "--fresh", "--no-heatmaps") == 0
    assert mine.is_file() and (out / PANEL_DIR / "notes.txt").read_text() == "keep me" and not orphan.exists()
    assert sorted(p.name for p in (out / HEATMAP_DIR).iterdir()) == [OUTPUT_MARKER, mine.name]
    assert not list((out / PANEL_DIR).glob("*.png")) and len(_rows(out / PREDICTIONS_FILE)) == 4


# ------------------------------------------------------------------- 10. a lighter set-up for CPU users
def test_the_readme_links_a_cpu_only_install():
    readme = (ROOT / "README.md").read_text()
    first = "pip install torch==2.14.1 torchvision==0.29.1 && pip install -e ."
    assert first in readme and "(docs/install.md)" in readme
    install = (ROOT / "docs" / "install.md").read_text()
    cpu = "pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu"
    assert cpu in install and "not run" in install.lower()


def test_the_end_of_training_says_what_it_does(phantom_data, tmp_path, capfd):
    """Fitting the bank, measuring the statistics and scoring the held-out images each show themselves
    (they were silent for minutes); --no-progress keeps them quiet."""
    from helpers import tiny_config

    from scrd.training.train import train

    config = tiny_config("denoising_knn", train__iterations=2, train__holdout_fraction=0.25)
    train(config, phantom_data, tmp_path / "loud", progress=True)
    err = capfd.readouterr().err
    for phase in ("memory bank", "measuring the scoring's normal statistics", "scoring the 4 held-out normal images"):
        assert phase in err, phase
    train(config, phantom_data, tmp_path / "quiet", progress=False)
    assert "measuring" not in capfd.readouterr().err
