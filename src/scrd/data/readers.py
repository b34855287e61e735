"""Decode image files into float arrays holding the stored values in [0, 1].

Readers are picked by file suffix from a small registry (the MONAI pattern): a DICOM or NIfTI
reader can be added with :func:`register_reader` and import its optional dependency only when a
file of that kind is read, so the core install stays light.

Values are never clipped or quantised here: the noise synthesis that follows works in [0, 1]
float space, and routing through uint8 would lose 16-bit precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFile, ImageOps

# A truncated file must fail loudly, not come back with a grey bottom half.
ImageFile.LOAD_TRUNCATED_IMAGES = False

Reader = Callable[[Path], np.ndarray]


class ImageReadError(ValueError):
    """An image file could not be decoded; the message names the file and the problem.

    The constructor takes the message first (like ValueError), so DataLoader workers can
    re-raise it in the main process with its type intact.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


def _error(path: str | Path, problem: str) -> ImageReadError:
    return ImageReadError(f"{path}: {problem}", path)


_READERS: dict[str, Reader] = {}

# Divisor that maps each Pillow mode's integer range onto [0, 1].
_SCALE_8 = 255.0
_SCALE_16 = 65535.0
_MODES_16 = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_EXIF_ORIENTATION = 0x0112
# Modes Pillow can only reach by converting; the value range is 8 bits after conversion.
_CONVERT_TO_RGB = {"P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"}


def register_reader(suffixes: tuple[str, ...] | list[str], reader: Reader) -> None:
    """Make ``reader(path) -> float32 [H, W, C]`` handle files with these suffixes."""
    for suffix in suffixes:
        _READERS[suffix.lower()] = reader


def supported_suffixes() -> tuple[str, ...]:
    """Lower-case suffixes (with the dot) that :func:`read_image` accepts."""
    return tuple(sorted(_READERS))


def is_image_file(path: str | Path) -> bool:
    """True when the suffix has a registered reader (content is not checked)."""
    return Path(path).suffix.lower() in _READERS


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as float32 ``[H, W, C]`` (C = 1 or 3) with its values scaled to [0, 1].

    8-bit data is divided by 255, 16-bit by 65535, float TIFF is kept as stored. Every failure
    (missing, empty, truncated, not an image, unsupported suffix, NaN/Inf) raises
    :class:`ImageReadError`.
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise _error(path, f"unsupported file type {path.suffix!r}; "
                                   f"supported: {', '.join(supported_suffixes())}")
    if not path.is_file():
        raise _error(path, "no such file" if not path.exists() else "not a file")
    if path.stat().st_size == 0:
        raise _error(path, "file is empty (0 bytes)")
    try:
        arr = reader(path)
    except ImageReadError:
        raise
    except Exception as exc:  # decoder errors come in many types (OSError, SyntaxError, ...)
        raise _error(path, f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 3 or arr.shape[2] not in (1, 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise _error(path, f"decoded to unexpected shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise _error(path, "contains NaN or Inf values")
    return arr


def _rawmode(im: Image.Image) -> str:
    """The decoder's raw mode (e.g. 'RGB;16B'), which reveals the stored bit depth."""
    if not im.tile:
        return ""
    args = im.tile[0].args if hasattr(im.tile[0], "args") else im.tile[0][3]
    if isinstance(args, tuple):
        args = args[0] if args else ""
    return args if isinstance(args, str) else ""


def pil_to_array(im: Image.Image) -> np.ndarray:
    """Convert a loaded Pillow image to float32 ``[H, W, C]`` in [0, 1] (see :func:`read_image`).

    Alpha is dropped (anomaly detectors here see intensity only); palette, CMYK and other colour
    spaces become RGB; mode '1' becomes 0/1.
    """
    mode = im.mode
    if mode in _MODES_16:
        # np.asarray keeps all 16 (or 32) bits; im.convert('L') would keep only 8.
        arr = np.asarray(im).astype(np.float32) / _SCALE_16
    elif mode == "F":
        arr = np.asarray(im).astype(np.float32)
    elif mode == "1":
        arr = np.asarray(im).astype(np.float32)
    elif mode == "L":
        arr = np.asarray(im).astype(np.float32) / _SCALE_8
    elif mode == "LA":
        arr = np.asarray(im)[..., 0].astype(np.float32) / _SCALE_8
    elif mode == "RGB":
        arr = np.asarray(im).astype(np.float32) / _SCALE_8
    elif mode == "RGBA":
        arr = np.asarray(im)[..., :3].astype(np.float32) / _SCALE_8
    elif mode in _CONVERT_TO_RGB:
        arr = np.asarray(im.convert("RGB")).astype(np.float32) / _SCALE_8
    else:
        raise ValueError(f"unsupported Pillow mode {mode!r}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


def _read_pil(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise _error(path, f"has {frames} frames/pages; only single 2-D images are supported")
        raw = _rawmode(im)
        if ";16" in raw and im.mode not in _MODES_16:
            # Pillow has no 16-bit colour modes and would silently keep only the top 8 bits.
            raise _error(path, f"16-bit colour image (raw mode {raw}) cannot be decoded "
                                       "losslessly by Pillow; save it as 16-bit grayscale or 8-bit")
        im.load()
        if im.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            # cv2.imread, which the released SCRD code uses, honours the EXIF orientation too.
            im = ImageOps.exif_transpose(im)
        return pil_to_array(im)


register_reader((".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"), _read_pil)
