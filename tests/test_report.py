"""The HTML report, the figures and the heat-map panels: what a reader of them relies on."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from scrd.cli import main
from scrd.errors import InputError
from scrd.filenames import (
    ALPHA_FILE,
    HEATMAP_DIR,
    HISTOGRAM_FILE,
    METRICS_FILE,
    MODEL_META,
    PANEL_DIR,
    PREDICTIONS_FILE,
    REPORT_FILE,
    ROC_FILE,
    SCORES_FILE,
    TRAIN_LOG,
)
from scrd.reporting.panels import PANEL_PX
from scrd.runs.run_logs import read_scores, read_train_log


@pytest.fixture(scope="module")
def evaluation(tiny_run, phantom_data, tmp_path_factory):
    """The tiny run evaluated on its phantom test set, through the command line."""
    out = tmp_path_factory.mktemp("evaluation") / "eval"
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(phantom_data), "--out", str(out)]) == 0
    return out


def _images(page: str) -> list[bytes]:
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in sources), [s[:40] for s in sources]
    return [base64.b64decode(s.split(",", 1)[1]) for s in sources]


def _gallery_order(page: str, heading: str) -> list[str]:
    """File names shown in one gallery row, in page order."""
    row = page.split(heading, 1)[1].split("<h3>", 1)[0].split("<h2>", 1)[0]
    return re.findall(r"<figcaption>([^:<]+):", row)


def test_evaluate_writes_a_self_contained_report(evaluation, tiny_run):
    page = (evaluation / REPORT_FILE).read_text()
    # nothing to fetch: every image is embedded and decodes, no stylesheet, script or link outside
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    assert "http://" not in page and "https://" not in page
    images = [Image.open(io.BytesIO(png)) for png in _images(page)]
    assert all(i.format == "PNG" and min(i.size) > 100 for i in images)
    # ROC, histogram, α and training curves, and 4 + 4 gallery panels
    assert len(images) == 4 + 4 + 4
    # the two thresholds are named for what they are, and the teacher weights are stated
    assert "ORACLE threshold: best F1 chosen on this evaluated set itself" in page
    assert "Calibrated threshold: from normal images only" in page
    meta = json.loads((tiny_run / MODEL_META).read_text())
    assert meta["teacher_weights"] in page
    metrics = json.loads((evaluation / METRICS_FILE).read_text())
    assert f"{metrics['auroc']:.4f}" in page and f"{metrics['calibrated_threshold']['threshold']:.6g}" in page


def test_gallery_shows_highest_normal_and_lowest_abnormal(evaluation):
    page = (evaluation / REPORT_FILE).read_text()
    scores = read_scores(evaluation / SCORES_FILE)
    order = np.argsort(-scores.scores)
    normal = [scores.paths[i] for i in order if scores.labels[i] == 0][:4]
    abnormal = [scores.paths[i] for i in order[::-1] if scores.labels[i] == 1][:4]
    assert _gallery_order(page, "Highest-scoring normal images") == normal
    assert _gallery_order(page, "Lowest-scoring abnormal images") == abnormal


def test_evaluate_writes_its_figures_and_can_skip_the_report(tiny_run, phantom_data, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(tiny_run), "--data", str(phantom_data), "--out", str(out), "--no-report"]
    assert main(args) == 0
    for name in (ROC_FILE, HISTOGRAM_FILE, ALPHA_FILE):
        assert Image.open(out / name).size[0] >= 400, name
    assert not (out / REPORT_FILE).exists()


def test_report_command_without_evaluation(tiny_run, copy_run, tmp_path, capsys):
    run = copy_run(tiny_run)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {run / REPORT_FILE}"
    page = (run / REPORT_FILE).read_text()
    assert len(_images(page)) == 1  # the training curves
    assert "no evaluation given" in page


def test_report_command_refuses_what_is_not_an_evaluation(tiny_run, evaluation, tmp_path, capsys):
    assert main(["report", str(tiny_run), "--eval", str(tmp_path)]) == 2
    assert f"{tmp_path}: no {METRICS_FILE} here" in capsys.readouterr().err
    # a scores.csv another tool wrote: named, with the missing columns
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / METRICS_FILE).write_text((evaluation / METRICS_FILE).read_text())
    (foreign / SCORES_FILE).write_text("file,prob\na.png,0.3\n")
    assert main(["report", str(tiny_run), "--eval", str(foreign), "--out", str(tmp_path / "r.html")]) == 2
    assert f"{foreign / SCORES_FILE}: not a file scrd wrote: columns path, label, score" in capsys.readouterr().err


def test_report_refuses_an_evaluation_of_another_model(tiny_run, copy_run, evaluation, capsys):
    other = copy_run(tiny_run)
    assert main(["report", str(other), "--eval", str(evaluation), "--out", str(other / "r.html")]) == 2
    assert "this evaluation is of" in capsys.readouterr().err


def test_train_log_is_read_column_by_column(tiny_run, tmp_path):
    log = read_train_log(tiny_run / TRAIN_LOG)
    assert log["iteration"].tolist() == [2.0, 4.0, 6.0]  # the tiny run logs every 2 of 6 iterations
    assert np.allclose(log["alpha_1"] + log["alpha_2"] + log["alpha_3"], 1.0, atol=1e-3)
    broken = tmp_path / TRAIN_LOG
    lines = (tiny_run / TRAIN_LOG).read_text().splitlines()
    broken.write_text("\n".join([lines[0], lines[1].replace(lines[1].split(",")[1], "oops", 1)]) + "\n")
    with pytest.raises(InputError, match=rf"{re.escape(str(broken))}: line 2, column loss: 'oops' is not a number"):
        read_train_log(broken)


def test_predict_writes_legible_panels_beside_plain_overlays(tiny_run, phantom_data, tmp_path):
    images = sorted((phantom_data / "images").glob("test_*.png"))[:3]
    out = tmp_path / "pred"
    assert main(["predict", *map(str, images), "--model", str(tiny_run), "--out", str(out)]) == 0
    with open(out / PREDICTIONS_FILE) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for row in rows:
        assert row["heatmap"].startswith(HEATMAP_DIR + "/") and (out / row["heatmap"]).is_file()
        assert row["panel"].startswith(PANEL_DIR + "/")
        width, height = Image.open(out / row["panel"]).size
        assert height >= PANEL_PX >= 256 and width >= 3 * PANEL_PX  # three panels, each legible
    plain = tmp_path / "plain"
    assert main(["predict", *map(str, images), "--model", str(tiny_run), "--out", str(plain), "--no-panels"]) == 0
    assert not list((plain / PANEL_DIR).glob("*")) and len(list((plain / HEATMAP_DIR).glob("*.png"))) == 3


def test_report_says_so_when_the_evaluated_images_moved(tiny_run, evaluation, tmp_path):
    from scrd.reporting.report import write_report

    moved = tmp_path / "eval"
    moved.mkdir()
    metrics = json.loads((evaluation / METRICS_FILE).read_text())
    (moved / METRICS_FILE).write_text(json.dumps({**metrics, "data": str(tmp_path / "gone")}))
    (moved / SCORES_FILE).write_text((evaluation / SCORES_FILE).read_text())
    with pytest.warns(UserWarning, match="gallery left out"):
        page = write_report(tiny_run, moved).read_text()
    assert "gallery left out: the evaluated images could not be found again" in page
    assert len(_images(page)) == 4  # the figures are still there
    assert "could not be read again for its panel" in page
