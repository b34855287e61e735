"""The lists of images a run writes (``train_samples.csv``, ``holdout_samples.csv``) and reads back:
which images a model was trained on and which it held out, by a key that survives a moved dataset path."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..data.layouts import Sample
from ..storage import atomic_write

SAMPLE_FIELDS = ("key", "path", "frame", "id", "label")


def sample_key(sample: Sample) -> str:
    """The sample's key with an absolute path: the same image however the dataset path was spelt."""
    return sample.key.replace(str(sample.path), os.path.abspath(sample.path), 1)


def write_sample_list(path: Path, samples: list[Sample]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(SAMPLE_FIELDS)
            for s in samples:
                w.writerow(
                    [
                        sample_key(s),
                        os.path.abspath(s.path),
                        "" if s.frame is None else s.frame,
                        s.id,
                        "" if s.label is None else s.label,
                    ]
                )

    atomic_write(path, write)


def read_sample_list(path: Path) -> list[Sample]:
    """The samples of a list written by :func:`write_sample_list`."""
    with open(path, newline="") as f:
        return [
            Sample(
                Path(r["path"]),
                None if r["label"] == "" else int(r["label"]),
                r["id"],
                None if r["frame"] == "" else int(r["frame"]),
            )
            for r in csv.DictReader(f)
        ]
