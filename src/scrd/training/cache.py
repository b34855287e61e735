"""Caches that make a training step cheaper without changing what it computes.

Training uses no augmentation and the teacher is frozen, so two things are the same at every
epoch: each training image after decoding and resizing, and the teacher's features of it (the
clean pass, u_k). Both are computed once, before the first iteration, in the training precision
and memory format; a step then reads them by index instead of decoding files and running the
teacher. A store lives in memory while the stores fit ``train.cache_memory_gb``, else in a
memory-mapped file under ``RUN/cache/``, which a resumed run reuses when it was built for the
same data, teacher, image size and precision (``cache/meta.json``).
"""

from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config, uses_synthetic_anomalies
from ..data.dataset import ImageDataset, make_loader
from ..data.transforms import normalize
from ..device import autocast, memory_format
from ..errors import TrainingError
from ..storage import read_json, write_json

CACHE_DIR = "cache"  # inside the run directory
_META = "meta.json"
_CANNOT_FALLOCATE = {errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS}  # the filesystem, not the space
_NUMPY = {torch.float32: np.float32, torch.bfloat16: np.uint16}  # numpy has no bf16: keep its bits


class ArrayStore:
    """A [N, ...] array of one dtype, in memory or in a memory-mapped file, read by index."""

    def __init__(
        self, shape: tuple[int, ...], dtype: torch.dtype, path: Path | None = None, reuse: bool = False
    ) -> None:
        self.shape, self.dtype, self.path = tuple(shape), dtype, path
        if path is None:
            self.data: Any = torch.empty(self.shape, dtype=dtype)
        else:
            if not (reuse and path.is_file()):
                _reserve(path, self.nbytes)
            self.data = np.memmap(path, dtype=_NUMPY[dtype], mode="r+", shape=self.shape)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.finfo(self.dtype).bits // 8

    def put(self, start: int, values: torch.Tensor) -> None:
        values = values.detach().to("cpu", self.dtype).contiguous()
        if self.path is None:
            self.data[start : start + len(values)] = values
        else:
            self.data[start : start + len(values)] = (
                values.view(torch.int16).numpy().view(_NUMPY[self.dtype])
                if self.dtype == torch.bfloat16
                else values.numpy()
            )

    def take(self, indices: list[int]) -> torch.Tensor:
        if self.path is None:
            return self.data[indices]
        rows = torch.from_numpy(np.ascontiguousarray(self.data[indices]))
        return rows.view(torch.bfloat16) if self.dtype == torch.bfloat16 else rows

    def flush(self) -> None:
        if self.path is not None:
            self.data.flush()


def _reserve(path: Path, nbytes: int) -> None:
    """Create ``path`` with ``nbytes`` allocated on disk now. A memory map over a sparse file would
    only find a full disk when a page is written, and the process would die of a bus error."""
    try:
        with open(path, "wb") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, nbytes)
            except (AttributeError, OSError) as error:  # no fallocate here (macOS, Windows, some filesystems)
                if isinstance(error, OSError) and error.errno not in _CANNOT_FALLOCATE:
                    raise
                f.truncate(nbytes)  # a plain extension, sparse where the filesystem allows
    except OSError as error:
        path.unlink(missing_ok=True)
        raise TrainingError(
            f"{path}: cannot reserve {nbytes / 2**30:.2f} GiB for the training cache ({error.strerror}); free disk "
            "space there, or set train.feature_cache / train.image_cache to memory or off"
        ) from error


@dataclass
class TrainingCache:
    images: ArrayStore | None  # [N, C, S, S] float32 in [0, 1]
    features: list[ArrayStore] | None  # per scale [N, C_k, H_k, W_k], in the training precision

    def batch(self, indices: list[int], device: torch.device, channels_last: bool):
        """(images01 or None, teacher features or None) of these training images, on ``device``."""
        fmt = memory_format(channels_last)
        images = self.images.take(indices).to(device, non_blocking=True) if self.images else None
        features = None
        if self.features:
            features = [
                s.take(indices).to(device, non_blocking=True).contiguous(memory_format=fmt) for s in self.features
            ]
        return images, features


