"""Uploaded files to model inputs, read exactly as ``scrd predict`` reads files, or a 4xx with the reason.

An upload is written to a temporary file named by its **content** (PNG, JPEG, TIFF, BMP, DICOM: many
DICOM files have no suffix at all) and read by the readers of :mod:`scrd.data` with the model's
``data`` options, the same call ``scrd predict`` makes, so a file scores the same either way. Before
decoding, the header is checked against the limits: ``data.max_image_pixels`` (a decompression bomb
is refused before its pixels are decoded; the DICOM reader itself does not check it) and a single
frame (a multi-frame DICOM or multi-page TIFF is refused unless ``data.dicom_frames`` picks one
frame, as predict does). The messages name the uploaded file, never the temporary path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.dataset import load_image
from ..errors import ImageReadError

if TYPE_CHECKING:
    import torch

    from ..config import DataConfig

# (magic bytes at offset, suffix the readers know); DICOM Part 10: 'DICM' after a 128-byte preamble
SIGNATURES = (
    (0, b"\x89PNG\r\n\x1a\n", ".png"),
    (0, b"\xff\xd8\xff", ".jpg"),
    (0, b"II*\x00", ".tif"),
    (0, b"MM\x00*", ".tif"),
    (0, b"BM", ".bmp"),
    (128, b"DICM", ".dcm"),
)
VOLUME_SUFFIXES = (".nii", ".nii.gz")
FORMATS = "PNG, JPEG, TIFF, BMP or DICOM"
DICOM_HINT = "pip install 'scrd[dicom]'"


class UploadError(Exception):
    """A bad upload: ``status`` (400 empty or malformed, 413 too large, 415 not an image, 422 an image
    that cannot be used) and the reason, naming the file."""

    def __init__(self, status: int, reason: str, file: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.file = status, reason, file


def display_name(filename: str | None, index: int) -> str:
    """The file name a client gave (no folders), or 'upload-K' without one."""
    name = Path((filename or "").replace("\\", "/")).name
    return name or f"upload-{index + 1}"


def content_suffix(data: bytes, name: str) -> str:
    """The reader's suffix for ``data`` from its content; a DICOM without preamble by its name."""
    for offset, magic, suffix in SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return suffix
    lower = name.lower()
    if lower.endswith(VOLUME_SUFFIXES):
        raise UploadError(
            415, f"{name}: a NIfTI volume; the service scores 2-D images, use scrd predict for volumes", name
        )
    if lower.endswith((".dcm", ".dicom")):  # a DICOM data set written without the Part 10 preamble
        return ".dcm"
    raise UploadError(415, f"{name}: not an image scrd reads (the content is not {FORMATS})", name)


def too_large(name: str, size: int, max_bytes: int) -> UploadError:
    return UploadError(413, f"{name}: {size:,} bytes, more than the service's --max-bytes ({max_bytes:,})", name)


def check_size(data: bytes, name: str, max_bytes: int) -> None:
    """``data``: the upload, or its first ``max_bytes + 1`` bytes."""
    if not data:
        raise UploadError(400, f"{name}: file is empty (0 bytes)", name)
    if len(data) > max_bytes:
        raise UploadError(413, f"{name}: more than the service's --max-bytes ({max_bytes:,} bytes)", name)


def _too_many_pixels(name: str, width: int, height: int, frames: int, limit: int) -> UploadError:
    pixels = width * height * frames
    return UploadError(
        413,
        f"{name}: image is {width}x{height}{f' x {frames} frames' if frames > 1 else ''} = {pixels:,} pixels, "
        f"more than data.max_image_pixels ({limit:,}) of the model's config, a guard against decompression bombs",
        name,
    )


def check_header(path: Path, suffix: str, name: str, options: "DataConfig") -> None:
    """Size and frame checks from the header alone (nothing is decoded)."""
    limit = options.max_image_pixels
    if suffix == ".dcm":
        try:
            import pydicom
        except ImportError:
            raise UploadError(
                415, f"{name}: reading DICOM needs pydicom, not installed here; {DICOM_HINT}", name
            ) from None
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
            rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
            frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
        except Exception as exc:
            raise UploadError(422, f"{name}: cannot read the DICOM header ({type(exc).__name__}: {exc})", name) from exc
        if rows * columns * frames > limit:
            raise _too_many_pixels(name, columns, rows, frames, limit)
        if frames > 1 and options.dicom_frames in ("reject", "all"):
            why = (
                "the model reads one image per file (data.dicom_frames = reject)"
                if options.dicom_frames == "reject"
                else "the model scores every frame (data.dicom_frames = all): use scrd predict, which writes a row "
                "per frame"
            )
            raise UploadError(422, f"{name}: multi-frame DICOM ({frames} frames); {why}", name)
        return
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height, frames = im.width, im.height, getattr(im, "n_frames", 1)
    except Exception as exc:
        raise UploadError(422, f"{name}: cannot read the image header ({type(exc).__name__}: {exc})", name) from exc
    if width * height > limit:
        raise _too_many_pixels(name, width, height, 1, limit)
    if frames > 1:
        raise UploadError(422, f"{name}: has {frames} frames/pages; only single 2-D images are supported", name)


@dataclass
class Prepared:
    name: str
    path: Path  # the temporary file (a DICOM heat map reads its header and full-size pixels from it)
    suffix: str
    image: "torch.Tensor"  # [3, S, S] in [0, 1], as predict's loader gives it


def prepare_upload(
    data: bytes, name: str, folder: Path, index: int, size: int, options: "DataConfig", max_bytes: int
) -> Prepared:
    """Check and decode one upload into ``folder`` (a temporary folder the caller removes)."""
    check_size(data, name, max_bytes)
    suffix = content_suffix(data, name)
    path = folder / f"upload-{index}{suffix}"
    path.write_bytes(data)
    check_header(path, suffix, name, options)
    try:
        image = load_image(path, size, options)
    except ImageReadError as exc:
        reason = str(exc).replace(str(path), name)
        raise UploadError(422, reason if reason.startswith(name) else f"{name}: {reason}", name) from exc
    return Prepared(name, path, suffix, image)


__all__ = ["Prepared", "UploadError", "content_suffix", "display_name", "prepare_upload"]
