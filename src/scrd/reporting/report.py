"""``scrd report RUN [--eval DIR]``: gather a run's results into one self-contained HTML page.

The page (:mod:`.report_html`) holds the config summary, the teacher weights, the metrics with the
oracle and the calibrated threshold kept apart, the figures of :mod:`.plots` and a gallery of heat-
map panels: the highest-scoring normal images (false-positive suspects) and the lowest-scoring
abnormal ones (misses). Figures are drawn afresh from ``train_log.csv``, ``metrics.json`` and
``scores.csv``, so a report never shows a stale PNG; only the gallery needs the model and the images.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..detector import Detector, resolve_model_path
from ..errors import ConfigError, InputError, ScrdError
from ..filenames import (
    ALPHA_FILE,
    HISTOGRAM_FILE,
    METRICS_FILE,
    MODEL_META,
    REPORT_FILE,
    ROC_FILE,
    SCORES_FILE,
    TRAIN_LOG,
)
from ..runs.run_logs import EvaluatedScores, read_scores, read_train_log
from ..storage import atomic_write_text, read_json
from .report_data import GalleryItem, ReportData, scale_weights_label

GALLERY_SIZE = 4  # images in each of the two gallery rows


def evaluation_figures(metrics: dict[str, Any], scored: EvaluatedScores) -> dict[str, bytes]:
    """ROC (with the calibrated operating point), score histograms with the thresholds, and α per
    scale (not for the knn method, which has none)."""
    from sklearn.metrics import roc_curve

    from .plots import alpha_figure, histogram_figure, roc_figure

    labels, scores = scored.labels, scored.scores
    calibrated = metrics.get("calibrated_threshold")
    point = None
    if calibrated is not None:
        point = (1 - calibrated["specificity"], calibrated["sensitivity"], calibrated["threshold"])
    thresholds = {"oracle (best F1 on this set)": metrics["oracle_threshold"]["threshold"]}
    if calibrated is not None:
        thresholds = {"calibrated": calibrated["threshold"], **thresholds}
    figures = {}
    if len(set(labels.tolist())) == 2:
        fpr, tpr, _ = roc_curve(labels, scores)
        figures[ROC_FILE] = roc_figure(fpr, tpr, metrics["auroc"], point)
    figures[HISTOGRAM_FILE] = histogram_figure(
        scores[labels == 0], scores[labels == 1], metrics.get("score", "mean"), thresholds
    )
    if not np.isnan(scored.alpha).all():
        figures[ALPHA_FILE] = alpha_figure(scored.alpha, labels, metrics.get("alpha_label") or "scale weights")
    return figures


def _training_png(run: Path, notes: list[str]) -> bytes | None:
    from .plots import training_figure

    # a model kept in a subfolder of its run (best_on_test/, label_free_best/) shares the run's log
    for folder in (run, run.parent):
        if (folder / TRAIN_LOG).is_file():
            log = read_train_log(folder / TRAIN_LOG)
            if len(log["iteration"]):
                return training_figure(log)
            notes.append(f"{folder / TRAIN_LOG} holds no rows yet: no training curves")
            return None
    notes.append(f"no {TRAIN_LOG} in {run}: no training curves (the knn method does not train)")
    return None


def _pick(scored: EvaluatedScores, count: int) -> tuple[list[int], list[int]]:
    """Indices of the highest-scoring normal images and of the lowest-scoring abnormal ones."""
    normal = np.flatnonzero(scored.labels == 0)
    abnormal = np.flatnonzero(scored.labels == 1)
    top_normal = normal[np.argsort(-scored.scores[normal], kind="stable")][:count]
    low_abnormal = abnormal[np.argsort(scored.scores[abnormal], kind="stable")][:count]
    return top_normal.tolist(), low_abnormal.tolist()


def gallery_panels(
    detector: Detector, samples: Sequence[Any], keys: Sequence[str], threshold: float | None
) -> dict[str, bytes]:
    """Panels (PNG bytes) of the samples whose key is in ``keys``, scored again for their maps."""
    import torch

    from ..data.dataset import ImageDataset
    from .colour_scale import colour_scale
    from .panels import display_name, panel_figure

    wanted = [s for s in samples if s.key in set(keys)]
    dataset = ImageDataset(wanted, detector.image_size, data=detector.config.data, on_bad_image="skip")
    items = [item for item in (dataset[i] for i in range(len(dataset))) if not item.get("skipped")]
    if not items:
        return {}
    scored = detector.score(torch.stack([item["image"] for item in items]))
    display = detector.metadata.get("display_range")
    panels = {}
    for i, item in enumerate(items):
        amap = scored.maps[i].numpy()
        scale = colour_scale(display, threshold, amap)
        image = item["image"].permute(1, 2, 0).numpy()
        panels[item["path"]] = panel_figure(
            image,
            amap,
            scale.low,
            scale.high,
            display_name(item["path"]),
            float(scored.scores[i]),
            threshold,
            scale.note,
            scale.label,
        )
    return panels


def _check_same_model(metrics: dict[str, Any], model_path: Path, eval_dir: Path) -> None:
    evaluated = Path(metrics.get("model", ""))
    try:
        other = resolve_model_path(evaluated)
    except ScrdError:  # moved, or relative to another folder: nothing to compare with
        return
    if other.resolve() != model_path.resolve():
        raise InputError(
            f"{eval_dir / METRICS_FILE}: this evaluation is of {other}, not of {model_path}; "
            f"pass the run it evaluated or evaluate this one"
        )


def collect_report(
    run: str | Path,
    eval_dir: str | Path | None = None,
    detector: Detector | None = None,
    samples: Sequence[Any] | None = None,
    figures: dict[str, bytes] | None = None,
    gallery_size: int = GALLERY_SIZE,
    device: str = "auto",
) -> ReportData:
    """Everything the page shows. ``detector``, ``samples`` and ``figures`` are what evaluate has
    at hand already; without them the model is loaded and the images found again from metrics.json."""
    if gallery_size < 0:
        raise ConfigError(f"--gallery {gallery_size}: give a number of images, 0 or more")
    model_path = resolve_model_path(run)
    notes: list[str] = []
    data = ReportData(model_path.parent, read_json(model_path.parent / MODEL_META), None, notes=notes)
    data.training_png = _training_png(model_path.parent, notes)
    if eval_dir is None:
        notes.append("no evaluation given (scrd report RUN --eval DIR): no metrics, figures of scores or gallery")
        return data
    eval_dir = Path(eval_dir)
    if not (eval_dir / METRICS_FILE).is_file():
        raise InputError(f"{eval_dir}: no {METRICS_FILE} here; --eval expects the --out folder of scrd evaluate")
    metrics = read_json(eval_dir / METRICS_FILE)
    for key in ("auroc", "ap", "oracle_threshold", "data", "split"):
        if key not in metrics:
            raise InputError(f"{eval_dir / METRICS_FILE}: not written by scrd evaluate (no {key!r})")
    _check_same_model(metrics, model_path, eval_dir)
    if "alpha_label" not in metrics:  # written before the two kinds of weights were named apart
        from ..config import Config

        metrics["alpha_label"] = scale_weights_label(Config.from_dict(data.metadata["config"]))
    scored = read_scores(eval_dir / SCORES_FILE)
    data.metrics, data.eval_dir = metrics, eval_dir
    data.figures = figures if figures is not None else evaluation_figures(metrics, scored)

    normal_idx, abnormal_idx = _pick(scored, gallery_size)
    keys = [scored.paths[i] for i in normal_idx + abnormal_idx]
    panels: dict[str, bytes] = {}
    if keys:
        if samples is None:
            from ..data.layouts import load_samples

            if detector is None:
                detector = Detector.load(model_path, device)
            try:
                samples = load_samples(str(metrics["data"]), metrics["split"], detector.config.data)
            except (ScrdError, OSError) as exc:  # the images moved since: the page still shows the rest
                notes.append(f"gallery left out: the evaluated images could not be found again ({exc})")
                warnings.warn(notes[-1], stacklevel=2)
                samples = []
        if samples:
            assert detector is not None
            calibrated = metrics.get("calibrated_threshold")
            threshold = None if calibrated is None else float(calibrated["threshold"])
            panels = gallery_panels(detector, samples, keys, threshold)

    def item(i: int) -> GalleryItem:
        return GalleryItem(scored.paths[i], int(scored.labels[i]), float(scored.scores[i]), panels.get(scored.paths[i]))

    data.false_positive_suspects = [item(i) for i in normal_idx]
    data.misses = [item(i) for i in abnormal_idx]
    return data


def write_report(
    run: str | Path,
    eval_dir: str | Path | None = None,
    out: str | Path | None = None,
    **options: Any,
) -> Path:
    """Write the HTML page (default: ``DIR/report.html`` with an evaluation, else in the run) and
    return its path. ``options`` go to :func:`collect_report`."""
    from .report_html import render

    data = collect_report(run, eval_dir, **options)
    path = Path(out) if out is not None else (Path(eval_dir) if eval_dir is not None else data.run) / REPORT_FILE
    if path.is_dir():
        raise InputError(f"{path}: is a folder; --out expects the HTML file to write")
    atomic_write_text(path, render(data))
    return path
