"""Grey-level mappings from stored values to the [0, 1] space the model sees.

Medical images carry physical or scanner units (Hounsfield units, 12- or 16-bit counts, float MR
intensities). How they are squeezed into [0, 1] decides what contrast the detector can learn, so
the mapping is a named, configured choice (``data.intensity``), never an implicit cast:

* ``none`` — divide by the storage type's maximum (255, 65535, or the DICOM bits-stored range);
  lossless and the same for every image, so absolute grey levels stay comparable.
* ``minmax`` — per image, lowest value to 0 and highest to 1.
* ``percentile`` — per image, the low/high percentiles to 0/1, clipped (robust to hot pixels).
* ``fixed`` — a window ``(low, high)`` in stored units (HU for CT after the DICOM rescale), clipped.

Colour images are mapped with one range over all channels, so hues do not shift.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

IntensityMode = Literal["none", "minmax", "percentile", "fixed"]
MODES = ("none", "minmax", "percentile", "fixed")


def _stretch(values: np.ndarray, low: float, high: float, clip: bool) -> np.ndarray:
    """``(v - low) / (high - low)``; a flat range maps to 0 rather than dividing by zero."""
    if not high > low:
        return np.zeros_like(values, dtype=np.float32)
    out = (values.astype(np.float64) - low) / (high - low)
    if clip:
        out = np.clip(out, 0.0, 1.0)
    return out.astype(np.float32)


def minmax(values: np.ndarray) -> np.ndarray:
    """Per-image min-max to [0, 1]."""
    return _stretch(values, float(np.min(values)), float(np.max(values)), clip=False)


def percentile(values: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """The ``low``/``high`` percentiles of the image to 0/1, clipped outside."""
    lo, hi = np.percentile(values, [low, high])
    return _stretch(values, float(lo), float(hi), clip=True)


def fixed(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """A fixed window in stored units: ``low`` to 0, ``high`` to 1, clipped outside."""
    if not high > low:
        raise ValueError(f"fixed window needs low < high, got ({low}, {high})")
    return _stretch(values, low, high, clip=True)


def apply_intensity(
    values: np.ndarray,
    mode: str,
    type_max: float | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
    window: tuple[float, float] = (0.0, 255.0),
) -> np.ndarray:
    """Map stored ``values`` to [0, 1] with ``mode`` (see the module docstring).

    ``type_max`` is the divisor for ``none`` (None keeps values as they are, e.g. float TIFF).
    """
    if mode == "none":
        arr = values.astype(np.float32)
        return arr if type_max is None else (arr / np.float32(type_max)).astype(np.float32)
    if mode == "minmax":
        return minmax(values)
    if mode == "percentile":
        return percentile(values, *percentiles)
    if mode == "fixed":
        return fixed(values, *window)
    raise ValueError(f"unknown intensity mapping {mode!r}; choose one of {list(MODES)}")


def voi_window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """A DICOM window (PS3.3 C.11.2.1.2) with output range [0, 1].

    ``LINEAR`` is the standard's default (with its half-pixel offsets), ``LINEAR_EXACT`` the plain
    linear ramp, ``SIGMOID`` the logistic curve. Unknown functions are treated as LINEAR, as the
    standard asks.
    """
    x = values.astype(np.float64)
    function = (function or "LINEAR").strip().upper()
    if function == "SIGMOID":
        if width <= 0:
            raise ValueError(f"window width must be > 0, got {width}")
        return (1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"window width must be > 0, got {width}")
        return np.clip((x - center) / width + 0.5, 0.0, 1.0).astype(np.float32)
    if width < 1:
        raise ValueError(f"window width must be >= 1 for the LINEAR function, got {width}")
    if width == 1:  # the standard's limiting case: a threshold at center - 0.5
        return (x > center - 0.5).astype(np.float32)
    return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0).astype(np.float32)
