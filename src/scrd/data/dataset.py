"""A torch Dataset over :class:`Sample` lists, and a reproducible DataLoader factory."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ..errors import ConfigError, ImageReadError
from .layouts import Sample
from .readers import read_image
from .transforms import to_model_tensor

if TYPE_CHECKING:
    from ..config import DataConfig

UNKNOWN_LABEL = -1
# Smaller images hold no structure even at the teacher's finest scale (stride 4: 2 pixels);
# upsampling them to the model size would invent an image. Larger ones are resized as usual.
MIN_IMAGE_SIDE = 8


def load_image(
    path: str | Path, size: int, data: DataConfig | None = None, frame: int | None = None, channels: int = 3
) -> torch.Tensor:
    """One image file as every job reads it: decoded with the ``data`` options, checked, resized to
    ``size`` × ``size`` -> float32 [channels, size, size] in [0, 1] (not normalised)."""
    array = read_image(path, frame, data)
    if min(array.shape[:2]) < MIN_IMAGE_SIDE:
        key = f"{path}" if frame is None else f"{path} (frame {frame})"
        raise ImageReadError(
            f"{key}: image is {array.shape[1]}x{array.shape[0]} pixels; at least "
            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} are needed",
            path,
        )
    return to_model_tensor(array, size, channels)


class ImageDataset(Dataset):
    """Images in [0, 1] space (not normalised: noise is added first, then the loop normalises).

    Each item is ``dict(image=[C, S, S] float32, label=int (-1 unknown), index=int, path=str)``;
    ``path`` is :attr:`Sample.key` (the file, plus ``#slice=K`` for one slice of a volume).
    ``data`` (a :class:`~scrd.config.DataConfig`) sets the grey-level mapping and frame handling;
    None uses the defaults.

    ``on_bad_image``: ``error`` (default: an unreadable image stops the job with an error naming
    it) or ``skip`` (the item comes back as ``dict(skipped=True, path, reason)``; use
    :meth:`collate` as the DataLoader's ``collate_fn`` so batches carry a ``skipped`` list).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        size: int,
        channels: int = 3,
        data: "DataConfig | None" = None,
        on_bad_image: str | None = None,
    ) -> None:
        self.samples = list(samples)
        self.size = int(size)
        self.channels = int(channels)
        self.data = data
        self.on_bad_image = on_bad_image or (data.on_bad_image if data is not None else "error")
        if self.on_bad_image not in ("error", "skip"):
            raise ConfigError(f"on_bad_image must be 'error' or 'skip', got {self.on_bad_image!r}")

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [UNKNOWN_LABEL if s.label is None else s.label for s in self.samples]

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        try:
            image = load_image(sample.path, self.size, self.data, sample.frame, self.channels)
        except ImageReadError as exc:
            if self.on_bad_image == "error":
                raise
            return {"skipped": True, "path": sample.key, "reason": str(exc), "index": int(index)}
        label = UNKNOWN_LABEL if sample.label is None else int(sample.label)
        return {"image": image, "label": label, "index": int(index), "path": sample.key}

    def collate(self, items: list[dict]) -> dict[str, Any]:
        """Batch the readable items; list the skipped ones under ``skipped`` as (path, reason)."""
        good = [item for item in items if not item.get("skipped")]
        if good:
            batch = default_collate(good)
        else:
            batch = {
                "image": torch.empty(0, self.channels, self.size, self.size),
                "label": torch.empty(0, dtype=torch.long),
                "index": torch.empty(0, dtype=torch.long),
                "path": [],
            }
        batch["skipped"] = [(item["path"], item["reason"]) for item in items if item.get("skipped")]
        return batch


def _bad_items(items: list[dict]) -> list[tuple[int, str, str]]:
    """collate_fn of :func:`unreadable_items` (a module-level function, so workers can start
    under the spawn method)."""
    return [(i["index"], i["path"], i["reason"]) for i in items if i.get("skipped")]


def unreadable_items(dataset: ImageDataset, num_workers: int = 0) -> list[tuple[int, str, str]]:
    """Decode every image once: (index, path, reason) of those that cannot be used.

    With ``on_bad_image='error'`` the first bad image raises, naming the file; either way this
    happens before a long job starts rather than hours into it.
    """
    loader = DataLoader(
        dataset, batch_size=16, num_workers=num_workers, collate_fn=_bad_items, worker_init_fn=seed_worker
    )
    return [bad for batch in loader for bad in batch]


class SkippedImages:
    """The images a job skipped, appended to a CSV (path, reason) as they are met; nothing is
    dropped without a trace."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.seen: set[str] = set()
        if self.path.is_file():
            with open(self.path, newline="") as f:
                self.seen = {row["path"] for row in csv.DictReader(f)}

    def add(self, skipped: Sequence[tuple[str, str]]) -> None:
        new = [(p, r) for p, r in skipped if p not in self.seen]
        if not new:
            return
        first = not self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if first:
                writer.writerow(["path", "reason"])
            writer.writerows(new)
        self.seen.update(p for p, _ in new)

    @property
    def count(self) -> int:
        return len(self.seen)


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a DataLoader worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: ImageDataset, batch_size: int, num_workers: int = 0, pin_memory: bool = False, batch_sampler: Any = None
) -> DataLoader:
    """The loader every job uses: in order (or by ``batch_sampler``), skipped images collected
    per batch (:meth:`ImageDataset.collate`), decoding overlapped with compute when
    ``num_workers > 0``."""
    if batch_sampler is not None:
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            collate_fn=dataset.collate,
            worker_init_fn=seed_worker,
            persistent_workers=False,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=dataset.collate,
        worker_init_fn=seed_worker,
    )
