"""Checkpoints are data, not code: a state dict (``.pt``) beside JSON metadata, written atomically.

Everything is loaded with ``torch.load(weights_only=True)``, which refuses pickled code, so a
checkpoint from a stranger cannot execute anything when it is opened.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import CheckpointError

TMP_SUFFIX = ".tmp"  # temporary files of atomic writes: ".<name>.<random>.tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None], durable: bool = True) -> None:
    """Write via ``write(tmp)`` to a temporary file in the same folder, then rename over ``path``.

    A killed process leaves either the old file or the new one, never a partial file (its
    temporary file is removed by :func:`remove_stale_temporaries` when a job starts again).
    ``durable`` also fsyncs before the rename, so the same holds after a power loss. The file gets
    the permissions of a normally created one (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        write(Path(tmp))
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete what killed atomic writes left in ``folder`` and its subfolders; returns how many."""
    removed = 0
    for stale in Path(folder).rglob(f".*{TMP_SUFFIX}"):
        if stale.is_file():
            stale.unlink()
            removed += 1
    return removed


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc


def save_tensors(path: str | Path, data: dict[str, Any]) -> None:
    """Save tensors and plain Python data (no objects) atomically."""
    atomic_write(path, lambda tmp: torch.save(data, tmp))


def load_tensors(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a file written by ``save_tensors``; refuses anything that would run code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: refused or unreadable: only plain tensors and data are accepted "
            f"(weights_only loading); {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        ) from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a mapping of tensors, got {type(data).__name__}")
    return data
