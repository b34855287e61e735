"""The normal images a model's scoring statistics are measured on, and measuring them.

A scoring that combines scales on the scale of normal images (``scoring.scale_fusion`` standardized,
normal_sum, normal_softmax) or adds a memory bank's map reads statistics of normal images
(:mod:`scrd.scoring.statistics`). Training measures them on the run's held-out normal images, never
on the images it trained on; scoring options asked for later (the lab's columns) are measured on the
same images of the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from ..config import Config
from ..detector import Detector, resolve_model_path
from ..errors import InputError, TrainingError
from ..filenames import HOLDOUT_SAMPLES, TRAIN_SAMPLES
from ..runs.sample_lists import read_sample_list
from ..scoring.head import ScoringHead

REFERENCE_COUNT = 200  # normal images at most: the statistics are means and stds, 200 pin them well


def normal_batches(detector: Detector, samples: list, count: int = REFERENCE_COUNT) -> Iterator[torch.Tensor]:
    return (b["image"] for b in detector.loader(list(samples)[:count], 16) if len(b["image"]))


def measure_on_normals(
    detector: Detector, samples: list, heads: list[ScoringHead] | None = None, count: int = REFERENCE_COUNT
) -> int:
    """Measure the statistics of the detector's head (and of ``heads``) on the first ``count`` of
    ``samples``; returns how many images were read (0 when the scorings need none)."""
    if not any(h.needs()[k] for h in [detector.head, *(heads or [])] for k in ("map_moments", "scale_scores", "pair")):
        return 0
    if len(samples) < 2:
        raise TrainingError(
            f"the scoring (scale_fusion {detector.config.scoring.scale_fusion}"
            f"{', with a memory bank' if detector.has_memory_bank else ''}) needs at least 2 normal images "
            "to measure its statistics on"
        )
    return detector.fit_statistics(normal_batches(detector, samples, count), heads)


class NormalReference:
    """The normal images a detector over weights in training measures its statistics on (the run's
    held-out images, else its first training images): the monitors score the student as it is now."""

    def __init__(self, config: Config, samples: list) -> None:
        self.config, self.samples = config, list(samples)[:REFERENCE_COUNT]

    def detector(self, model: torch.nn.Module, device: torch.device) -> Detector:
        """A detector over ``model`` as it is now (without a memory bank), its statistics measured."""
        detector = Detector.for_training(model, self.config, device)
        measure_on_normals(detector, self.samples)
        return detector


def reference_samples(model: str | Path) -> list:
    """The normal images a run's statistics come from: its held-out list, else its training list."""
    run_dir = resolve_model_path(model).parent
    for name in (HOLDOUT_SAMPLES, TRAIN_SAMPLES):
        if (run_dir / name).is_file() and (samples := read_sample_list(run_dir / name)):
            return samples
    raise InputError(
        f"{run_dir}: no {HOLDOUT_SAMPLES} or {TRAIN_SAMPLES} to measure normal-image statistics on; "
        "scorings other than the model's own need the run directory that training wrote"
    )


__all__ = ["NormalReference", "measure_on_normals", "normal_batches", "reference_samples"]
