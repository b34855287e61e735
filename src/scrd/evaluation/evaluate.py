"""The evaluation job: score a labelled set and report honest metrics; evaluation during training.

AUROC and AP need no threshold. F1 and accuracy need one: the best-F1 threshold *of the
evaluated set itself* (what the paper and the released code report) is an oracle and is always
labelled so; a threshold calibrated on normal images only (:mod:`.calibrate`) is the one a
deployment can use.
"""

from __future__ import annotations

import csv
import itertools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.dataset import ImageDataset, SkippedImages
from ..data.layouts import load_samples
from ..detector import Detector
from ..errors import InputError
from ..filenames import (
    METRICS_FILE,
    SCORES_FILE,
    SKIPPED_FILE,
)
from ..reporting.report_data import scale_weights_label
from ..runs.output import apply_job_options, check_writable, refuse_onnx
from ..runs.rundir import prepare_process
from ..runs.runtime import DEFAULT_RUNTIME, Runtime
from ..storage import atomic_write, remove_stale_temporaries, write_json
from .calibrate import stored_calibration
from .intervals import auroc_interval, wilson_interval
from .localisation import localisation
from .metrics import metrics_at_threshold, oracle_metrics, trivial_rule_check
from .scored_set import ScoredSet, score_samples
from .threshold_noise import threshold_noise_by_size


def alpha_statistics(alpha: np.ndarray, peak: np.ndarray | None = None) -> dict[str, Any] | None:
    """How α behaves over a set of images: its mean and spread (std over images) per scale, the
    mean largest weight (1.0 = collapsed to one scale) and how often each scale has the largest
    weight. None for a model without α (the knn method). For a spatial α, ``alpha`` holds each
    image's mean weights and ``peak`` each image's largest weight averaged over its locations, so
    a head that picks one scale at every location reads 1.0 even where the scales alternate."""
    if len(alpha) == 0 or np.isnan(alpha).all():
        return None
    largest = np.bincount(alpha.argmax(1), minlength=alpha.shape[1]) / len(alpha)
    peak = alpha.max(1) if peak is None or len(peak) != len(alpha) else peak
    return {
        "mean": [round(float(v), 4) for v in alpha.mean(0)],
        "std": [round(float(v), 4) for v in alpha.std(0)],
        "mean_max_weight": round(float(peak.mean()), 4),
        "largest_weight_share": [round(float(v), 4) for v in largest],
    }


