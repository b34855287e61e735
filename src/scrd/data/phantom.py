"""Synthetic brain-MRI-like phantom slices, so the demo and tests need no downloads.

A normal slice is an elliptical head: bright skull ring, dark CSF rim, a brain interior with
smooth low-frequency texture and two darker ventricles, all varying a little per image, plus mild
noise. An abnormal slice adds one smooth-edged lesion (bright or dark, radius 3-15% of the image)
inside the brain. The lesion is drawn from the random stream *after* the anatomy and noise, so the
same generator state gives the same slice with and without the lesion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..filenames import MASKS_DIR, SPLIT_FILE

LESION_RADIUS = (0.03, 0.15)  # fraction of the image side


@dataclass(frozen=True)
class Phantom:
    """A rendered slice ``image`` (float32 [H, W] in [0, 1]) with its ``brain`` and ``lesion`` masks."""

    image: np.ndarray
    brain: np.ndarray
    lesion: np.ndarray


def _soft_inside(r: np.ndarray, edge: float) -> np.ndarray:
    """~1 where r < 1 and ~0 where r > 1, with a smooth ramp of width ``edge`` (in r units)."""
    t = np.clip((1.0 - r) / edge + 0.5, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ellipse_r(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, angle: float) -> np.ndarray:
    """Normalised elliptical radius: 1 on the boundary of the rotated ellipse."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return np.sqrt((u / ax) ** 2 + (v / ay) ** 2)


