"""What every job checks about the folders it writes and the model it is given (torch-free: the
command line uses it to word errors too).

A folder that cannot be written (read-only, another user's, a path through a regular file, a full
disk) is named with the problem on one line, never as an OSError traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError

_REASONS = {
    errno.EACCES: "permission denied: it, or a folder above it, is not writable by this user",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
}


def output_error(folder: str | Path, exc: OSError, flag: str = "--out") -> str:
    """One line naming the output folder, the problem and, when it is another one, the file."""
    reason = _REASONS.get(exc.errno or 0, exc.strerror or str(exc))
    where = f" (at {exc.filename})" if exc.filename and Path(str(exc.filename)) != Path(folder) else ""
    return f"{folder}: cannot write the output folder ({flag}): {reason}{where}"


def check_writable(folder: str | Path, flag: str = "--out") -> None:
    """Refuse an output folder that cannot be made or written, before any work is done: the first
    part of the path that exists must be a folder this process may write into (nothing is created)."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        code = errno.ENOTDIR
    elif not os.access(existing, os.W_OK | os.X_OK):
        code = errno.EROFS if _read_only_mount(existing) else errno.EACCES
    else:
        return
    raise InputError(output_error(folder, OSError(code, os.strerror(code), str(existing)), flag))


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def is_within(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies in it (both resolved: links and ``..`` do not hide it)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


SEARCH_OPTIONS = ("knn.search", "knn.ivf_lists", "knn.ivf_probe")  # how a bank is searched, not what it holds


def apply_job_options(detector: Any, overrides: dict[str, Any] | None) -> None:
    """Set a job's ``--set`` options on a loaded detector: ``data.*`` (how this job reads files: a
    larger data.max_image_pixels, say) and ``knn.search`` / ``knn.ivf_*`` (how the memory bank is
    searched: the bank itself stays). A trained model's other options are fixed by its training."""
    if not overrides:
        return
    other = [key for key in overrides if not key.startswith("data.") and key not in SEARCH_OPTIONS]
    if other:
        raise ConfigError(
            f"--set {other[0]}: only data.* options (how images are read) and {', '.join(SEARCH_OPTIONS)} (how "
            "the memory bank is searched) can be set here; the model's other options were fixed when it was trained"
        )
    search = [key for key in overrides if key in SEARCH_OPTIONS]
    head = getattr(detector, "head", None)  # an ONNX Runtime detector has none: its graph is fixed
    if search and (head is None or not head.has_bank):
        why = "an exported graph always holds the exact search" if head is None else "this model has no memory bank"
        raise ConfigError(f"--set {search[0]}: {why}")
    detector.config = detector.config.with_overrides(overrides)
    if search:
        detector.head = head.with_search_of(detector.config.knn)


def refuse_onnx(model: str | Path, command: str) -> None:
    """An exported .onnx file given where a PyTorch model is read: say which flag or file to use."""
    if Path(model).suffix.lower() != ".onnx":
        return
    if command == "predict":
        raise ConfigError(f"{model}: an exported ONNX graph; score it with --backend onnxruntime")
    raise ConfigError(
        f"{model}: an exported ONNX graph; scrd {command} needs the run directory (or model.pt) it was "
        "exported from (only scrd predict scores .onnx files, with --backend onnxruntime)"
    )
