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


# ---- the wider set a scoring is chosen on: focal and diffuse kinds, in equal shares
CHOICE_KINDS = ("blob", "cut_paste", "opacity", "haze")


def _opacity(target: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A large, faint, patchy brightening (20–40 % of the side in radius, +0.04 to +0.12): the way
    consolidation or an effusion whitens a region of an X-ray, nothing like a focal lesion."""
    _, height, width = target.shape
    out = target
    for _ in range(int(rng.integers(1, 4))):  # one to three overlapping lobes
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx = (rng.uniform(0.12, 0.25) * s for s in (height, width))
        out = blob(out, (cy, cx), (ry, rx), float(rng.uniform(0.04, 0.12)))
    return out


def _haze(target: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A large soft region where fine structure fades (the image mixed with a blurred copy of
    itself, up to 60 %): structure lost without a change of mean intensity."""
    import torch.nn.functional as F

    _, height, width = target.shape
    sigma = max(1.0, 0.02 * min(height, width))
    radius = int(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=target.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = target[:, None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))[:, 0]
    mask = blob(
        torch.zeros_like(target[:1]),
        (rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width),
        tuple(rng.uniform(0.2, 0.35) * s for s in (height, width)),
        float(rng.uniform(0.4, 0.6)),
    )
    return target + mask * (blurred - target)


def scoring_choice_set(normals01: torch.Tensor, seed: int) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """(images [2N, C, H, W], labels [2N], kinds [2N]): the N normal images, then one altered copy of
    each, the kinds in turn: a small blob and a cut-paste (focal), a large faint opacity and a haze
    (diffuse). What the image score is chosen on, without labels (:mod:`scrd.training.scoring_choice`)."""
    if len(normals01) < 4:
        raise ValueError("choosing a scoring needs at least 4 held-out normal images (one of each kind)")
    rng = np.random.default_rng(seed)
    altered, kinds = [], []
    for i, image in enumerate(normals01):
        kind = CHOICE_KINDS[i % len(CHOICE_KINDS)]
        if kind == "blob":
            altered.append(_blob(image, rng))
        elif kind == "cut_paste":
            j = int(rng.integers(0, len(normals01) - 1))
            altered.append(_cut_paste(image, normals01[j + (j >= i)], rng))
        elif kind == "opacity":
            altered.append(_opacity(image, rng))
        else:
            altered.append(_haze(image, rng))
        kinds.append(kind)
    images = torch.cat([normals01, torch.stack(altered)])
    labels = np.concatenate([np.zeros(len(normals01), int), np.ones(len(normals01), int)])
    return images, labels, ["normal"] * len(normals01) + kinds
