"""What watches a training run: evaluation on a labelled set (``train.eval_every``) and the
label-free criterion (``train.select_every``), and which model the run keeps in the end."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import Config
from .evaluate import EvalMonitor
from .selection import LabelFreeMonitor
from .training_data import TrainingImages


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
