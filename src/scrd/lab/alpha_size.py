"""How the scale weights α relate to lesion size, measured on synthetic lesions of known size.

A scale-aware model should shift α towards the deeper (coarser) scales as a lesion grows. Real
brain-MRI sets rarely come with masks, so the sizes are made: each held-out normal image gets one
smooth intensity blob (the label-free criterion's lesion stand-in) at each of several radii, with
the same centre and contrast across radii, and α is read for every altered image. The result is
the mean α per radius and Spearman's ρ between radius and each α_k over all altered images
(ρ_k > 0: scale k gains weight on larger lesions). A spatial α (one per location) is read as its
mean over the lesion, where the blob is at least e^-2 of its peak contrast.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..anomalies.label_free import blob
from ..evaluation.metrics import spearman
from ..losses.scale_objective import masked_means

# blob radius as a fraction of the image side: from a few pixels to about half the brain at 256 px
RADII = (0.03, 0.06, 0.10, 0.15, 0.22)


def lesions_of_sizes(
    normals01: torch.Tensor, radii: Sequence[float], seed: int
) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """(images [len(radii) * N, C, H, W], radius fraction of each, lesion masks [len(radii) * N, H, W]):
    every image altered at every radius."""
    rng = np.random.default_rng(seed)
    _, _, height, width = normals01.shape
    draws = []  # one centre and contrast per image, shared by all its radii
    for _ in range(len(normals01)):
        centre = (rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width)
        draws.append((centre, rng.uniform(0.2, 0.35) * rng.choice([-1, 1])))
    images, sizes, masks = [], [], []
    for r in radii:
        for image, (centre, contrast) in zip(normals01, draws):
            images.append(blob(image, centre, (r * height, r * width), float(contrast)))
            masks.append(blob(torch.zeros_like(image[:1]), centre, (r * height, r * width), 1.0)[0] >= np.exp(-2.0))
            sizes.append(r)
    return torch.stack(images), np.asarray(sizes, float), torch.stack(masks)


def alpha_by_lesion_size(
    alpha_of: Callable[[torch.Tensor], torch.Tensor],
    normals01: torch.Tensor,
    seed: int,
    radii: Sequence[float] = RADII,
    batch_size: int = 32,
) -> dict:
    """Mean α per radius and Spearman's ρ(radius, α_k) per scale; ``alpha_of`` maps images to α [B, K]
    or, for a spatial head, [B, K, h, w] (then read over each lesion's mask)."""
    return alphas_by_lesion_size(lambda x: {"": alpha_of(x)}, normals01, seed, radii, batch_size)[""]


def alphas_by_lesion_size(
    alphas_of: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    normals01: torch.Tensor,
    seed: int,
    radii: Sequence[float] = RADII,
    batch_size: int = 32,
) -> dict[str, dict]:
    """:func:`alpha_by_lesion_size` for several named α read from one call per batch (for example the
    weights of several scorings that share a network pass): {name: result}."""
    images, sizes, masks = lesions_of_sizes(normals01, radii, seed)
    parts: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), batch_size):
        for name, alpha in alphas_of(images[i : i + batch_size]).items():
            alpha = alpha.float().cpu()
            parts.setdefault(name, []).append(
                alpha if alpha.dim() == 2 else mean_over_mask(alpha, masks[i : i + batch_size])
            )
    return {name: _summary(torch.cat(p).numpy(), sizes, radii, len(normals01)) for name, p in parts.items()}


def _summary(alpha: np.ndarray, sizes: np.ndarray, radii: Sequence[float], per_radius: int) -> dict:
    return {
        "radius_fraction": [float(r) for r in radii],
        "images_per_radius": per_radius,
        "mean_alpha": [[round(float(v), 4) for v in alpha[sizes == r].mean(0)] for r in radii],
        "spearman": [_rounded(spearman(list(sizes), list(alpha[:, k]))) for k in range(alpha.shape[1])],
    }


def mean_over_mask(alpha_map: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """[B, K]: the mean of a per-location α [B, K, h, w] over each boolean mask [B, H, W] (α resized)."""
    weights = F.interpolate(alpha_map, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    return masked_means(weights, masks)[0]


def _rounded(value: float) -> float | None:
    """None where ρ is undefined (a constant α_k), so the result stays valid JSON."""
    return None if not np.isfinite(value) else round(value, 4)
