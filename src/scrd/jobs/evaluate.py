"""The evaluation job: score a labelled set and report honest metrics; evaluation during training.

AUROC and AP need no threshold. F1 and accuracy need one: the best-F1 threshold *of the
evaluated set itself* (what the paper and the released code report) is an oracle and is always
labelled so; a threshold calibrated on normal images only (:mod:`.calibrate`) is the one a
deployment can use.
"""

from __future__ import annotations

import csv
import itertools
import shutil
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..config import Config
from ..data.dataset import ImageDataset, SkippedImages, make_loader
from ..data.layouts import load_samples
from ..detector import Detector
from ..errors import InputError, TrainingError
from ..filenames import (
    BEST_ON_TEST_DIR,
    EVAL_LOG,
    METRICS_FILE,
    MODEL_META,
    SCORES_FILE,
    SKIPPED_FILE,
)
from ..method.metrics import metrics_at_threshold, oracle_metrics, trivial_rule_check
from ..storage import atomic_write, read_json, remove_stale_temporaries, write_json
from .csv_log import CsvLog
from .normal_reference import NormalReference, ensure_scale_score_statistics
from .rundir import prepare_process


@dataclass
class ScoredSet:
    paths: list[str]
    labels: np.ndarray  # int, -1 when unknown
    scores: np.ndarray  # float64
    alpha: np.ndarray  # [N, 3]
    by_reduction: dict[str, np.ndarray]  # image scores of the same maps: "mean" and "max"
    skipped: list[tuple[str, str]]  # (path, reason) of unreadable images, with on_bad_image=skip
    alpha_peak: np.ndarray | None = None  # [N] largest weight averaged over each image's locations
    variant_alpha: dict[str, np.ndarray] = field(default_factory=dict)  # [N, K] per weighing scoring variant


def score_samples(
    detector: Detector,
    samples: Sequence[Any],
    batch_size: int = 16,
    num_workers: int = 0,
    on_bad_image: str | None = None,
    variants: dict[str, dict[str, Any]] | None = None,
) -> ScoredSet:
    """Score every sample in batches; ``variants`` ({name: scoring options}) adds the image scores
    of other scoring options (``ScoredSet.by_reduction[name]``)."""
    dataset = ImageDataset(list(samples), detector.image_size, data=detector.config.data, on_bad_image=on_bad_image)
    loader = make_loader(dataset, batch_size, num_workers, detector.device.type == "cuda")
    paths: list[str] = []
    skipped: list[tuple[str, str]] = []
    labels, scores, alphas, peaks = [np.zeros(0, int)], [np.zeros(0)], [np.zeros((0, 3))], [np.zeros(0)]
    by_reduction: dict[str, list[np.ndarray]] = defaultdict(list)
    variant_alpha: dict[str, list[np.ndarray]] = defaultdict(list)
    for batch, scored in detector.iterate(loader, variants):
        skipped.extend(batch["skipped"])
        if scored is None:
            continue
        paths.extend(batch["path"])
        labels.append(batch["label"].numpy())
        scores.append(scored.scores.numpy())
        alphas.append(scored.alpha.numpy())
        peaks.append(scored.alpha_peak.numpy() if scored.alpha_peak is not None else scored.alpha.numpy().max(1))
        for name, values in scored.by_reduction.items():
            by_reduction[name].append(values.numpy())
        for name, values in scored.variant_alpha.items():
            variant_alpha[name].append(values.numpy())
    return ScoredSet(
        paths,
        np.concatenate(labels).astype(int),
        np.concatenate(scores),
        np.concatenate(alphas),
        {k: np.concatenate(v) for k, v in by_reduction.items()},
        skipped,
        np.concatenate(peaks),
        {k: np.concatenate(v) for k, v in variant_alpha.items()},
    )


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
    batch_size: int = 16,
    device: str = "auto",
    num_workers: int = 0,
    on_bad_image: str | None = None,
    precision: str = "auto",
    scoring_variants: dict[str, dict[str, Any]] | None = None,
    report: bool = True,
) -> dict[str, Any]:
    """Score the labelled ``split`` of ``source``; write metrics.json, scores.csv, the figures
    (roc.png, histogram.png, alpha.png) and, with ``report``, report.html (:mod:`.report`).

    With ``calibration_source`` a threshold is calibrated on its normal images first
    (:func:`~scrd.jobs.calibrate.calibration`); else the model's stored threshold is used, if any.
    """
    from sklearn.metrics import roc_auc_score

    from .calibrate import stored_calibration

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: --out is a file; give a folder for the evaluation results")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    prepare_process()
    detector = Detector.load(model, device, precision)
    ensure_scale_score_statistics(detector, model, [{}, *(scoring_variants or {}).values()])
    samples = load_samples(str(source), split, detector.config.data)
    unlabelled = [s for s in samples if s.label is None]
    if unlabelled:
        raise InputError(
            f"{source}: evaluation needs labels; {len(unlabelled)} images have none, e.g. {unlabelled[0].path}"
        )
    scored = score_samples(detector, samples, batch_size, num_workers, on_bad_image, scoring_variants)
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
            "mean of their top k %, and any scoring variants asked for; 'auroc' above uses the configured score",
            **{name: float(roc_auc_score(labels, values)) for name, values in scored.by_reduction.items()},
        },
        "alpha": alpha_statistics(scored.alpha, scored.alpha_peak),
        "alpha_by_scoring": {k: alpha_statistics(v) for k, v in scored.variant_alpha.items()},
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
            batch_size,
            num_workers,
            on_bad_image,
        )
    elif detector.threshold is not None:
        threshold_info = dict(detector.metadata["calibration"])
    if threshold_info is not None:
        at = metrics_at_threshold(labels, scores, threshold_info["threshold"])
        result["calibrated_threshold"] = {"note": "threshold from normal images only", **threshold_info, **at}
    if scored.skipped:
        result["skipped_images"] = {
            "count": len(scored.skipped),
            "list": str(out_dir / SKIPPED_FILE),
            "note": "unreadable images left out of every metric above",
        }
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


