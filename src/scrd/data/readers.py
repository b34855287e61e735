"""Decode image files into float arrays holding the stored values in [0, 1].

Readers are picked by file suffix from a small registry (the MONAI pattern): the DICOM and NIfTI
readers (:mod:`.dicom`, :mod:`.nifti`) import their optional dependency only when a file of that
kind is read, so the core install stays light. A reader registered as ``configurable`` also gets
the frame (DICOM frame, NIfTI slice) and the :class:`~scrd.config.DataConfig` options; one
registered with ``frames`` can tell which frames of a file are images of their own.

With the default grey-level mapping (``data.intensity = none``) values are never clipped or
quantised: the noise synthesis that follows works in [0, 1] float space, and routing through
uint8 would lose 16-bit precision. Other mappings are in :mod:`.intensity`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFile, ImageOps

from .intensity import apply_intensity
from .registry import (
    data_options,
    file_suffix,
    frame_word,
    is_image_file,
    list_frames,
    optional_module,
    read_error,
    read_image,
    register_reader,
    supported_suffixes,
)

__all__ = [
    "PIL_SUFFIXES",
    "file_suffix",
    "frame_word",
    "is_image_file",
    "list_frames",
    "optional_module",
    "pil_stored_values",
    "pil_to_array",
    "read_image",
    "register_reader",
    "supported_suffixes",
]

if TYPE_CHECKING:
    from ..config import DataConfig

# A truncated file must fail loudly, not come back with a grey bottom half.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# The size limit is data.max_image_pixels, checked before decoding (with a message naming the
# option); Pillow's own global limit would refuse large scans with no way to allow them.
Image.MAX_IMAGE_PIXELS = None

# Divisor that maps each Pillow mode's integer range onto [0, 1].
_SCALE_8 = 255.0
_SCALE_16 = 65535.0
_MODES_16 = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_EXIF_ORIENTATION = 0x0112
# Modes Pillow can only reach by converting; the value range is 8 bits after conversion.
_CONVERT_TO_RGB = {"P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"}


def _rawmode(im: Image.Image) -> str:
    """The decoder's raw mode (e.g. 'RGB;16B'), which reveals the stored bit depth."""
    if not im.tile:
        return ""
    args = im.tile[0].args if hasattr(im.tile[0], "args") else im.tile[0][3]
    if isinstance(args, tuple):
        args = args[0] if args else ""
    return args if isinstance(args, str) else ""


def pil_stored_values(im: Image.Image) -> tuple[np.ndarray, float | None]:
    """The stored values of a loaded Pillow image as float ``[H, W, C]`` and the type's maximum.

    The maximum is the divisor of the ``none`` mapping (None for float images, kept as stored).
    Alpha is dropped (anomaly detectors here see intensity only); palette, CMYK and other colour
    spaces become RGB; mode '1' becomes 0/1.
    """
    mode = im.mode
    if mode in _MODES_16:
        # np.asarray keeps all 16 (or 32) bits; im.convert('L') would keep only 8.
        arr, scale = np.asarray(im).astype(np.float32), _SCALE_16
    elif mode == "F":
        arr, scale = np.asarray(im).astype(np.float32), None
    elif mode == "1":
        arr, scale = np.asarray(im).astype(np.float32), 1.0
    elif mode in ("L", "RGB"):
        arr, scale = np.asarray(im).astype(np.float32), _SCALE_8
    elif mode == "LA":
        arr, scale = np.asarray(im)[..., 0].astype(np.float32), _SCALE_8
    elif mode == "RGBA":
        arr, scale = np.asarray(im)[..., :3].astype(np.float32), _SCALE_8
    elif mode in _CONVERT_TO_RGB:
        arr, scale = np.asarray(im.convert("RGB")).astype(np.float32), _SCALE_8
    else:
        raise ValueError(f"unsupported Pillow mode {mode!r}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr, scale


def pil_to_array(im: Image.Image, options: "DataConfig | None" = None) -> np.ndarray:
    """Convert a loaded Pillow image to float32 ``[H, W, C]`` in [0, 1] (see :func:`read_image`)."""
    values, scale = pil_stored_values(im)
    if options is None or options.intensity == "none":
        arr = values if scale is None else values / np.float32(scale)
    else:
        arr = apply_intensity(values, options.intensity, scale, options.percentiles, options.window)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _read_pil(path: Path, frame: int | None = None, options: "DataConfig | None" = None) -> np.ndarray:
    if frame is not None:
        raise read_error(path, f"frame {frame} requested, but this file type holds one image")
    with Image.open(path) as im:
        limit = data_options(options).max_image_pixels
        if im.width * im.height > limit:
            raise read_error(
                path,
                f"image is {im.width}x{im.height} = {im.width * im.height:,} pixels, more than "
                f"data.max_image_pixels ({limit:,}), a guard against decompression bombs; if the "
                f"file is trusted, raise it, e.g. --set data.max_image_pixels={im.width * im.height}",
            )
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise read_error(path, f"has {frames} frames/pages; only single 2-D images are supported")
        raw = _rawmode(im)
        if ";16" in raw and im.mode not in _MODES_16:
            # Pillow has no 16-bit colour modes and would silently keep only the top 8 bits.
            raise read_error(
                path,
                f"16-bit colour image (raw mode {raw}) cannot be decoded "
                "losslessly by Pillow; save it as 16-bit grayscale or 8-bit",
            )
        im.load()
        if im.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            # cv2.imread, which the released SCRD code uses, honours the EXIF orientation too.
            im = ImageOps.exif_transpose(im)
        return pil_to_array(im, options)


# The suffixes Pillow reads for us (also what `scrd data prepare` looks for in raw downloads).
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
register_reader(PIL_SUFFIXES, _read_pil, configurable=True)

# The DICOM and NIfTI readers register themselves; importing them here makes every reader
# available wherever read_image is (they import pydicom / nibabel only when a file needs them).
from . import dicom, nifti  # noqa: E402, F401
