"""`scrd demo` runs the whole workflow (tiny settings here; the README's command uses the defaults)."""

from __future__ import annotations

import csv
import json

from scrd.cli import main
from scrd.filenames import HEATMAP_DIR, METRICS_FILE, PANEL_DIR, PREDICTIONS_FILE, REPORT_FILE


def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--iterations", "3", "--n-train", "20", "--n-test", "4"]) == 0
    printed = capsys.readouterr().out
    for step in (
        "1/4 generated",
        "2/4 trained mobilenet_v2 for 3 iterations",
        "3/4 test set: AUROC",
        "4/4 scored every image",
        "done in",
    ):
        assert step in printed, step
    metrics = json.loads((out / "evaluation" / METRICS_FILE).read_text())
    assert (metrics["n_normal"], metrics["n_abnormal"]) == (4, 4)
    assert metrics["calibrated_threshold"]["in_sample"] is False and metrics["calibrated_threshold"]["n_images"] == 5
    with open(out / "predictions" / PREDICTIONS_FILE) as f:
        assert len(list(csv.DictReader(f))) == 28
    assert len(list((out / "predictions" / HEATMAP_DIR).glob("*.png"))) == 28
    assert len(list((out / "predictions" / PANEL_DIR).glob("*.png"))) == 28
    # the last line says where the report is, and it is there
    assert printed.strip().splitlines()[-1].endswith(str(out / "evaluation" / REPORT_FILE))
    assert (out / "evaluation" / REPORT_FILE).is_file()
    assert main(["demo", "--out", str(out)]) == 2  # never overwrites an earlier demo
