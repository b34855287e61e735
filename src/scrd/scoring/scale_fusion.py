"""Fusing the per-scale maps on the scale of normal images (``scoring.scale_fusion``).

Each scale's smoothed map m_k is put in units of its own normal variation: with μ_k and σ_k the mean
and std, over normal images, of the image score s_k = score(m_k) (the configured reduction of that
scale's map alone),

    m̃_k = (m_k − μ_k) / σ_k,    z_k = score(m̃_k) = (s_k − μ_k) / σ_k

(the reductions commute with a positive affine map), so z_k says how many normal standard deviations
an image departs from normal images at scale k. ``normal_sum`` adds the m̃_k; ``normal_softmax``
weights them per image by α_k = softmax_k(z_k / T): the scale at which the image is most unusual gets
the most weight, a scale adaptation that needs neither labels nor synthetic anomalies. Fixed
``scale_weights`` multiply the weights (0 drops a scale from the softmax too).

Why: on brain MRI the scales' raw maps have different ranges and the deepest is the easiest for
synthetic anomalies but the worst for real tumours (docs/studies/schedule.md); normal images are the
only reference a user has for all scales.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..config import ScoringConfig
from .maps import image_score


def per_scale_scores(smoothed: torch.Tensor, scoring: ScoringConfig) -> torch.Tensor:
    """Image score of each scale's map alone: [B, K] from smoothed maps [B, K, H, W]."""
    batch, scales = smoothed.shape[:2]
    flat = smoothed.reshape(batch * scales, *smoothed.shape[2:])
    return image_score(flat, scoring.score, scoring.top_k_percent).reshape(batch, scales)


def fusion_weights(z: torch.Tensor, temperature: float, fixed: Sequence[float] | None = None) -> torch.Tensor:
    """α [B, K] = softmax over scales of z / temperature, times the fixed weights, renormalised."""
    logits = z / temperature
    if fixed is not None:
        # log 0 = −inf: a dropped scale gets weight 0; a fixed weight w multiplies exp(z/T) by w
        logits = logits + torch.log(torch.as_tensor(fixed, dtype=z.dtype, device=z.device))
    return torch.softmax(logits, dim=1)


def fuse_on_normal_scale(
    smoothed: torch.Tensor, mean: Sequence[float], std: Sequence[float], scoring: ScoringConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fused map [B, H, W], weights [B, K]) from smoothed per-scale maps [B, K, H, W] and the normal
    images' per-scale image-score statistics."""
    m = torch.as_tensor(mean, dtype=smoothed.dtype, device=smoothed.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=smoothed.dtype, device=smoothed.device).view(1, -1, 1, 1)
    standardized = (smoothed - m) / s.clamp_min(1e-12)
    fixed = tuple(scoring.scale_weights)
    if scoring.scale_fusion == "normal_softmax":
        z = per_scale_scores(standardized, scoring)
        weights = fusion_weights(z, scoring.fusion_temperature, None if fixed == (1.0, 1.0, 1.0) else fixed)
    elif scoring.scale_fusion == "normal_sum":
        weights = torch.as_tensor(fixed, dtype=smoothed.dtype, device=smoothed.device).expand(len(smoothed), -1)
    else:
        raise ValueError(f"scale_fusion {scoring.scale_fusion!r} is not fused on the normal scale")
    return (standardized * weights[:, :, None, None]).sum(1), weights


def scale_score_statistics(per_image: torch.Tensor) -> dict[str, list[float]]:
    """Mean and std (population) of each scale's image score over normal images: per_image is [N, K]."""
    if len(per_image) < 2:
        raise ValueError(f"need at least 2 normal images for per-scale score statistics, got {len(per_image)}")
    values = per_image.double()
    return {"mean": values.mean(0).tolist(), "std": values.std(0, unbiased=False).tolist(), "images": len(values)}
