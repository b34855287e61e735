"""A scale adaptation that adapts: the scale head trained to separate synthetic anomalies.

With ``loss.alpha_objective = separation`` the head does not learn from the distillation loss
(which, being linear in α, collapses α onto the scale with the smallest distance ratio). Instead,
for each noisy training image x' the student's per-scale maps m_k(x') = 1 − cos(z_k, v_k(x')) are
compared inside and outside its synthetic patches, s_k = mean_inside(m_k) − mean_outside(m_k), and
α(x') = head(φ(x')) is trained to put weight where the separation is relatively largest:

    L_head = −mean_b Σ_k α_bk · ŝ_bk − β · H(α)

with ŝ the separation standardised per scale over the batch (so that no scale wins by its range)
and β the entropy bonus that keeps α soft. The maps are detached: only the head learns from it.
At test time α(x) of the test image weights its scale maps.

A spatial head (``model.scale_head = spatial``) gives α(x) per location instead, and is trained per
location: the fused map f(x) = Σ_k α_k(x)·m_k(x) should be high inside the patches and low outside,

    L_head = mean_b [mean_outside(f_b) − mean_inside(f_b)] / mean(m_b) − β · mean_x H(α(x))

(divided by the image's mean map value, so that β means the same whatever the maps' range). Outside
the patches this teaches α to weight, at each kind of normal tissue, the scale that reproduces it
best; inside, the scale that sees the patch.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..scoring.maps import combine_scales, upsampled_scale_maps
from .distillation import alpha_entropy


def patch_mask(patches: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boolean [B, H, W]: True inside any of each image's patches ([B, K, 4] rows h, w, start_h, start_w)."""
    p = patches.view(patches.shape[0], -1, 4).to(torch.long)
    rows = torch.arange(height, device=p.device)[None, None, :]
    cols = torch.arange(width, device=p.device)[None, None, :]
    h, w, sh, sw = p.unbind(-1)
    in_rows = (rows >= sh[..., None]) & (rows < (sh + h)[..., None])  # [B, K, H]
    in_cols = (cols >= sw[..., None]) & (cols < (sw + w)[..., None])  # [B, K, W]
    return (in_rows[..., :, None] & in_cols[..., None, :]).any(1)


def masked_means(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, C], [B, C]): the mean of ``values`` [B, C, H, W] inside and outside each mask [B, H, W]
    (0 where a side is empty)."""
    inside = mask[:, None].to(values.dtype)
    mean_in = (values * inside).sum((2, 3)) / inside.sum((2, 3)).clamp_min(1)
    mean_out = (values * (1 - inside)).sum((2, 3)) / (1 - inside).sum((2, 3)).clamp_min(1)
    return mean_in, mean_out


def patch_separation(
    teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], mask: torch.Tensor
) -> torch.Tensor:
    """[B, K]: mean of each scale map inside the mask minus its mean outside (maps at mask size)."""
    mean_in, mean_out = masked_means(upsampled_scale_maps(teacher, student, tuple(mask.shape[-2:])), mask)
    return mean_in - mean_out


def separation_objective(alpha: torch.Tensor, separation: torch.Tensor, entropy_weight: float) -> torch.Tensor:
    """L_head for α [B, K] and the (detached) separations [B, K], standardised per scale."""
    s = separation.detach()
    if s.shape[0] > 1:
        s = (s - s.mean(0)) / s.std(0).clamp_min(1e-6)
    return -(alpha * s).sum(1).mean() - entropy_weight * alpha_entropy(alpha)


def spatial_separation_objective(
    alpha_map: torch.Tensor, stack: torch.Tensor, mask: torch.Tensor, entropy_weight: float
) -> torch.Tensor:
    """Per-image L_head of a spatial head [B]: ``alpha_map`` [B, K, h, w] (upsampled to the maps),
    the detached maps ``stack`` [B, K, H, W] and the patch ``mask`` [B, H, W]."""
    stack = stack.detach()
    # the map as scoring fuses it (combine_scales resizes α the same way), so training and test agree
    mean_in, mean_out = masked_means(combine_scales(stack, alpha_map)[:, None], mask)
    level = stack.mean((1, 2, 3)).clamp_min(1e-6)
    entropy = -(alpha_map * alpha_map.clamp_min(1e-12).log()).sum(1).mean((1, 2))
    return (mean_out - mean_in)[:, 0] / level - entropy_weight * entropy
