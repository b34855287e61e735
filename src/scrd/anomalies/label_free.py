"""Synthetic anomalies of kinds the model is *not* trained on, for label-free model selection.

Users have no anomalous images, so a checkpoint cannot be chosen on real labels. Instead, held-out
normal images are scored together with altered copies of themselves, and the AUROC of that
pseudo-task is the criterion. The alterations differ from the training noise (λ-scaled simplex
patches), so the criterion does not just reward memorising the training anomalies:

* **cut-paste** (CutPaste, Li et al. 2021): a rectangle of another held-out image, 10–30 % of the
  side, pasted at a random place;
* **intensity blob**: a smooth elliptical blob, 4–15 % of the side in radius, brighter or darker
  by 0.15–0.35 (in [0, 1] units), a crude stand-in for a lesion.

Half of the images get each kind. Everything is drawn from one seeded generator, so the set is
the same at every evaluation and on resume.
"""

from __future__ import annotations

import numpy as np
import torch


def _cut_paste(target: torch.Tensor, source: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    _, height, width = target.shape
    h, w = (int(rng.uniform(0.10, 0.30) * s) for s in (height, width))
    sy, sx = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    ty, tx = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    out = target.clone()
    out[:, ty : ty + h, tx : tx + w] = source[:, sy : sy + h, sx : sx + w]
    return out


def blob(
    target: torch.Tensor, centre: tuple[float, float], radius: tuple[float, float], contrast: float
) -> torch.Tensor:
    """``target`` plus a smooth elliptical blob: ``centre`` and ``radius`` (rows, columns) in pixels,
    ``contrast`` in [0, 1] intensity units at its centre (negative: darker). Smooth-edged and not
    clipped, like real intensities."""
    _, height, width = target.shape
    y = torch.arange(height, dtype=target.dtype)[:, None]
    x = torch.arange(width, dtype=target.dtype)[None, :]
    r2 = ((y - centre[0]) / radius[0]) ** 2 + ((x - centre[1]) / radius[1]) ** 2
    return target + contrast * torch.exp(-2.0 * r2)[None]


def _blob(target: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    _, height, width = target.shape
    cy, cx = rng.uniform(0.25, 0.75) * height, rng.uniform(0.25, 0.75) * width
    ry, rx = (rng.uniform(0.04, 0.15) * s for s in (height, width))
    contrast = rng.uniform(0.15, 0.35) * rng.choice([-1.0, 1.0])
    return blob(target, (cy, cx), (ry, rx), contrast)


def validation_set(normals01: torch.Tensor, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(images [2N, C, H, W], labels [2N]): the N normal images, then one altered copy of each."""
    if len(normals01) < 2:
        raise ValueError("label-free validation needs at least 2 held-out normal images")
    rng = np.random.default_rng(seed)
    altered = []
    for i, image in enumerate(normals01):
        if i % 2 == 0:
            j = int(rng.integers(0, len(normals01) - 1))
            altered.append(_cut_paste(image, normals01[j + (j >= i)], rng))
        else:
            altered.append(_blob(image, rng))
    images = torch.cat([normals01, torch.stack(altered)])
    return images, np.concatenate([np.zeros(len(normals01), int), np.ones(len(normals01), int)])
