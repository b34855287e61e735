"""Train, evaluate and predict end to end on a small folder of 16-bit CT-like DICOM slices."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("pydicom")

from dicom_writer import write_dicom  # noqa: E402
from helpers import TINY_FLAGS  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from scrd.cli import main  # noqa: E402
from scrd.data import read_image  # noqa: E402
from scrd.data.phantom import phantom_slice  # noqa: E402

FAST = [*TINY_FLAGS, "--iterations", "3"]

GROUPS = (("train", "normal", 6), ("test", "normal", 2), ("test", "abnormal", 2))


def _ct_folder(root):
    """16-bit MONOCHROME2 slices: stored 0..4000, HU = stored - 1024, a soft-tissue-wide window."""
    for g, (split, cls, n) in enumerate(GROUPS):
        for i in range(n):
            image = phantom_slice(np.random.default_rng([g, i]), 64, lesion=cls == "abnormal")
            stored = np.round(image * 4000).astype(np.uint16)
            write_dicom(
                root / split / cls / f"IM{i:04d}.dcm",
                stored,
                intercept=-1024,
                slope=1,
                center=476,
                width=4000,
                patient_id=f"P{g}{i}",
            )
    return root


def test_train_evaluate_predict_on_dicom(tmp_path):
    root = _ct_folder(tmp_path / "ct")
    first = root / "train" / "normal" / "IM0000.dcm"
    assert read_image(first).max() <= 1 and read_image(first).shape == (64, 64, 1)
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(run), *FAST]) == 0
    assert (run / "model.pt").is_file()

    evaluation = tmp_path / "eval"
    assert main(["evaluate", "--model", str(run), "--data", str(root), "--out", str(evaluation)]) == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert (metrics["n_normal"], metrics["n_abnormal"]) == (2, 2)
    with open(evaluation / "scores.csv", newline="") as f:
        scored = list(csv.DictReader(f))
    assert metrics["auroc"] == roc_auc_score([int(r["label"]) for r in scored], [float(r["score"]) for r in scored])

    out = tmp_path / "pred"
    assert main(["predict", str(root / "test"), "--model", str(run), "--out", str(out)]) == 0
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"].split("/ct/")[1] for r in rows) == [
        "test/abnormal/IM0000.dcm",
        "test/abnormal/IM0001.dcm",
        "test/normal/IM0000.dcm",
        "test/normal/IM0001.dcm",
    ]
    assert all(np.isfinite(float(r["score"])) for r in rows)
    assert len(list((out / "heatmaps").glob("IM000*.png"))) == 4