def evaluate(
    model: str | Path,
    source: str | Path,
    out_dir: str | Path,
    split: str = "test",
    calibration_source: str | Path | None = None,
    calibration_split: str = "train",
    target_specificity: float = 0.95,
    runtime: Runtime = DEFAULT_RUNTIME,
    report: bool = True,
    show_progress: bool = False,
    data_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score the labelled ``split`` of ``source``; write metrics.json, scores.csv, the figures
    (roc.png, histogram.png, alpha.png) and, with ``report``, report.html (:mod:`.report`).

    With ``calibration_source`` a threshold is calibrated on its normal images first
    (:func:`~scrd.evaluation.calibrate.calibration`); else the model's stored threshold is used, if any.
    ``data_options`` ({"data.KEY": value}) override how the model reads files; ``show_progress``:
    a bar on stderr for each scoring phase.
    """
    from sklearn.metrics import roc_auc_score

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: --out is a file; give a folder for the evaluation results")
    check_writable(out_dir)
    refuse_onnx(model, "evaluate")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    prepare_process()
    detector = Detector.load(model, runtime.device, runtime.precision)
    apply_job_options(detector, data_options)
    if note := detector.precision_warning():
        warnings.warn(note, stacklevel=2)
    samples = load_samples(str(source), split, detector.config.data)
    unlabelled = [s for s in samples if s.label is None]
    if unlabelled:
        raise InputError(
            f"{source}: evaluation needs labels; {len(unlabelled)} images have none, e.g. {unlabelled[0].path}"
        )
    scored = score_samples(detector, samples, runtime, show_progress, "evaluate")
    if scored.skipped:
        SkippedImages(out_dir / SKIPPED_FILE).add(scored.skipped)
    if len(scored.labels) == 0:
        raise InputError(f"{source}: every image was unreadable and skipped; see {out_dir / SKIPPED_FILE}")
    labels, scores = scored.labels, scored.scores

    oracle = oracle_metrics(labels, scores)
    result: dict[str, Any] = {
        "model": str(model),
        "data": str(source),
        "split": split,
        "n_images": int(len(labels)),
        "n_normal": int((labels == 0).sum()),
        "n_abnormal": int((labels == 1).sum()),
        "auroc": oracle["auroc"],
        "auroc_interval": _auroc_interval(labels, scores),
        "ap": oracle["ap"],
        "oracle_threshold": {
            "note": "oracle: threshold chosen for best F1 on this evaluated set itself (as the paper and the "
            "released code report); optimistic, not usable for deployment",
            "threshold": oracle["threshold"],
            "f1": oracle["f1"],
            "acc": oracle["acc"],
            **trivial_rule_check(labels, scores, oracle["threshold"]),
        },
        "score": detector.config.scoring.score,
        "alpha_weighting": detector.config.scoring.alpha_weighting,
        "auroc_by_image_score": {
            "note": "the same maps reduced to an image score by their mean (SCRD), max (RD4AD, anomalib) or the "
            "mean of their top k %; 'auroc' above uses the configured score",
            **{name: float(roc_auc_score(labels, values)) for name, values in scored.by_reduction.items()},
        },
        "alpha_label": scale_weights_label(detector.config),  # which weights "alpha" describes
        "alpha": alpha_statistics(scored.alpha, scored.alpha_peak),
        "checkpoint_selection": detector.metadata.get("selection", "unknown"),
    }
    threshold_info = None
    if calibration_source is not None:
        threshold_info = stored_calibration(
            detector,
            model,
            calibration_source,
            calibration_split,
            target_specificity,
            runtime,
            show_progress,
        )
    elif detector.threshold is not None:
        threshold_info = dict(detector.metadata["calibration"])
    if threshold_info is not None:
        at = metrics_at_threshold(labels, scores, threshold_info["threshold"])
        intervals = {
            "sensitivity_interval": wilson_interval(at["tp"], at["tp"] + at["fn"]),
            "specificity_interval": wilson_interval(at["tn"], at["tn"] + at["fp"]),
            "interval_note": "95 % Wilson intervals over this set's images; 'specificity' is what the threshold "
            "reached on this set's normal images (the target applied to the calibration images)",
        }
        result["calibrated_threshold"] = {
            "note": "threshold from normal images only",
            **threshold_info,
            **at,
            **intervals,
        }
        noise = threshold_noise_by_size(
            labels, scores, int(threshold_info.get("n_images", 0)), threshold_info.get("target_specificity", 0.95)
        )
        if noise is not None:
            result["threshold_noise"] = noise
    if scored.skipped:
        result["skipped_images"] = {
            "count": len(scored.skipped),
            "list": str(out_dir / SKIPPED_FILE),
            "note": "unreadable images left out of every metric above",
        }
    found = localisation(detector, samples, runtime.batch_size, on_bad_image=runtime.on_bad_image)
    if found is not None:
        result["localisation"] = found
    if result["auroc"] < 0.5:
        warnings.warn(
            f"AUROC {result['auroc']:.4f} is below 0.5 (chance): the scores rank abnormal images "
            "lower than normal ones, so they are inverted or the model has not learnt this data",
            stacklevel=2,
        )
    write_json(out_dir / METRICS_FILE, result)
    _write_scores(out_dir / SCORES_FILE, scored)
    _write_figures_and_report(model, out_dir, result, scored, detector, samples, report)
    return result


def _auroc_interval(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any] | None:
    """The AUROC's 95 % DeLong interval (None with fewer than 2 images of a class)."""
    if min((labels == 0).sum(), (labels == 1).sum()) < 2:
        return None
    return {**auroc_interval(labels, scores), "method": "DeLong (1988), normal approximation"}


def _write_figures_and_report(
    model: str | Path,
    out_dir: Path,
    result: dict[str, Any],
    scored: ScoredSet,
    detector: Detector,
    samples: list,
    report: bool,
) -> None:
    from ..reporting.plots import save_png_bytes
    from ..reporting.report import evaluation_figures, write_report
    from ..runs.run_logs import EvaluatedScores

    figures = evaluation_figures(result, EvaluatedScores(scored.paths, scored.labels, scored.scores, scored.alpha))
    for name, png in figures.items():
        save_png_bytes(png, out_dir / name)
    if report:
        write_report(model, out_dir, detector=detector, samples=samples, figures=figures)


def _write_scores(path: Path, scored: ScoredSet) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "score", "alpha_1", "alpha_2", "alpha_3"])
            for p, label, s, a in zip(scored.paths, scored.labels, scored.scores, scored.alpha):
                w.writerow([p, int(label), repr(float(s)), *(f"{v:.4f}" for v in a)])

    atomic_write(path, write)


def normal_map_range(detector: Detector, dataset: ImageDataset, count: int = 32) -> list[float]:
    """[median, 99.9th percentile] of the map values of normal images (the run's held-out ones): the
    anchors of every heat map's colour scale (:mod:`scrd.reporting.colour_scale`), so a normal image
    does not look alarming just because its own maximum fills the scale."""
    items = (dataset[i] for i in range(len(dataset)))
    images = [item["image"] for item in itertools.islice((i for i in items if not i.get("skipped")), count)]
    if not images:
        return [0.0, 1.0]
    batch = torch.stack(images)
    maps = torch.cat([detector.score(batch[i : i + 8]).maps for i in range(0, len(batch), 8)])
    values = maps.flatten()[::7]
    return [float(values.median()), float(torch.quantile(values, 0.999))]
