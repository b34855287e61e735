"""Unreadable images: a clear error naming the file, or with --on-bad-image skip, skipped,
listed with the reason in the output folder and counted in the summary. Never silently dropped."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers import TINY_FLAGS
from PIL import Image

from scrd.cli import main
from scrd.data.phantom import phantom_slice
from scrd.filenames import SKIPPED_FILE

FAST = [*TINY_FLAGS, "--iterations", "3"]

BAD = {
    "empty.png": "empty",
    "truncated.png": "decode",
    "notes.png": "decode",
    "tiny.png": "at least 8x8",
    "nan.tif": "NaN",
}


def _good(path, seed, lesion=False):
    image = phantom_slice(np.random.default_rng(seed), 64, lesion)
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)


def _bad(folder):
    (folder / "empty.png").write_bytes(b"")
    _good(folder / "full.png", 99)
    (folder / "truncated.png").write_bytes((folder / "full.png").read_bytes()[:200])
    (folder / "full.png").unlink()
    (folder / "notes.png").write_text("not an image")
    Image.new("L", (4, 4), 10).save(folder / "tiny.png")
    Image.fromarray(np.full((32, 32), np.nan, np.float32)).save(folder / "nan.tif")


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    for split, label, n in (("train", "normal", 16), ("test", "normal", 3), ("test", "abnormal", 3)):
        folder = root / split / label
        folder.mkdir(parents=True)
        for i in range(n):
            _good(folder / f"{label}_{i}.png", [len(split), len(label), i], label == "abnormal")
    _bad(root / "train" / "normal")
    _bad(root / "test" / "abnormal")
    return root


def _listed(path):
    with open(path, newline="") as f:
        return {row["path"].rsplit("/", 1)[-1]: row["reason"] for row in csv.DictReader(f)}


def test_default_is_an_error_that_names_the_file(dataset, tmp_path, capsys):
    assert main(["train", "--data", str(dataset), "--out", str(tmp_path / "run"), *FAST]) == 2
    err = capsys.readouterr().err
    assert any(name in err for name in BAD), err


def test_skip_lists_and_counts_every_bad_image_in_train_evaluate_and_predict(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(dataset), "--out", str(run), "--on-bad-image", "skip", *FAST]) == 0
    assert "skipped 5 unreadable images" in capsys.readouterr().out
    listed = _listed(run / SKIPPED_FILE)
    assert set(listed) == set(BAD)
    for name, words in BAD.items():
        assert name in listed[name] and words.lower() in listed[name].lower(), (name, listed[name])

    out = tmp_path / "eval"
    assert (
        main(["evaluate", "--model", str(run), "--data", str(dataset), "--out", str(out), "--on-bad-image", "skip"])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["skipped_images"]["count"] == 5 and metrics["n_images"] == 6
    assert set(_listed(out / SKIPPED_FILE)) == set(BAD)

    pred = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                str(dataset / "test"),
                "--model",
                str(run),
                "--out",
                str(pred),
                "--on-bad-image",
                "skip",
                "--no-heatmaps",
            ]
        )
        == 0
    )
    assert "scored 6 new images" in capsys.readouterr().out
    with open(pred / "predictions.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 6
    assert set(_listed(pred / SKIPPED_FILE)) == set(BAD)
