"""The colour scale of every heat map scrd draws, anchored on normal images.

The bottom of the scale is the median map value of the run's held-out normal images (``display_range``
in model.json, measured at the end of training), so a normal image's typical places are not painted at
all; the top is the calibrated threshold's level (the score is a mean of the map's highest values, so
the threshold reads as a map level: red means "as high as an image the model calls abnormal"), or the
normal images' 99.9th percentile for an uncalibrated model. Values beyond saturate; the overlay fades
the heat out below the bottom, so only what departs from normal is coloured.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ColourScale(NamedTuple):
    low: float
    high: float
    label: str  # the colour bar's label: what its two ends mean
    note: str = ""  # a caveat for the title (a model without a measured range)


def colour_scale(display_range: list[float] | None, threshold: float | None, amap: np.ndarray) -> ColourScale:
    """The scale for ``amap`` of a model with this ``display_range`` ([median, 99.9th percentile] of
    normal map values) and ``threshold`` (None: uncalibrated)."""
    if display_range is None:  # a model saved before display ranges were recorded
        return ColourScale(float(amap.min()), float(amap.max()), "map value", "colour scale: this image's own range")
    low, normal_high = float(display_range[0]), float(display_range[1])
    if threshold is not None and threshold > low:
        return ColourScale(low, float(threshold), "map value: median normal (bottom) to the threshold's level (top)")
    return ColourScale(low, max(normal_high, low + 1e-12), "map value: median normal (bottom) to normal's 99.9 %")