def _write_figures_and_report(
    model: str | Path,
    out_dir: Path,
    result: dict[str, Any],
    scored: ScoredSet,
    detector: Detector,
    samples: list,
    report: bool,
) -> None:
    from .plots import save_png_bytes
    from .report import evaluation_figures, write_report
    from .run_logs import EvaluatedScores

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
    """Map values on training (normal) images: a fixed colour scale for heat-map overlays, so a
    normal image does not look alarming just because its own maximum fills the scale."""
    items = (dataset[i] for i in range(len(dataset)))
    images = [item["image"] for item in itertools.islice((i for i in items if not i.get("skipped")), count)]
    if not images:
        return [0.0, 1.0]
    batch = torch.stack(images)
    maps = torch.cat([detector.score(batch[i : i + 8]).maps for i in range(0, len(batch), 8)])
    return [float(maps.min()), float(torch.quantile(maps.flatten()[::7], 0.999))]


class EvalMonitor:
    """Scores a labelled set during training (``eval_log.csv``); keeps the best-AUROC model when
    ``train.selection = best_on_test``, labelled as selected on test labels."""

    FIELDS = ["iteration", "auroc", "ap", "oracle_f1", "oracle_acc"]

    def __init__(self, config: Config, samples: list, run_dir: Path, normals: Sequence[Any] = ()) -> None:
        """``normals``: the run's normal images for the statistics its scoring may need (scale_fusion)."""
        self.config, self.samples, self.run_dir = config, samples, run_dir
        self.reference = NormalReference(config, list(normals))
        self.log: CsvLog | None = None
        self.best = -1.0

    @classmethod
    def create(
        cls, config: Config, source: str | Path | None, split: str, run_dir: Path, normals: Sequence[Any] = ()
    ) -> EvalMonitor:
        if source is None:
            raise TrainingError("train.eval_every > 0 needs an evaluation set (--eval-data)")
        samples = load_samples(str(source), split, config.data)
        if {s.label for s in samples} != {0, 1}:
            raise TrainingError(f"{source} ({split}): evaluation during training needs normal and abnormal labels")
        return cls(config, samples, run_dir, normals)

    def open(self, start: int) -> None:
        """Start logging at iteration ``start``: rows after it (a killed run's) are dropped, the best
        so far is read from the rows that survive, and a best model saved after ``start`` goes."""
        self.log = CsvLog(self.run_dir / EVAL_LOG, self.FIELDS, keep_through=start)
        self.best = max((float(r["auroc"]) for r in self.log.rows), default=-1.0)
        best_meta = self.run_dir / BEST_ON_TEST_DIR / MODEL_META
        if best_meta.is_file() and read_json(best_meta).get("iterations", 0) > start:
            shutil.rmtree(self.run_dir / BEST_ON_TEST_DIR)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    def evaluate(self, model, device: torch.device, iteration: int) -> float:
        assert self.log is not None, "call open() first"
        detector = self.reference.detector(model, device)
        scored = score_samples(detector, self.samples, self.config.train.batch_size)
        m = oracle_metrics(scored.labels, scored.scores)
        self.log.write(
            {
                "iteration": iteration,
                "auroc": f"{m['auroc']:.6f}",
                "ap": f"{m['ap']:.6f}",
                "oracle_f1": f"{m['f1']:.6f}",
                "oracle_acc": f"{m['acc']:.6f}",
            }
        )
        if self.config.train.selection == "best_on_test" and m["auroc"] >= self.best:
            self.best = m["auroc"]
            detector.save(
                self.run_dir / BEST_ON_TEST_DIR,
                {
                    "iterations": iteration,
                    "selection": f"best test AUROC ({m['auroc']:.4f}) at iteration {iteration}: SELECTED ON "
                    "TEST LABELS, so its test metrics are optimistic",
                },
            )
        return m["auroc"]
