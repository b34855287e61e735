"""A real `scrd predict` process killed with SIGKILL and started again: every image scored once,
no duplicate and no partial row."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scrd.data.phantom import make_phantom_dataset
from scrd.lab.predict_memory import make_untrained_model as _make_model


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_killed_predict_resumes_without_duplicates_or_partial_rows(tmp_path):
    data = make_phantom_dataset(tmp_path / "data", n_train=240, n_test_normal=0, n_test_abnormal=0, size=64, seed=5)
    _make_model(tmp_path / "model")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "scrd.cli",
        "predict",
        str(data / "images"),
        "--model",
        str(tmp_path / "model"),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(_rows(out / "predictions.csv")) < 8 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "predict finished before it could be killed"
    done_before = len(_rows(out / "predictions.csv"))
    assert 8 <= done_before < 240

    subprocess.run(cmd, check=True, capture_output=True)
    rows = _rows(out / "predictions.csv")
    paths = [r["path"] for r in rows]
    assert len(paths) == 240 and len(set(paths)) == 240
    assert all(r["score"] and float(r["score"]) == float(r["score"]) for r in rows)
    assert len(list((out / "heatmaps").glob("*.png"))) == 240
