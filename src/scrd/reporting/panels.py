"""Heat-map panels a reader can judge: original | heat map with a colour bar | overlay, titled with
the file name, score, decision and threshold.

The heat map's colour scale is anchored on normal images (:mod:`.colour_scale`): from their median
map value to the threshold's level, so a normal image does not look alarming just because its own
maximum fills the scale; values above it saturate (the colour bar says so).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..detector import decision_of
from .colour_scale import colour_scale
from .plots import _jet, figure_png, mark_png, new_figure, overlay_array, save_png_bytes

PANEL_PX = 320  # each of the three images, in pixels (at least 256, as legible as the original)


def display_name(path: str) -> str:
    """The file name of an input path, with its ``#slice=K`` part if any: what a title shows."""
    file, hash_, fragment = str(path).partition("#")
    return Path(file).name + hash_ + fragment


def decision_text(score: float, threshold: float | None) -> str:
    decision = decision_of(score, threshold)
    if decision is None:
        return "no decision (uncalibrated model: run scrd calibrate)"
    shown = decision.upper() if decision == "abnormal" else decision  # the finding stands out
    return f"{shown} (threshold {threshold:.4g})"


def panel_figure(
    image01: np.ndarray,
    amap: np.ndarray,
    vmin: float,
    vmax: float,
    name: str,
    score: float,
    threshold: float | None,
    note: str = "",
    label: str = "map value (fixed scale from normal images)",
) -> bytes:
    """PNG bytes of one panel; ``image01`` is [H, W, C] in [0, 1], ``amap`` [H, W]."""
    from matplotlib.colors import ListedColormap

    gray = image01.mean(axis=2) if image01.ndim == 3 else image01
    side = max(PANEL_PX, gray.shape[0]) / 100  # inches at 100 dpi
    bar_w, gap, top = 1.1, 0.15, 0.6  # colour bar with its label, gaps, title (inches)
    width, height = 3 * side + bar_w + 4 * gap, side + top + gap
    fig = new_figure(width, height, layout=None)  # fixed positions: 2x faster than a layout engine
    lefts = (gap, 2 * gap + side, 3 * gap + 2 * side + bar_w)
    axes = [fig.add_axes((x / width, gap / height, side / width, side / height)) for x in lefts]
    cax = fig.add_axes(((lefts[1] + side + 0.08) / width, gap / height, 0.15 / width, side / height))
    cmap = ListedColormap(_jet(np.linspace(0, 1, 256)) / 255.0)  # the colours of the plain overlays
    axes[0].imshow(gray, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_title("original", fontsize=10)
    heat = axes[1].imshow(amap, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    axes[1].set_title("anomaly map", fontsize=10)
    bar = fig.colorbar(heat, cax=cax, extend="max")
    bar.set_label(label, fontsize=8)
    axes[2].imshow(overlay_array(image01, amap, vmin, vmax), interpolation="nearest")
    axes[2].set_title("overlay", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    title = f"{name}   score {score:.4g}   {decision_text(score, threshold)}"
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=11, y=1 - 0.06 / height, va="top")
    return figure_png(fig)


def panel_png(path: str | Path, *args, **kwargs) -> None:
    """Write :func:`panel_figure` to ``path``, marked as predict's (not fsynced: many files; the CSV
    row is the record)."""
    save_png_bytes(mark_png(panel_figure(*args, **kwargs)), path, durable=False)


def write_image_heatmaps(
    out_dir: Path,
    name: str,
    source: str,
    image01: np.ndarray,
    amap: np.ndarray,
    score: float,
    threshold: float | None,
    display_range: list[float] | None,
    overlay: bool = True,
    panel: bool = True,
) -> tuple[str, str]:
    """What predict writes for the image ``source``: the plain overlay (``HEATMAP_DIR/name``) and the
    panel (``PANEL_DIR/name``); returns their paths relative to ``out_dir`` ('' for one not written)."""
    from ..filenames import HEATMAP_DIR, PANEL_DIR
    from .plots import overlay_png

    scale = colour_scale(display_range, threshold, amap)
    overlay_rel = f"{HEATMAP_DIR}/{name}" if overlay else ""
    panel_rel = f"{PANEL_DIR}/{name}" if panel else ""
    if overlay:
        overlay_png(out_dir / overlay_rel, image01, amap, scale.low, scale.high)
    if panel:
        panel_png(
            out_dir / panel_rel,
            image01,
            amap,
            scale.low,
            scale.high,
            display_name(source),
            score,
            threshold,
            scale.note,
            scale.label,
        )
    return overlay_rel, panel_rel
