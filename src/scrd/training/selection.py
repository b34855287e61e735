"""Label-free model selection and early stopping during training.

Every ``train.select_every`` iterations the current model scores the run's held-out normal images
together with synthetic anomalies of kinds it is not trained on (:mod:`scrd.anomalies.label_free`);
the AUROC of that pseudo-task is logged to ``selection_log.csv``. With ``train.selection =
label_free`` the checkpoint with the best criterion becomes the run's model; with
``train.early_stop_patience = P`` training stops after P evaluations without a better one. No real
label is ever used.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..anomalies.label_free import validation_set
from ..config import Config
from ..data.dataset import ImageDataset
from ..detector import Detector
from ..errors import TrainingError
from ..evaluation.normal_reference import NormalReference
from ..filenames import LABEL_FREE_DIR, MODEL_META, SELECTION_LOG
from ..runs.csv_log import CsvLog
from ..scoring.head import ScoringHead
from ..storage import read_json


class LabelFreeMonitor:
    FIELDS = ["iteration", "label_free_auroc"]

    def __init__(self, config: Config, holdout: list, run_dir: Path) -> None:
        if len(holdout) < 2:
            raise TrainingError(
                "label-free selection (train.select_every) needs held-out normal images: set "
                "train.holdout_fraction so that at least 2 training images are held out"
            )
        self.config, self.run_dir = config, run_dir
        self.reference = NormalReference(config, holdout)
        dataset = ImageDataset(holdout, config.model.image_size, data=config.data)
        normals = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
        self.images, self.labels = validation_set(normals, config.train.seed)
        self.log: CsvLog | None = None
        self.best, self.best_iteration, self.best_state = -1.0, 0, None

    def open(self, start: int, model: torch.nn.Module) -> None:
        """Continue from iteration ``start``: rows after it are dropped, the best is re-read, and a best
        model saved after ``start`` (by a killed run) is removed."""
        self.log = CsvLog(self.run_dir / SELECTION_LOG, self.FIELDS, keep_through=start)
        saved = self.run_dir / LABEL_FREE_DIR
        if (saved / MODEL_META).is_file() and read_json(saved / MODEL_META).get("iterations", 0) > start:
            shutil.rmtree(saved)
        for row in self.log.rows:
            if float(row["label_free_auroc"]) > self.best:
                self.best, self.best_iteration = float(row["label_free_auroc"]), int(row["iteration"])
        if (saved / MODEL_META).is_file():
            self.best_state = Detector.load(saved, "cpu").network.state_dict()

    def criterion(self, detector: Detector) -> float:
        return label_free_auroc(detector, self.images, self.labels)

    def evaluate(self, model: torch.nn.Module, device: torch.device, iteration: int) -> bool:
        """Log the criterion at ``iteration``; returns True when training should stop early."""
        assert self.log is not None, "call open() first"
        detector = self.reference.detector(model, device)  # statistics measured once, for both uses
        value = self.criterion(detector)
        self.log.write({"iteration": iteration, "label_free_auroc": f"{value:.6f}"})
        if value > self.best:
            self.best, self.best_iteration = value, iteration
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            detector.save(self.run_dir / LABEL_FREE_DIR, {"iterations": iteration, "label_free_auroc": value})
        patience = self.config.train.early_stop_patience
        waited = (iteration - self.best_iteration) // self.config.train.select_every
        return patience > 0 and waited >= patience

    def selection_note(self) -> str:
        return (
            f"best label-free criterion (AUROC {self.best:.4f} on held-out normals vs cut-paste and blob "
            f"anomalies) at iteration {self.best_iteration}; no real labels used"
        )

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


_BATCH = 32


def head_scores(detector: Detector, images01: torch.Tensor, heads: dict[str, ScoringHead]) -> dict[str, np.ndarray]:
    """The image scores of each of ``heads`` (measured variants of the detector's head), batch by batch."""
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in heads}
    for i in range(0, len(images01), _BATCH):
        for name, out in detector.score_heads(images01[i : i + _BATCH], heads).items():
            parts[name].append(out.scores.double().cpu())
    return {name: torch.cat(p).numpy() for name, p in parts.items()}


def label_free_auroc(detector: Detector, images01: torch.Tensor, labels: np.ndarray) -> float:
    """AUROC of the detector's own score on the pseudo-task (``images01``, ``labels`` from
    :func:`validation_set`: 1 for an altered copy)."""
    return label_free_aurocs(detector, images01, labels, {"": detector.head})[""]


def label_free_aurocs(
    detector: Detector, images01: torch.Tensor, labels: np.ndarray, heads: dict[str, ScoringHead]
) -> dict[str, float]:
    """:func:`label_free_auroc` of several scoring heads from one network pass per batch."""
    scores = head_scores(detector, images01, heads)
    return {name: float(roc_auc_score(labels, values)) for name, values in scores.items()}
