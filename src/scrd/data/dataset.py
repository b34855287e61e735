"""A torch Dataset over :class:`Sample` lists, and a reproducible DataLoader factory."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .layouts import Sample
from .readers import read_image
from .transforms import to_model_tensor

if TYPE_CHECKING:
    from ..config import DataConfig

UNKNOWN_LABEL = -1


class ImageDataset(Dataset):
    """Images in [0, 1] space (not normalised: noise is added first, then the loop normalises).

    Each item is ``dict(image=[C, S, S] float32, label=int (-1 unknown), index=int, path=str)``;
    ``path`` is :attr:`Sample.key` (the file, plus ``#slice=K`` for one slice of a volume).
    ``data`` (a :class:`~scrd.config.DataConfig`) sets the grey-level mapping and frame handling;
    None uses the defaults.
    """

    def __init__(self, samples: Sequence[Sample], size: int, channels: int = 3,
                 data: "DataConfig | None" = None) -> None:
        self.samples = list(samples)
        self.size = int(size)
        self.channels = int(channels)
        self.data = data

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [UNKNOWN_LABEL if s.label is None else s.label for s in self.samples]

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image = to_model_tensor(read_image(sample.path, sample.frame, self.data), self.size, self.channels)
        label = UNKNOWN_LABEL if sample.label is None else int(sample.label)
        return {"image": image, "label": label, "index": int(index), "path": sample.key}


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a DataLoader worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader whose shuffling order and worker RNGs are fixed by ``seed``."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      drop_last=drop_last, generator=generator, worker_init_fn=seed_worker)
