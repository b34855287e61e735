"""DICOM input (``.dcm``, ``.dicom``) through pydicom, installed with ``pip install 'scrd[dicom]'``.

Grey levels follow the DICOM display pipeline, so an image looks as a viewer shows it:

1. stored values (``BitsStored`` respected, signed when ``PixelRepresentation`` is 1);
2. modality LUT: ``RescaleSlope`` / ``RescaleIntercept`` (or a Modality LUT Sequence), giving HU
   for CT; per-frame values of enhanced multi-frame objects are used when present;
3. to [0, 1]: an explicit ``data.intensity`` other than ``none`` wins (a user who asks for a
   window in HU gets it); otherwise the file's VOI LUT Sequence, else its first window
   centre/width (``VOILUTFunction`` LINEAR, LINEAR_EXACT or SIGMOID), else the full range that
   ``BitsStored`` can hold (the analogue of dividing 16-bit PNG by 65535);
4. MONOCHROME1 (white = low values) is inverted, so bone is always bright.

Multi-frame files follow ``data.dicom_frames``: ``reject`` (default, a clear error), ``first``,
``middle``, or ``all`` (each frame becomes a sample with id ``file.dcm#frame=K``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ImageReadError
from .intensity import apply_intensity, voi_window
from .registry import optional_module, register_reader

if TYPE_CHECKING:
    from ..config import DataConfig

INSTALL_HINT = "pip install 'scrd[dicom]'"
CODECS_HINT = "pip install 'scrd[dicom-codecs]'"
SUFFIXES = (".dcm", ".dicom")


def _pydicom(path: Path) -> Any:
    return optional_module("pydicom", path, "DICOM", INSTALL_HINT)


def _read_dataset(path: Path, header_only: bool = False) -> Any:
    return _pydicom(path).dcmread(str(path), stop_before_pixels=header_only)


def number_of_frames(ds: Any) -> int:
    """``NumberOfFrames`` (1 when absent or empty)."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _decoder_available(uid: Any) -> bool | None:
    """Whether pydicom (>= 3) has a working decoder for ``uid``; None when it cannot tell."""
    try:
        from pydicom.pixels import get_decoder
    except ImportError:
        return None
    try:
        return bool(get_decoder(uid).is_available)
    except NotImplementedError:
        return False
    except Exception:
        return None


def _decode(ds: Any, path: Path, frame: int, n_frames: int) -> np.ndarray:
    """The stored values of one frame, ``[H, W]`` or ``[H, W, 3]``."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(f"{path}: DICOM file has no pixel data (not an image object)", path)
    uid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    compressed = bool(uid is not None and getattr(uid, "is_compressed", False))
    name = f"{uid.name} ({uid})" if uid is not None else "unknown"
    if compressed and _decoder_available(uid) is False:
        raise ImageReadError(
            f"{path}: pixel data is compressed with transfer syntax {name} and no decoder for it is "
            f"installed; {CODECS_HINT} (pylibjpeg with its JPEG / JPEG 2000 plugins)",
            path,
        )
    try:
        try:
            from pydicom.pixels import pixel_array  # pydicom >= 3 decodes one frame only
        except ImportError:
            pixel_array = None
        if pixel_array is not None and n_frames > 1:
            arr = np.asarray(pixel_array(ds, index=frame))
        else:
            arr = np.asarray(ds.pixel_array)
            if n_frames > 1:
                arr = arr[frame]
    except ImageReadError:
        raise
    except Exception as exc:
        hint = f"; if no decoder is installed: {CODECS_HINT}" if compressed else ""
        raise ImageReadError(
            f"{path}: cannot decode pixel data (transfer syntax {name}: {type(exc).__name__}: {exc}){hint}", path
        ) from exc
    return arr


def _functional_item(ds: Any, frame: int, sequence: str) -> Any | None:
    """The item of ``sequence`` for ``frame`` in the enhanced multi-frame functional groups."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq is not None and len(seq) > index:
            inner = seq[index].get(sequence)
            if inner is not None and len(inner) > 0:
                return inner[0]
    return None


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _modality(ds: Any, frame: int, values: np.ndarray) -> np.ndarray:
    """Apply the modality LUT (rescale slope/intercept or a Modality LUT Sequence)."""
    if "ModalityLUTSequence" in ds:
        try:
            from pydicom.pixels import apply_modality_lut
        except ImportError:  # pydicom 2.x
            from pydicom.pixel_data_handlers.util import apply_modality_lut
        return np.asarray(apply_modality_lut(values, ds), dtype=np.float64)
    source = _functional_item(ds, frame, "PixelValueTransformationSequence") or ds
    slope = _first(source.get("RescaleSlope"))
    intercept = _first(source.get("RescaleIntercept"))
    out = values.astype(np.float64)
    if slope is not None and slope != 1.0:
        out = out * slope
    if intercept:
        out = out + intercept
    return out


