"""Statistics of normal images that some scoring options measure maps against.

``scoring.normalize = scale`` needs each scale map's mean and std over normal images, and
``scoring.scale_fusion`` ``normal_sum`` / ``normal_softmax`` each scale's image-score mean and std.
Training stores both for its own scoring, from the run's held-out normal images (out of sample) when
it has them; scoring variants asked for later (``scrd experiment`` scorings) are measured here from
the same images of the run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import torch

from ..config import Config
from ..data.dataset import ImageDataset, make_loader
from ..detector import Detector, resolve_model_path
from ..errors import InputError, TrainingError
from ..filenames import HOLDOUT_SAMPLES, TRAIN_SAMPLES
from ..runs.sample_lists import read_sample_list
from ..scoring.bank_fusion import bank_statistics_key
from ..scoring.scale_fusion import statistics_key

REFERENCE_COUNT = 200  # normal images at most: the statistics are means and stds, 200 pin them well


def normal_batches(detector: Detector, samples: list, count: int = REFERENCE_COUNT) -> Iterator[torch.Tensor]:
    dataset = ImageDataset(list(samples)[:count], detector.image_size, data=detector.config.data)
    return (b["image"] for b in make_loader(dataset, 16) if len(b["image"]))


def normal_statistics(detector: Detector, samples: list, count: int = REFERENCE_COUNT) -> dict[str, Any]:
    """Per-scale map statistics (``scoring.normalize = scale``) and, for the detector's own scoring,
    per-scale image-score statistics (``scoring.scale_fusion``) over normal images: the run's held-out
    images when it has them, else its first ``count`` training images."""
    own = [] if detector.is_memory_bank else [detector.config.scoring]  # one map: nothing to fuse
    stats = detector.measure_normal_statistics(normal_batches(detector, samples, count), own)
    if not own:
        del stats["scale_scores"]
    if detector.has_memory_bank:  # a second pass: the student's fused map needs the statistics just measured
        stats["memory_bank"] = detector.measure_bank_statistics(normal_batches(detector, samples, count), own)
    return stats


class NormalReference:
    """The normal images a detector over weights in training measures its scale-score statistics on
    (``scoring.scale_fusion``): the run's held-out images, else its first training images."""

    def __init__(self, config: Config, samples: list) -> None:
        self.config, self.samples = config, list(samples)[:REFERENCE_COUNT]

    def detector(self, model: torch.nn.Module, device: torch.device) -> Detector:
        """A detector over ``model`` as it is now, its statistics measured where its scoring needs them."""
        detector = Detector.for_training(model, self.config, device)
        if self.config.scoring.scale_fusion in ("normal_sum", "normal_softmax") and not detector.is_memory_bank:
            if len(self.samples) < 2:
                raise TrainingError(
                    f"scoring.scale_fusion = {self.config.scoring.scale_fusion} needs at least 2 normal images "
                    "to measure each scale's score statistics on"
                )
            detector.measure_scale_scores(normal_batches(detector, self.samples))
        return detector


def reference_samples(model: str | Path) -> list:
    """The normal images a run's statistics come from: its held-out list, else its training list."""
    run_dir = resolve_model_path(model).parent
    for name in (HOLDOUT_SAMPLES, TRAIN_SAMPLES):
        if (run_dir / name).is_file() and (samples := read_sample_list(run_dir / name)):
            return samples
    raise InputError(
        f"{run_dir}: no {HOLDOUT_SAMPLES} or {TRAIN_SAMPLES} to measure normal-image statistics on; "
        "scale_fusion scorings other than the model's own need the run directory that training wrote"
    )


def ensure_scale_score_statistics(detector: Detector, model: str | Path, options: list[dict[str, Any]]) -> None:
    """Measure, from the run's normal images, the per-scale image-score statistics (and, for a memory
    bank beside the student, both maps' statistics) that scoring ``options`` (as scrd experiment's
    scorings give them) need and the model does not store."""
    if detector.is_memory_bank:
        return
    scorings = [dataclasses.replace(detector.config.scoring, **option) for option in options]
    stored = detector.metadata.get("normal_statistics", {}).get("scale_scores", {})
    needed = {
        statistics_key(s): s
        for s in scorings
        if s.scale_fusion in ("normal_sum", "normal_softmax") and statistics_key(s) not in stored
    }
    if needed:  # all in one pass over the images
        batches = normal_batches(detector, reference_samples(model))
        detector.measure_normal_statistics(batches, list(needed.values()), map_moments=False)
    if detector.has_memory_bank:
        stored = detector.metadata.get("normal_statistics", {}).get("memory_bank", {})
        needed = {bank_statistics_key(s): s for s in scorings if s.memory_bank_weight > 0}
        needed = {key: s for key, s in needed.items() if key not in stored}
        if needed:
            batches = normal_batches(detector, reference_samples(model))
            detector.measure_bank_statistics(batches, list(needed.values()))


__all__ = ["NormalReference", "ensure_scale_score_statistics", "normal_statistics", "reference_samples"]