def _feature_shapes(model, config: Config, device: torch.device) -> list[tuple[tuple[int, ...], torch.dtype]]:
    size = config.model.image_size
    with torch.no_grad(), autocast(device, _precision(config, device)):
        probe = model.encode(torch.zeros(1, 3, size, size, device=device))
    return [(tuple(f.shape[1:]), f.dtype) for f in probe]


def _precision(config: Config, device: torch.device) -> str:
    from ..device import resolve_precision

    return resolve_precision(config.train.precision, device)


def build_training_cache(
    dataset: ImageDataset,
    model,
    config: Config,
    device: torch.device,
    run_dir: Path,
    identity: dict[str, Any],
    progress: bool,
    writer: bool = True,
) -> TrainingCache | None:
    """The caches ``train.feature_cache`` / ``train.image_cache`` ask for, filled (or reused from disk).

    ``writer=False`` (ranks other than 0 of a multi-process run, once rank 0 has built the cache):
    the files on disk are only read, and only the in-memory stores are filled.
    """
    tc, n = config.train, len(dataset)
    want_features = tc.feature_cache != "off"
    want_images = tc.image_cache != "off" and (uses_synthetic_anomalies(config.loss) or not want_features)
    if not (want_features or want_images):
        return None
    size = config.model.image_size
    plans: list[tuple[str, tuple[int, ...], torch.dtype, str]] = []
    if want_features:
        for k, (shape, dtype) in enumerate(_feature_shapes(model, config, device)):
            plans.append((f"features_{k + 1}", (n, *shape), dtype, tc.feature_cache))
    if want_images:
        plans.append(("images", (n, 3, size, size), torch.float32, tc.image_cache))
    cache_dir = run_dir / CACHE_DIR
    reuse = (cache_dir / _META).is_file() and read_json(cache_dir / _META) == identity
    budget = tc.cache_memory_gb * 2**30
    stores: dict[str, ArrayStore] = {}
    for name, shape, dtype, where in plans:
        nbytes = math.prod(shape) * torch.finfo(dtype).bits // 8
        in_memory = where == "memory" or (where == "auto" and nbytes <= budget)
        if in_memory:
            budget -= nbytes
            stores[name] = ArrayStore(shape, dtype)
        else:
            cache_dir.mkdir(parents=True, exist_ok=True)
            stores[name] = ArrayStore(shape, dtype, cache_dir / f"{name}.bin", reuse=reuse)
    on_disk = any(s.path is not None for s in stores.values())
    if not writer:
        if on_disk and not reuse:
            raise TrainingError(f"{cache_dir}: rank 0 did not leave a cache built for this run")
        _fill({k: s for k, s in stores.items() if s.path is None}, dataset, model, config, device, False)
    elif not (reuse and all(s.path is not None for s in stores.values())):
        _fill(stores, dataset, model, config, device, progress)
        if on_disk:
            write_json(cache_dir / _META, identity)
    features = [stores[f"features_{k}"] for k in (1, 2, 3)] if want_features else None
    return TrainingCache(stores.get("images"), features)


def _fill(
    stores: dict[str, ArrayStore], dataset: ImageDataset, model, config: Config, device: torch.device, progress: bool
) -> None:
    """Decode every training image once and run the teacher on it once (into the given stores)."""
    if not stores:
        return
    features = [k for k in (1, 2, 3) if f"features_{k}" in stores]
    loader = make_loader(dataset, 32, config.train.num_workers, device.type == "cuda")
    fmt = memory_format(config.train.channels_last)
    precision = _precision(config, device)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(dataset), desc="cache", unit="img", dynamic_ncols=True)
    start = 0
    model.eval()
    for batch in loader:
        if batch["skipped"]:
            raise TrainingError(
                f"{batch['skipped'][0][0]}: became unreadable while the cache was built: {batch['skipped'][0][1]}"
            )
        images01 = batch["image"]
        if "images" in stores:
            stores["images"].put(start, images01)
        if features:
            x = normalize(images01.to(device)).contiguous(memory_format=fmt)
            with torch.no_grad(), autocast(device, precision):
                for k, f in enumerate(model.encode(x), 1):
                    if k in features:
                        stores[f"features_{k}"].put(start, f)
        start += len(images01)
        if bar is not None:
            bar.update(len(images01))
    if bar is not None:
        bar.close()
    for store in stores.values():
        store.flush()
