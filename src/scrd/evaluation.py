"""The evaluation job: score a labelled set, report honest metrics, and calibrate thresholds.

AUROC and AP need no threshold. F1 and accuracy need one: the best-F1 threshold *of the
evaluated set itself* (what the paper and the released code report) is an oracle and is always
labelled so; a threshold calibrated on normal images only is the one a deployment can use.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .checkpoint import atomic_write, write_json
from .data import ImageDataset, SkippedImages, load_samples
from .detector import Detector
from .metrics import calibrate_threshold, metrics_at_threshold, oracle_metrics
from .runs import resolve_model_path


@dataclass
class ScoredSet:
    paths: list[str]
    labels: np.ndarray  # int, -1 when unknown
    scores: np.ndarray  # float64
    alpha: np.ndarray  # [N, 3]
    by_reduction: dict[str, np.ndarray]  # image scores of the same maps: "mean" and "max"
    skipped: list[tuple[str, str]]  # (path, reason) of unreadable images, with on_bad_image=skip


def score_samples(detector: Detector, samples: Sequence[Any], batch_size: int = 16,
                  num_workers: int = 0, on_bad_image: str | None = None) -> ScoredSet:
    dataset = ImageDataset(list(samples), detector.image_size, data=detector.config.data,
                           on_bad_image=on_bad_image)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=dataset.collate)
    paths: list[str] = []
    skipped: list[tuple[str, str]] = []
    labels, scores, alphas = [np.zeros(0, int)], [np.zeros(0)], [np.zeros((0, 3))]
    by_reduction: dict[str, list[np.ndarray]] = {"mean": [np.zeros(0)], "max": [np.zeros(0)]}
    for batch, scored in detector.iterate(loader):
        skipped.extend(batch["skipped"])
        if scored is None:
            continue
        paths.extend(batch["path"])
        labels.append(batch["label"].numpy())
        scores.append(scored.scores.numpy())
        alphas.append(scored.alpha.numpy())
        for name, values in scored.by_reduction.items():
            by_reduction[name].append(values.numpy())
    return ScoredSet(paths, np.concatenate(labels).astype(int), np.concatenate(scores),
                     np.concatenate(alphas), {k: np.concatenate(v) for k, v in by_reduction.items()}, skipped)


def alpha_statistics(alpha: np.ndarray) -> dict[str, Any]:
    """Mean and std of α per scale, and the mean largest weight (1.0 = collapsed to one scale)."""
    return {"mean": [round(float(v), 4) for v in alpha.mean(0)],
            "std": [round(float(v), 4) for v in alpha.std(0)],
            "mean_max_weight": round(float(alpha.max(1).mean()), 4)}


def normal_threshold(detector: Detector, normal_source: str | Path, split: str = "train",
                     target_specificity: float = 0.95, batch_size: int = 16,
                     num_workers: int = 0) -> dict[str, Any]:
    """A decision threshold from the normal images of ``split`` (abnormal labels are refused)."""
    samples = load_samples(str(normal_source), split, detector.config.data)
    abnormal = [s for s in samples if s.label == 1]
    if abnormal:
        raise ValueError(f"{normal_source}: calibration needs normal images only; "
                         f"{len(abnormal)} are labelled abnormal, e.g. {abnormal[0].path}")
    scores = score_samples(detector, samples, batch_size, num_workers).scores
    threshold = calibrate_threshold(scores, target_specificity)
    return {"threshold": float(threshold), "target_specificity": target_specificity,
            "source": str(normal_source), "split": split, "n_images": len(samples),
            "specificity_on_calibration_set": float(np.mean(scores < threshold))}


def calibrate(model: str | Path, normal_source: str | Path, split: str = "train",
              target_specificity: float = 0.95, batch_size: int = 16, device: str = "auto") -> dict[str, Any]:
    """Store a decision threshold from normal images only in the model's metadata."""
    detector = Detector.load(model, device)
    detector.metadata["calibration"] = normal_threshold(detector, normal_source, split, target_specificity,
                                                        batch_size)
    detector.save_metadata(resolve_model_path(model).parent)
    return detector.metadata["calibration"]


