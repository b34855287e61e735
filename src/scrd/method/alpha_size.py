"""How the scale weights α relate to lesion size, measured on synthetic lesions of known size.

A scale-aware model should shift α towards the deeper (coarser) scales as a lesion grows. Real
brain-MRI sets rarely come with masks, so the sizes are made: each held-out normal image gets one
smooth intensity blob (the label-free criterion's lesion stand-in) at each of several radii, with
the same centre and contrast across radii, and α is read for every altered image. The result is
the mean α per radius and Spearman's ρ between radius and each α_k over all altered images
(ρ_k > 0: scale k gains weight on larger lesions).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from .metrics import spearman
from .validation_anomalies import blob

# blob radius as a fraction of the image side: from a few pixels to about half the brain at 256 px
RADII = (0.03, 0.06, 0.10, 0.15, 0.22)


def lesions_of_sizes(normals01: torch.Tensor, radii: Sequence[float], seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(images [len(radii) * N, C, H, W], radius fraction of each): every image altered at every radius."""
    rng = np.random.default_rng(seed)
    _, _, height, width = normals01.shape
    draws = []  # one centre and contrast per image, shared by all its radii
    for _ in range(len(normals01)):
        centre = (rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width)
        draws.append((centre, rng.uniform(0.2, 0.35) * rng.choice([-1, 1])))
    images, sizes = [], []
    for r in radii:
        for image, (centre, contrast) in zip(normals01, draws):
            images.append(blob(image, centre, (r * height, r * width), float(contrast)))
            sizes.append(r)
    return torch.stack(images), np.asarray(sizes, float)


def alpha_by_lesion_size(
    alpha_of: Callable[[torch.Tensor], torch.Tensor],
    normals01: torch.Tensor,
    seed: int,
    radii: Sequence[float] = RADII,
    batch_size: int = 32,
) -> dict:
    """Mean α per radius and Spearman's ρ(radius, α_k) per scale; ``alpha_of`` maps images to α [B, K]."""
    images, sizes = lesions_of_sizes(normals01, radii, seed)
    alpha = torch.cat([alpha_of(images[i : i + batch_size]).float() for i in range(0, len(images), batch_size)])
    alpha = alpha.numpy()
    return {
        "radius_fraction": [float(r) for r in radii],
        "images_per_radius": len(normals01),
        "mean_alpha": [[round(float(v), 4) for v in alpha[sizes == r].mean(0)] for r in radii],
        "spearman": [_rounded(spearman(list(sizes), list(alpha[:, k]))) for k in range(alpha.shape[1])],
    }


def _rounded(value: float) -> float | None:
    """None where ρ is undefined (a constant α_k), so the result stays valid JSON."""
    return None if not np.isfinite(value) else round(value, 4)