def render_phantom(rng: np.random.Generator, size: int, lesion: bool) -> Phantom:
    """Render one slice; coordinates span [-1, 1] so the anatomy scales with ``size``."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(coords, coords, indexing="ij")
    px = 2.0 / size  # one pixel in these units, for anti-aliased edges

    # Head geometry and tissue intensities.
    cx, cy = (float(v) for v in rng.uniform(-0.04, 0.04, 2))
    ax, ay = rng.uniform(0.66, 0.74), rng.uniform(0.80, 0.88)
    angle = rng.uniform(-0.12, 0.12)
    skull_w = rng.uniform(0.07, 0.10)
    bg, skull, csf, brain_level = (
        rng.uniform(0.0, 0.04),
        rng.uniform(0.80, 0.92),
        rng.uniform(0.12, 0.20),
        rng.uniform(0.42, 0.52),
    )
    r = _ellipse_r(x, y, cx, cy, ax, ay, angle)
    edge = px / min(ax, ay) * 1.5
    head = _soft_inside(r, edge)
    inner = _soft_inside(r / (1.0 - skull_w), edge)
    brain = _soft_inside(r / (1.0 - skull_w - 0.04), edge)

    # Smooth low-frequency texture: a few random plane waves (grey/white-matter-like variation),
    # each split as cos(a + b) = cos a cos b - sin a sin b into cheap outer products.
    texture = np.zeros_like(x)
    for _ in range(4):
        k, t, p, a = (
            rng.uniform(1.5, 5.0) * np.pi,
            rng.uniform(0, np.pi),
            rng.uniform(0, 2 * np.pi),
            rng.uniform(0.015, 0.035),
        )
        wx, wy = k * np.cos(t) * coords, k * np.sin(t) * coords + p
        texture += a * (np.outer(np.cos(wy), np.cos(wx)) - np.outer(np.sin(wy), np.sin(wx)))

    # Ventricles: two darker ellipses, roughly symmetric about the (rotated) midline.
    vent_level = rng.uniform(0.15, 0.25)
    spread, vy, vax, vay, tilt = (
        rng.uniform(0.07, 0.11),
        rng.uniform(-0.12, 0.0),
        rng.uniform(0.05, 0.08),
        rng.uniform(0.16, 0.24),
        rng.uniform(0.2, 0.4),
    )
    c, s = np.cos(angle), np.sin(angle)
    ventricles = np.zeros_like(x)
    for side in (-1.0, 1.0):
        ox, oy = side * spread, vy + rng.uniform(-0.02, 0.02)
        vx_c, vy_c = cx + ox * c - oy * s, cy + ox * s + oy * c
        vr = _ellipse_r(x, y, vx_c, vy_c, vax, vay, angle - side * tilt)
        ventricles = np.maximum(ventricles, _soft_inside(vr, px / vax * 1.5))

    tissue = brain_level + texture
    tissue = tissue + (vent_level - tissue) * ventricles
    img = bg + (skull - bg) * head
    img = img + (csf - img) * inner
    img = img + (tissue - img) * brain
    noise = rng.standard_normal(img.shape, dtype=np.float32) * 0.012

    lesion_mask = np.zeros_like(img)
    if lesion:
        radius = rng.uniform(*LESION_RADIUS) * 2.0  # fraction of the side -> [-1, 1] units
        contrast = rng.uniform(0.22, 0.38) * rng.choice([-1.0, 1.0])
        # Centre inside the brain ellipse, far enough from its edge for most of the blob.
        brain_scale = 1.0 - skull_w - 0.04
        reach = max(0.05, 0.85 - radius / (min(ax, ay) * brain_scale))
        rho, phi = np.sqrt(rng.uniform(0, 1)) * reach, rng.uniform(0, 2 * np.pi)
        u, v = rho * np.cos(phi) * ax * brain_scale, rho * np.sin(phi) * ay * brain_scale
        lx, ly = cx + u * c - v * s, cy + u * s + v * c
        stretch = rng.uniform(0.8, 1.25)
        lr = _ellipse_r(x, y, lx, ly, radius * stretch, radius / stretch, rng.uniform(0, np.pi))
        lesion_mask = _soft_inside(lr, 0.35) * brain  # smooth edges, never on the skull
        img = img + contrast * lesion_mask

    img = np.clip(img + noise, 0.0, 1.0).astype(np.float32)
    return Phantom(img, brain.astype(np.float32) > 0.5, lesion_mask.astype(np.float32) > 0.5)


def phantom_slice(rng: np.random.Generator, size: int, lesion: bool) -> np.ndarray:
    """One phantom slice as float32 ``[size, size]`` in [0, 1]."""
    return render_phantom(rng, size, lesion).image


_GROUPS = (("train", "0", "train"), ("test", "0", "test_normal"), ("test", "1", "test_abnormal"))


def make_phantom_dataset(
    root: str | Path,
    n_train: int = 200,
    n_test_normal: int = 50,
    n_test_abnormal: int = 50,
    size: int = 128,
    seed: int = 0,
) -> Path:
    """Write 8-bit grey PNGs to ``root/images/`` and a MedIAnomaly ``root/data.json``; return root.
    Each abnormal image's lesion mask goes to ``root/masks/`` under the image's name (0 / 255), where
    ``scrd evaluate`` finds it to measure where the heat map points (:mod:`scrd.evaluation.localisation`).

    Each image has its own generator seeded by (seed, group, index), so the images do not depend
    on the other counts and the same seed always gives the same files.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    if n_test_abnormal:
        (root / MASKS_DIR).mkdir(exist_ok=True)
    counts = (n_train, n_test_normal, n_test_abnormal)
    spec: dict[str, dict[str, list[str]]] = {"train": {"0": []}, "test": {"0": [], "1": []}}
    for g, ((split, key, prefix), n) in enumerate(zip(_GROUPS, counts)):
        for i in range(n):
            rng = np.random.default_rng([seed, g, i])
            phantom = render_phantom(rng, size, lesion=key == "1")
            name = f"{prefix}_{i:04d}.png"
            Image.fromarray(np.round(phantom.image * 255).astype(np.uint8)).save(
                root / "images" / name, compress_level=1
            )
            if key == "1":
                mask = phantom.lesion.astype(np.uint8) * 255
                Image.fromarray(mask).save(root / MASKS_DIR / name, compress_level=1)
            spec[split][key].append(name)
    (root / SPLIT_FILE).write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return root