def _stored_range(ds: Any, values: np.ndarray) -> tuple[float, float]:
    """The range of values ``BitsStored`` can hold (signed when PixelRepresentation is 1)."""
    bits = ds.get("BitsStored") or ds.get("BitsAllocated")
    if not bits or values.dtype.kind == "f":
        return float(values.min()), float(values.max())
    bits = int(bits)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _voi_lut(ds: Any, modality: np.ndarray) -> np.ndarray | None:
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    try:
        from pydicom.pixels import apply_voi
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_voi
    bits = int(seq[0].LUTDescriptor[2])
    # apply_voi expects the integer modality output; the table index is an integer anyway.
    out = np.asarray(apply_voi(np.rint(modality).astype(np.int64), ds, index=0), dtype=np.float64)
    return np.clip(out / (2.0**bits - 1), 0.0, 1.0).astype(np.float32)


def _voi_window(ds: Any, frame: int, modality: np.ndarray) -> np.ndarray | None:
    source = _functional_item(ds, frame, "FrameVOILUTSequence") or ds
    center, width = _first(source.get("WindowCenter")), _first(source.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    function = str(source.get("VOILUTFunction", "LINEAR") or "LINEAR")
    return voi_window(modality, center, max(width, 1.0) if function.upper() == "LINEAR" else width, function)


def to_unit_range(ds: Any, stored: np.ndarray, frame: int, options: "DataConfig") -> np.ndarray:
    """Stored values of one frame to float32 in [0, 1] (the module docstring gives the order)."""
    modality = _modality(ds, frame, stored)
    if options.intensity != "none":
        out = apply_intensity(modality, options.intensity, None, options.percentiles, options.window)
    else:
        out = _voi_lut(ds, modality)
        if out is None:
            out = _voi_window(ds, frame, modality)
        if out is None:
            lo, hi = _stored_range(ds, stored)
            ends = _modality(ds, frame, np.array([lo, hi]))
            out = apply_intensity(
                modality,
                "minmax" if ends.min() == ends.max() else "fixed",
                window=(float(ends.min()), float(ends.max())),
            )
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        out = 1.0 - out
    return np.asarray(out, dtype=np.float32)


def _pick_frame(path: Path, n_frames: int, frame: int | None, policy: str) -> int:
    if frame is not None:
        if not 0 <= frame < n_frames:
            raise ImageReadError(f"{path}: frame {frame} requested but the file has {n_frames}", path)
        return frame
    if n_frames == 1:
        return 0
    if policy == "first":
        return 0
    if policy == "middle":
        return n_frames // 2
    raise ImageReadError(
        f"{path}: multi-frame DICOM ({n_frames} frames); choose a frame with "
        "data.dicom_frames = first, middle or all (all: every frame becomes an image)",
        path,
    )


def read_dicom(path: Path, frame: int | None = None, options: "DataConfig | None" = None) -> np.ndarray:
    """One DICOM frame as float32 ``[H, W, 1]`` (or ``[H, W, 3]`` for colour) in [0, 1]."""
    if options is None:
        from ..config import DataConfig

        options = DataConfig()
    ds = _read_dataset(path)
    n_frames = number_of_frames(ds)
    index = _pick_frame(path, n_frames, frame, options.dicom_frames)
    stored = _decode(ds, path, index, n_frames)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric == "PALETTE COLOR":
        raise ImageReadError(f"{path}: PALETTE COLOR DICOM is not supported; convert it to RGB", path)
    if samples == 1 and stored.ndim == 2:
        out = to_unit_range(ds, stored, index, options)[:, :, None]
    elif samples == 3 and stored.ndim == 3 and stored.shape[2] == 3:
        if options.intensity == "none":
            bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
            out = (stored.astype(np.float64) / (2.0**bits - 1)).astype(np.float32)
        else:
            out = apply_intensity(stored, options.intensity, None, options.percentiles, options.window)
    else:
        raise ImageReadError(
            f"{path}: unexpected DICOM pixel layout (SamplesPerPixel {samples}, decoded shape {stored.shape})", path
        )
    return np.ascontiguousarray(out, dtype=np.float32)


def dicom_frames(path: Path, options: "DataConfig") -> list[int] | None:
    """Every frame index when ``data.dicom_frames = all`` and the file has several; else None."""
    if options.dicom_frames != "all":
        return None
    n_frames = number_of_frames(_read_dataset(path, header_only=True))
    return list(range(n_frames)) if n_frames > 1 else None


register_reader(SUFFIXES, read_dicom, configurable=True, frames=dicom_frames, frame_word="frame")
