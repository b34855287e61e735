"""The figures of an evaluation and a run, drawn with matplotlib (Agg, no display needed): ROC with
the calibrated operating point, score histograms with the threshold (the paper's Fig. 2), training
curves from ``train_log.csv`` and the α distribution per scale. Each ``*_figure`` returns PNG bytes
(the HTML report embeds them); :func:`save_png_bytes` writes them atomically."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from ..filenames import OUTPUT_PNG_KEY
from ..storage import atomic_write
from .report_data import HEAD_ALPHA

BLUE, RED, GREEN, GREY = "#1f77b4", "#d62728", "#2ca02c", "#7f7f7f"
SCALE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c")
DPI = 100


def new_figure(width_in: float, height_in: float, layout: str | None = "constrained"):
    """A figure not registered with pyplot, so nothing global is kept and no display is asked for."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI, layout=layout)


def figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def save_png_bytes(data: bytes, path: str | Path, durable: bool = True) -> None:
    """Write atomically, so a killed run never leaves a half-written PNG behind."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data), durable)


def mark_png(data: bytes) -> bytes:
    """The PNG ``data`` with a tEXt chunk saying scrd predict wrote it (right after the header,
    where :func:`scrd.data.layouts.is_own_output` reads it), so no later predict scores it."""
    body = OUTPUT_PNG_KEY.encode("latin-1") + b"\0written by scrd predict; never scored as an input"
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    end_of_header = 8 + 8 + 13 + 4  # signature, then IHDR: length and type, 13 bytes, CRC
    return data[:end_of_header] + chunk + data[end_of_header:]


def roc_figure(
    fpr: np.ndarray, tpr: np.ndarray, auroc: float, operating_point: tuple[float, float, float] | None = None
) -> bytes:
    """``operating_point``: (false positive rate, true positive rate, threshold) of the calibrated threshold."""
    fig = new_figure(5.0, 4.6)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color=GREY, lw=1, ls="--", label="chance (AUROC 0.5)")
    ax.plot(fpr, tpr, color=BLUE, lw=2, label=f"ROC (AUROC {auroc:.4f})")
    if operating_point is not None:
        x, y, threshold = operating_point
        ax.plot(
            [x], [y], "o", color=RED, ms=8, label=f"calibrated threshold {threshold:.4g}\n(FPR {x:.3f}, TPR {y:.3f})"
        )
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", title="ROC curve")
    ax.set_xlabel("false positive rate (1 − specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return figure_png(fig)


def histogram_figure(
    normal: Sequence[float],
    abnormal: Sequence[float],
    score_name: str = "mean",
    thresholds: Mapping[str, float] | None = None,
    bins: int = 30,
) -> bytes:
    """Normal vs abnormal image scores on shared bins, with a vertical line per named threshold."""
    normal, abnormal = np.asarray(normal, float), np.asarray(abnormal, float)
    both = np.concatenate([normal, abnormal])
    edges = np.histogram_bin_edges(both, bins=bins) if len(both) else np.linspace(0, 1, bins + 1)
    fig = new_figure(6.0, 4.2)
    ax = fig.add_subplot()
    ax.hist(normal, bins=edges, color=BLUE, alpha=0.55, label=f"normal (n={len(normal)})")
    ax.hist(abnormal, bins=edges, color=RED, alpha=0.55, label=f"abnormal (n={len(abnormal)})")
    for (name, value), style in zip((thresholds or {}).items(), ("-", ":", "-.")):
        ax.axvline(value, color="black", ls=style, lw=1.5, label=f"{name} threshold {value:.4g}")
    ax.set_title("image scores: normal vs abnormal")
    ax.set_xlabel(f"anomaly score ({score_name} of the anomaly map; map units)")
    ax.set_ylabel("images (count)")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def training_figure(log: Mapping[str, np.ndarray]) -> bytes:
    """Loss, per-scale distances to the clean and the noisy teacher, α per scale and images/s over
    the iterations of a training log (:func:`~scrd.runs.run_logs.read_train_log`)."""
    it = log["iteration"]
    mark = {"marker": "o", "ms": 4} if len(it) < 30 else {}  # a short run's few rows stay visible
    fig = new_figure(10.0, 7.0)
    axes = fig.subplots(2, 2)
    loss, dist, alpha, speed = axes.flat
    loss.plot(it, log["loss"], color="black", **mark)
    loss.set(title="training loss", ylabel="loss (unitless ratio)")
    for k, colour in enumerate(SCALE_COLOURS, start=1):
        dist.plot(it, log[f"d_uv_{k}"], color=colour, label=f"scale {k}: clean teacher", **mark)
        if not np.isnan(log[f"d_zv_{k}"]).all():
            dist.plot(it, log[f"d_zv_{k}"], color=colour, ls="--", label=f"scale {k}: noisy teacher", **mark)
        alpha.plot(it, log[f"alpha_{k}"], color=colour, label=f"head α scale {k}", **mark)
    dist.set(title="student distance to the teachers", ylabel="1 − cosine similarity (mean)")
    dist.legend(fontsize=7, ncol=2)
    alpha.plot(it, log["alpha_max"], color=GREY, ls=":", label="largest head α (1 = one scale only)", **mark)
    alpha.set(title=f"{HEAD_ALPHA}, batch mean", ylabel="weight (the 3 sum to 1)", ylim=(0, 1.02))
    alpha.legend(fontsize=7)
    speed.plot(it, log["images_per_s"], color=GREEN, **mark)
    speed.set(title="training speed", ylabel="images / s", ylim=(0, None))
    for ax in axes.flat:
        ax.set_xlabel("iteration")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    return figure_png(fig)


def alpha_figure(alpha: np.ndarray, labels: np.ndarray | None = None, what: str = "scale weights") -> bytes:
    """The distribution of per-scale weights over the evaluated images ([N, 3]), normal and abnormal
    apart; ``what`` says which weights (:func:`~.report_data.scale_weights_label`)."""
    fig = new_figure(6.0, 4.2)
    ax = fig.add_subplot()
    groups: list[tuple[str, np.ndarray, str]] = [("all images", alpha, GREY)]
    if labels is not None and {0, 1} <= set(np.unique(labels).tolist()):
        groups = [("normal", alpha[labels == 0], BLUE), ("abnormal", alpha[labels == 1], RED)]
    width = 0.8 / len(groups)
    for g, (name, values, colour) in enumerate(groups):
        positions = np.arange(1, alpha.shape[1] + 1) - 0.4 + width * (g + 0.5)
        parts: Any = ax.boxplot(
            [values[:, k] for k in range(alpha.shape[1])], positions=positions, widths=width * 0.9, patch_artist=True
        )
        for box in parts["boxes"]:
            box.set(facecolor=colour, alpha=0.55)
        ax.plot([], [], "s", color=colour, alpha=0.55, label=f"{name} (n={len(values)})")
    ax.set_xticks(np.arange(1, alpha.shape[1] + 1), [f"scale {k}" for k in range(1, alpha.shape[1] + 1)])
    ax.set(title=what.split(";")[0] + " per image", ylabel="weight (the 3 sum to 1)", ylim=(0, 1.02))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return figure_png(fig)


def _jet(values: np.ndarray) -> np.ndarray:
    """A jet-like colour map for values in [0, 1] -> uint8 RGB (cheap: one overlay per predicted image)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    rgb = np.clip(1.5 - np.abs(4.0 * v - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
    return (rgb * 255).astype(np.uint8)


def overlay_array(image01: np.ndarray, amap: np.ndarray, vmin: float, vmax: float, alpha: float = 0.6) -> np.ndarray:
    """The anomaly map (scaled from [vmin, vmax]) blended over the image ([H, W, C] in [0, 1]) as uint8 RGB:
    the heat's opacity grows with the value, from none at ``vmin`` to ``alpha`` at ``vmax``, so what lies
    at or below normal leaves the image as it is."""
    gray = image01.mean(axis=2) if image01.ndim == 3 else image01
    base = np.repeat(np.clip(gray, 0, 1)[..., None] * 255, 3, axis=2)
    level = np.clip((amap - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    heat = _jet(level).astype(np.float64)
    weight = (alpha * level)[..., None]
    return ((1 - weight) * base + weight * heat).astype(np.uint8)


def overlay_png(
    path: str | Path, image01: np.ndarray, amap: np.ndarray, vmin: float, vmax: float, alpha: float = 0.5
) -> None:
    """Blend the anomaly map over the image and write it, marked as predict's (:func:`mark_png`);
    image01 is [H, W, C]."""
    buffer = io.BytesIO()
    Image.fromarray(overlay_array(image01, amap, vmin, vmax, alpha)).save(buffer, format="PNG")
    save_png_bytes(mark_png(buffer.getvalue()), path, durable=False)  # many files; the CSV row is the record
