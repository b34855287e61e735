"""The registry of image readers, by file suffix (the MONAI pattern): which reader decodes a file,
which frames of it are images of their own, and the checks every decoded image passes.

Readers register themselves (:mod:`.readers` for Pillow's formats, :mod:`.dicom`, :mod:`.nifti`);
import :mod:`.readers`, not this module, to read files with every reader registered.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import ImageReadError

if TYPE_CHECKING:
    from ..config import DataConfig

Reader = Callable[..., np.ndarray]
# frames(path, options) -> the indices of the frames/slices to use as images, or None for a file
# that holds one image.
FrameLister = Callable[[Path, "DataConfig"], "list[int] | None"]


def read_error(path: str | Path, problem: str) -> ImageReadError:
    return ImageReadError(f"{path}: {problem}", path)


def optional_module(name: str, path: Path, what: str, install_hint: str):
    """Import an optional dependency when a file needs it; its absence names the file and the fix."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImageReadError(
            f"{path}: reading {what} needs {name}, which is not installed; {install_hint}", path
        ) from None


@dataclass(frozen=True)
class _Entry:
    reader: Reader
    configurable: bool = False
    frames: FrameLister | None = None
    frame_word: str = "frame"


_READERS: dict[str, _Entry] = {}


def register_reader(
    suffixes: tuple[str, ...] | list[str],
    reader: Reader,
    *,
    configurable: bool = False,
    frames: FrameLister | None = None,
    frame_word: str = "frame",
) -> None:
    """Make ``reader`` handle files with these suffixes (multi-dot suffixes like ``.nii.gz`` work).

    A plain reader is called as ``reader(path)``; a ``configurable`` one as
    ``reader(path, frame=..., options=DataConfig)``. Either returns float32 ``[H, W, C]``.
    ``frames`` lists the frames of a file that are images of their own; their sample ids get
    ``#<frame_word>=<index>``.
    """
    for suffix in suffixes:
        _READERS[suffix.lower()] = _Entry(reader, configurable, frames, frame_word)


def supported_suffixes() -> tuple[str, ...]:
    """Lower-case suffixes (with the dot) that :func:`read_image` accepts."""
    return tuple(sorted(_READERS))


def file_suffix(path: str | Path) -> str:
    """The longest registered suffix the file name ends with (``.nii.gz``), else its last suffix."""
    name = Path(path).name.lower()
    matches = [s for s in _READERS if name.endswith(s) and len(name) > len(s)]
    return max(matches, key=len) if matches else Path(path).suffix.lower()


def is_image_file(path: str | Path) -> bool:
    """True when the suffix has a registered reader (content is not checked)."""
    return file_suffix(path) in _READERS


def data_options(options: "DataConfig | None") -> "DataConfig":
    if options is not None:
        return options
    from ..config import DataConfig

    return DataConfig()


def list_frames(path: str | Path, options: "DataConfig | None" = None) -> tuple[str, list[int]] | None:
    """``(word, indices)`` of the frames of ``path`` to use as separate images, or None.

    None means the file is one image (or its reader handles frames itself, e.g. by rejecting
    them). Used to expand NIfTI volumes into slices and, with ``data.dicom_frames = all``,
    multi-frame DICOM files into frames.
    """
    path = Path(path)
    entry = _READERS.get(file_suffix(path))
    if entry is None or entry.frames is None:
        return None
    try:
        indices = entry.frames(path, data_options(options))
    except ImageReadError:
        raise
    except Exception as exc:
        raise read_error(path, f"cannot read ({type(exc).__name__}: {exc})") from exc
    return None if indices is None else (entry.frame_word, list(indices))


def frame_word(path: str | Path) -> str:
    """The word used in sample ids for a frame of this kind of file (``slice`` for NIfTI)."""
    entry = _READERS.get(file_suffix(path))
    return entry.frame_word if entry is not None else "frame"


def read_image(path: str | Path, frame: int | None = None, options: "DataConfig | None" = None) -> np.ndarray:
    """Read an image as float32 ``[H, W, C]`` (C = 1 or 3) with its values mapped to [0, 1].

    With the default mapping 8-bit data is divided by 255, 16-bit by 65535, float TIFF is kept as
    stored; ``options.intensity`` selects another (:mod:`.intensity`). ``frame`` picks one frame
    or slice of a multi-frame file (DICOM, NIfTI). Every failure (missing, empty, truncated, not
    an image, unsupported suffix, NaN/Inf, missing optional package) raises
    :class:`ImageReadError`.
    """
    path = Path(path)
    entry = _READERS.get(file_suffix(path))
    if entry is None:
        raise read_error(path, f"unsupported file type {path.suffix!r}; supported: {', '.join(supported_suffixes())}")
    if not path.is_file():
        raise read_error(path, "no such file" if not path.exists() else "not a file")
    if path.stat().st_size == 0:
        raise read_error(path, "file is empty (0 bytes)")
    if frame is not None and not entry.configurable:
        raise read_error(path, f"frame {frame} requested, but this file type has no frames")
    try:
        if entry.configurable:
            arr = entry.reader(path, frame=frame, options=data_options(options))
        else:
            arr = entry.reader(path)
    except ImageReadError:
        raise
    except Exception as exc:  # decoder errors come in many types (OSError, SyntaxError, ...)
        raise read_error(path, f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 3 or arr.shape[2] not in (1, 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise read_error(path, f"decoded to unexpected shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise read_error(path, "contains NaN or Inf values")
    return arr
