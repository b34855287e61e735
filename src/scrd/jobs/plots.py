"""Small PNG figures drawn with Pillow (no plotting library needed): ROC curve, score
histogram (the paper's Fig. 2) and heat-map overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..storage import atomic_write

_W, _H, _M = 480, 400, 50  # canvas size and margin
BLUE, RED, GREY, BLACK = (31, 119, 180), (214, 39, 40), (200, 200, 200), (0, 0, 0)


def save_png(image: Image.Image, path: str | Path, durable: bool = True) -> None:
    """Write atomically, so a killed run never leaves a half-written PNG behind."""
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), durable)


def _canvas(title: str, xlabel: str, ylabel: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (_W, _H), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([_M, _M, _W - _M, _H - _M], outline=BLACK)
    draw.text((_M, 15), title, fill=BLACK)
    draw.text((_W // 2 - 20, _H - _M + 25), xlabel, fill=BLACK)
    draw.text((5, _M - 20), ylabel, fill=BLACK)
    return image, draw


def _to_px(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
    px = _M + x * (_W - 2 * _M)
    py = _H - _M - y * (_H - 2 * _M)
    return list(zip(px.tolist(), py.tolist()))


def roc_png(path: str | Path, fpr: np.ndarray, tpr: np.ndarray, auroc: float) -> None:
    image, draw = _canvas(f"ROC curve (AUROC {auroc:.4f})", "false positive rate", "true positive rate")
    draw.line(_to_px(np.array([0.0, 1.0]), np.array([0.0, 1.0])), fill=GREY, width=1)
    draw.line(_to_px(np.asarray(fpr, float), np.asarray(tpr, float)), fill=BLUE, width=2)
    for v in (0.0, 0.5, 1.0):
        ((x, _),) = _to_px(np.array([v]), np.array([0.0]))
        draw.text((x - 8, _H - _M + 5), f"{v:g}", fill=BLACK)
        ((_, y),) = _to_px(np.array([0.0]), np.array([v]))
        draw.text((_M - 25, y - 5), f"{v:g}", fill=BLACK)
    save_png(image, path)


def histogram_png(path: str | Path, normal: Sequence[float], abnormal: Sequence[float], bins: int = 40) -> None:
    """Overlaid histograms of normal (blue) and abnormal (red) scores, scaled to [0, 1] as in Fig. 2."""
    normal, abnormal = np.asarray(normal, float), np.asarray(abnormal, float)
    both = np.concatenate([normal, abnormal])
    lo, hi = float(both.min()), float(both.max())
    span = hi - lo if hi > lo else 1.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = [np.histogram((s - lo) / span, bins=edges)[0] / max(len(s), 1) for s in (normal, abnormal)]
    top = max(float(c.max()) for c in counts) or 1.0
    image, draw = _canvas(
        f"scores (min-max scaled; raw range {lo:.4g} .. {hi:.4g})", "normalised anomaly score", "fraction"
    )
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ldraw = ImageDraw.Draw(layer)
    for c, colour in zip(counts, (BLUE, RED)):
        for i, value in enumerate(c):
            (x0, y0), (x1, y1) = _to_px(edges[i : i + 2], np.array([value / top, 0.0]))
            ldraw.rectangle([x0, y0, x1, y1], fill=colour + (110,))
    image = Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.text((_W - _M - 140, _M + 8), f"normal (n={len(normal)})", fill=BLUE)
    draw.text((_W - _M - 140, _M + 22), f"abnormal (n={len(abnormal)})", fill=RED)
    save_png(image, path)


def _jet(values: np.ndarray) -> np.ndarray:
    """A jet-like colour map for values in [0, 1] -> uint8 RGB."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    rgb = np.clip(1.5 - np.abs(4.0 * v - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
    return (rgb * 255).astype(np.uint8)


def overlay_png(
    path: str | Path, image01: np.ndarray, amap: np.ndarray, vmin: float, vmax: float, alpha: float = 0.5
) -> None:
    """Blend the anomaly map (scaled from [vmin, vmax]) over the image; image01 is [H, W, C]."""
    gray = image01.mean(axis=2) if image01.ndim == 3 else image01
    base = np.repeat(np.clip(gray, 0, 1)[..., None] * 255, 3, axis=2)
    heat = _jet((amap - vmin) / max(vmax - vmin, 1e-12)).astype(np.float64)
    out = ((1 - alpha) * base + alpha * heat).astype(np.uint8)
    save_png(Image.fromarray(out), path, durable=False)  # many files; the CSV row is the record
