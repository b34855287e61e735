"""What watches a training run: evaluation on a labelled set (``train.eval_every``) and the
label-free criterion (``train.select_every``), and which model the run keeps in the end."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import Config
from ..data.layouts import load_samples
from ..errors import TrainingError
from ..evaluation.metrics import oracle_metrics
from ..evaluation.normal_reference import NormalReference
from ..evaluation.scored_set import score_samples
from ..filenames import BEST_ON_TEST_DIR, EVAL_LOG, MODEL_META
from ..runs.csv_log import CsvLog
from ..runs.runtime import Runtime
from ..storage import read_json
from .data import TrainingImages
from .selection import LabelFreeMonitor


class Monitors:
    """What watches training: evaluation on a labelled set (eval_every) and the label-free criterion
    (select_every), and which model the run keeps."""

    def __init__(self, config: Config, evaluation: EvalMonitor | None, label_free: LabelFreeMonitor | None) -> None:
        self.config, self.evaluation, self.label_free = config, evaluation, label_free

    @classmethod
    def create(cls, config: Config, images: TrainingImages, run_dir: Path, eval_source, eval_split: str) -> Monitors:
        tc = config.train
        normals = images.holdout or images.fit  # the reference of scoring.scale_fusion's statistics
        evaluation = EvalMonitor.create(config, eval_source, eval_split, run_dir, normals) if tc.eval_every else None
        label_free = LabelFreeMonitor(config, images.holdout, run_dir) if tc.select_every else None
        return cls(config, evaluation, label_free)

    def open(self, start: int, model) -> None:
        if self.evaluation is not None:
            self.evaluation.open(start)
        if self.label_free is not None:
            self.label_free.open(start, model)

    def after(self, it: int, model, device: torch.device) -> bool:
        """Evaluate what is due at iteration ``it``; True when training should stop early."""
        tc, stop = self.config.train, False
        if self.label_free is not None and it % tc.select_every == 0:
            stop = self.label_free.evaluate(model, device, it)
        if self.evaluation is not None and it % tc.eval_every == 0:
            self.evaluation.evaluate(model, device, it)
        return stop

    def select(self, model) -> str:
        """Load the selected weights into ``model`` (train.selection = label_free); returns the note."""
        if self.config.train.selection == "label_free" and self.label_free.best_state is not None:
            model.load_state_dict(self.label_free.best_state)
            return self.label_free.selection_note()
        return "final checkpoint (never selected on test labels)"

    def close(self) -> None:
        for monitor in (self.evaluation, self.label_free):
            if monitor is not None:
                monitor.close()


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
        scored = score_samples(detector, self.samples, Runtime(batch_size=self.config.train.batch_size))
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