def evaluate(model: str | Path, source: str | Path, out_dir: str | Path, split: str = "test",
             calibration_source: str | Path | None = None, calibration_split: str = "train",
             target_specificity: float = 0.95, batch_size: int = 16, device: str = "auto",
             num_workers: int = 0, on_bad_image: str | None = None) -> dict[str, Any]:
    """Score the labelled ``split`` of ``source``; write metrics.json, scores.csv, roc.png, histogram.png."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from .plots import histogram_png, roc_png

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    detector = Detector.load(model, device)
    samples = load_samples(str(source), split, detector.config.data)
    unlabelled = [s for s in samples if s.label is None]
    if unlabelled:
        raise ValueError(f"{source}: evaluation needs labels; {len(unlabelled)} images have none, "
                         f"e.g. {unlabelled[0].path}")
    scored = score_samples(detector, samples, batch_size, num_workers, on_bad_image)
    if len(scored.labels) == 0:
        raise ValueError(f"{source}: every image was unreadable and skipped; see {out_dir / 'skipped.csv'}")
    labels, scores = scored.labels, scored.scores

    oracle = oracle_metrics(labels, scores)
    result: dict[str, Any] = {
        "model": str(model), "data": str(source), "split": split,
        "n_images": int(len(labels)), "n_normal": int((labels == 0).sum()), "n_abnormal": int((labels == 1).sum()),
        "auroc": oracle["auroc"], "ap": oracle["ap"],
        "oracle_threshold": {
            "note": "oracle: threshold chosen for best F1 on this evaluated set itself (as the paper and the "
                    "released code report); optimistic, not usable for deployment",
            "threshold": oracle["threshold"], "f1": oracle["f1"], "acc": oracle["acc"]},
        "score": detector.config.scoring.score, "alpha_weighting": detector.config.scoring.alpha_weighting,
        "auroc_by_image_score": {
            "note": "the same maps reduced to an image score by their mean (SCRD) or max (RD4AD, anomalib); "
                    "'auroc' above uses the configured score",
            **{name: float(roc_auc_score(labels, values)) for name, values in scored.by_reduction.items()}},
        "alpha": alpha_statistics(scored.alpha),
        "checkpoint_selection": detector.metadata.get("selection", "unknown"),
    }
    threshold_info = None
    if calibration_source is not None:
        threshold_info = normal_threshold(detector, calibration_source, calibration_split,
                                          target_specificity, batch_size, num_workers)
    elif detector.threshold is not None:
        threshold_info = dict(detector.metadata["calibration"])
    if threshold_info is not None:
        at = metrics_at_threshold(labels, scores, threshold_info["threshold"])
        result["calibrated_threshold"] = {"note": "threshold from normal images only", **threshold_info, **at}

    if scored.skipped:
        SkippedImages(out_dir / "skipped.csv").add(scored.skipped)
        result["skipped_images"] = {"count": len(scored.skipped), "list": str(out_dir / "skipped.csv"),
                                    "note": "unreadable images left out of every metric above"}
    write_json(out_dir / "metrics.json", result)
    _write_scores(out_dir / "scores.csv", scored)
    fpr, tpr, _ = roc_curve(labels, scores)
    roc_png(out_dir / "roc.png", fpr, tpr, result["auroc"])
    histogram_png(out_dir / "histogram.png", scores[labels == 0], scores[labels == 1])
    return result


def _write_scores(path: Path, scored: ScoredSet) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "score", "alpha_1", "alpha_2", "alpha_3"])
            for p, label, s, a in zip(scored.paths, scored.labels, scored.scores, scored.alpha):
                w.writerow([p, int(label), repr(float(s)), *(f"{v:.4f}" for v in a)])
    atomic_write(path, write)
