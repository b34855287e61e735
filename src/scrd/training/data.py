"""The training images of a run: normal-only check, the held-out split, the data fingerprint,
the decode check before training starts, and the batch order.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..config import Config
from ..data.dataset import ImageDataset, unreadable_items
from ..data.layouts import Sample, load_samples
from ..errors import TrainingError


@dataclass
class TrainingImages:
    source: str
    fingerprint: str  # of every normal image the source lists for training (see samples_fingerprint)
    fit: list[Sample]  # the images trained on
    holdout: list[Sample]  # kept out of training (train.holdout_fraction), for calibration and selection
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), data.on_bad_image = skip


def samples_fingerprint(samples: list[Sample]) -> str:
    """sha256 over the sorted (id, label, file size) of the samples: changes when files are added,
    removed, relabelled or replaced by files of another size, and is cheap for large datasets."""
    digest = hashlib.sha256()
    for s in sorted(samples, key=lambda s: s.id):
        size = s.path.stat().st_size if s.path.is_file() else -1
        digest.update(f"{s.id}\t{s.label}\t{size}\n".encode())
    return digest.hexdigest()


MAX_HOLDOUT_SHARE = 0.25  # a minimum count never takes more than this share of the normal images


def holdout_count(n: int, fraction: float, minimum: int = 0) -> int:
    """How many of ``n`` normal images are held out: ``round(n * fraction)``, raised to ``minimum``
    but not beyond a quarter of them, and never fewer than 2 (a spread needs two) while one image is
    left to train on (0 when ``fraction`` is 0)."""
    if fraction <= 0:
        return 0
    count = max(int(round(n * fraction)), min(minimum, int(n * MAX_HOLDOUT_SHARE)))
    return max(count, min(2, n - 1))


def split_holdout(
    samples: list[Sample], fraction: float, seed: int, minimum: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """(fit, holdout): :func:`holdout_count` samples, chosen by ``seed``, are held out."""
    count = holdout_count(len(samples), fraction, minimum)
    if count >= len(samples) and count:
        raise TrainingError(f"train.holdout_fraction = {fraction} would hold out all {len(samples)} training images")
    return _choose(samples, count, np.random.default_rng(seed))


def limit_images(samples: list[Sample], count: int, seed: int) -> list[Sample]:
    """At most ``count`` of ``samples`` (0: all), chosen by ``seed``, in their original order."""
    if count == 0 or count >= len(samples):
        return samples
    # a stream of its own: the held-out split of the same seed stays what it was without the limit
    return _choose(samples, count, np.random.default_rng([seed, 1]))[1]


def _choose(samples: list[Sample], count: int, rng: np.random.Generator) -> tuple[list[Sample], list[Sample]]:
    """(the others, ``count`` samples drawn by ``rng``), both in the samples' original order."""
    chosen = set(rng.permutation(len(samples))[:count].tolist())
    return ([s for i, s in enumerate(samples) if i not in chosen], [s for i, s in enumerate(samples) if i in chosen])


def load_training_images(source: str | Path, config: Config) -> TrainingImages:
    """The normal training images of ``source``, split and decode-checked (nothing is written)."""
    samples = load_samples(str(source), "train", config.data)
    abnormal = [s for s in samples if s.label == 1]
    if abnormal:
        raise TrainingError(
            f"{source}: the training split must hold normal images only; "
            f"{len(abnormal)} are labelled abnormal, e.g. {abnormal[0].path}"
        )
    fit, holdout = split_holdout(samples, config.train.holdout_fraction, config.train.seed, config.train.holdout_min)
    fit = limit_images(fit, config.train.max_images, config.train.seed)
    images = TrainingImages(str(source), samples_fingerprint(samples), fit, holdout)
    # Decode every image now, held-out ones too (training ends by measuring statistics on them): fail
    # (or skip) before training starts, not hours into it.
    checked = ImageDataset(fit + holdout, config.model.image_size, data=config.data)
    bad = unreadable_items(checked, config.train.num_workers)
    if bad:
        drop = {index for index, _, _ in bad}
        images.skipped = [(path, reason) for _, path, reason in bad]
        images.fit = [s for i, s in enumerate(fit) if i not in drop]
        images.holdout = [s for i, s in enumerate(holdout, start=len(fit)) if i not in drop]
        if not images.fit:
            raise TrainingError(
                f"{source}: no readable training image ({len(bad)} unreadable, e.g. {bad[0][1]}: {bad[0][2]})"
            )
    return images


class IterationBatches(torch.utils.data.Sampler):
    """Index batches for iterations [start, stop): epoch e is a permutation seeded by (seed, e).

    Batches are a pure function of (seed, iteration), so a resumed run continues exactly where it
    stopped. Like the released code, an epoch's last batch may be smaller (no drop_last).
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int) -> None:
        self.n, self.batch_size, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self.per_epoch = math.ceil(n / batch_size)

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[list[int]]:
        epoch, perm = -1, None
        for it in range(self.start, self.stop):
            e, pos = divmod(it, self.per_epoch)
            if e != epoch:
                g = torch.Generator().manual_seed(self.seed * 100_003 + e)
                perm, epoch = torch.randperm(self.n, generator=g).tolist(), e
            yield perm[pos * self.batch_size : (pos + 1) * self.batch_size]

    def size(self, it: int) -> int:
        """Images in the global batch of iteration ``it`` (1-based, as logged)."""
        pos = (it - 1) % self.per_epoch
        return min(self.batch_size, self.n - pos * self.batch_size)


class ShardBatches(torch.utils.data.Sampler):
    """One process's rows of each batch of ``batches`` (``span(total) -> (start, stop)``)."""

    def __init__(self, batches: IterationBatches, span: Callable[[int], tuple[int, int]]) -> None:
        self.batches, self.span = batches, span

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            start, stop = self.span(len(batch))
            yield batch[start:stop]
