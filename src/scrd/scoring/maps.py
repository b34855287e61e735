"""Anomaly maps and image scores from teacher/student features (paper §2.4), batched on device.

Map = Σ_k up(1 − cos_c(u_k, v_k)) over scales k = 1..K (per-pixel cosine over channels, bilinear
upsampling with ``align_corners=True``), optionally weighted by α_k, then Gaussian-smoothed (σ = 4)
with scipy's default 'reflect' boundary. The official image score is the map's mean.

``alpha`` weights the distances (the paper's reading); ``inside_alpha`` multiplies both feature
vectors inside the cosine, as the released code does. A positive scalar cancels in a cosine, except
that the cosine's norm floor (1e-8) turns a scale whose α_k has vanished into a constant 1.
The image score is the map's mean (SCRD), its max (RD4AD) or the mean of its top k %.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F


def _as_size(image_size: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    return int(image_size[0]), int(image_size[1])


def scale_maps(
    teacher: Sequence[torch.Tensor],
    student: Sequence[torch.Tensor],
    inside_alpha: torch.Tensor | None = None,
    feature_pool: int = 1,
) -> list[torch.Tensor]:
    """Per-scale maps m_k = 1 − cos(u_k, v_k) over channels: list of [B, H_k, W_k].

    With ``inside_alpha`` [B, K]: m_k = 1 − cos(α_k·u_k, α_k·v_k), the released code's expression.
    With ``feature_pool`` p > 1 both features are first averaged over p×p neighbourhoods (stride 1;
    the zero padding at the border scales a sum, which a cosine ignores).
    ``F.cosine_similarity`` clamps the norms at eps = 1e-8, so zero features give m = 1, not NaN.
    """
    if len(teacher) != len(student) or not teacher:
        raise ValueError(f"need the same non-zero number of scales, got {len(teacher)} and {len(student)}")
    maps = []
    for u, v in zip(teacher, student):
        if u.shape != v.shape or u.dim() != 4:
            shapes = f"{tuple(u.shape)} and {tuple(v.shape)}"
            raise ValueError(f"teacher/student features must be matching [B, C, H, W], got {shapes}")
        if feature_pool > 1:
            u, v = (F.avg_pool2d(f, feature_pool, stride=1, padding=feature_pool // 2) for f in (u, v))
        if inside_alpha is not None:
            w = inside_alpha[:, len(maps)].to(u.dtype).view(-1, 1, 1, 1)
            u, v = u * w, v * w
        maps.append(1.0 - F.cosine_similarity(u, v, dim=1, eps=1e-8))
    return maps


def upsampled_scale_maps(
    teacher: Sequence[torch.Tensor],
    student: Sequence[torch.Tensor],
    image_size: tuple[int, int] | int,
    inside_alpha: torch.Tensor | None = None,
    feature_pool: int = 1,
) -> torch.Tensor:
    """Scale maps resized to the image (bilinear, ``align_corners=True``): [B, K, H, W], axis 1 = k − 1."""
    size = _as_size(image_size)
    ups = [
        F.interpolate(m.unsqueeze(1), size=size, mode="bilinear", align_corners=True)
        for m in scale_maps(teacher, student, inside_alpha, feature_pool)
    ]
    return torch.cat(ups, dim=1)


def combine_scales(stack: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Sum the [B, K, H, W] stack over scales in order k = 1..K, each weighted by ``alpha[:, k]`` if
    given: [B, K] (one weight per image) or [B, K, h, w] (per location, bilinearly resized to H, W)."""
    if alpha is not None:
        if alpha.shape[:2] != stack.shape[:2] or alpha.dim() not in (2, 4):
            raise ValueError(
                f"alpha must be [B, K] or [B, K, h, w] with B, K = {tuple(stack.shape[:2])}, got {tuple(alpha.shape)}"
            )
        if alpha.dim() == 2:
            alpha = alpha[:, :, None, None]
        elif alpha.shape[-2:] != stack.shape[-2:]:
            alpha = F.interpolate(alpha, size=stack.shape[-2:], mode="bilinear", align_corners=False)
        stack = stack * alpha.to(stack.dtype)
    out = stack[:, 0]
    for k in range(1, stack.shape[1]):
        out = out + stack[:, k]
    return out


def _symmetric_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of an axis padded by ``radius`` with scipy 'reflect' (d c b a | a b c d | d c b a),
    repeated as often as needed for axes shorter than the radius."""
    idx = torch.arange(-radius, n + radius, device=device).remainder(2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def gaussian_smooth(maps: torch.Tensor, sigma: float = 4.0, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian blur of each [H, W] map in ``maps`` [..., H, W], equal to
    ``scipy.ndimage.gaussian_filter(map, sigma)`` with its defaults (mode 'reflect', truncate 4).

    Separable, radius int(truncate·σ + 0.5), kernel normalised to sum 1, in the maps' dtype and
    device. σ = 0 returns the maps unchanged.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return maps
    if maps.dim() < 2:
        raise ValueError(f"maps must be [..., H, W], got shape {tuple(maps.shape)}")
    radius = int(truncate * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 / (sigma * sigma) * taps * taps)
    kernel = (kernel / kernel.sum()).to(device=maps.device, dtype=maps.dtype)
    lead, (height, width) = maps.shape[:-2], maps.shape[-2:]
    x = maps.reshape(-1, 1, height, width)
    x = x.index_select(2, _symmetric_index(height, radius, maps.device))
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    x = x.index_select(3, _symmetric_index(width, radius, maps.device))
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return x.reshape(*lead, height, width)


def anomaly_map(
    teacher: Sequence[torch.Tensor],
    student: Sequence[torch.Tensor],
    image_size: tuple[int, int] | int,
    alpha: torch.Tensor | None = None,
    sigma: float = 4.0,
) -> torch.Tensor:
    """Smoothed anomaly map [B, H, W]: Gaussian(σ) of Σ_k α_k · up(1 − cos(u_k, v_k)).

    ``alpha=None`` gives the official (unweighted) map; ``alpha`` [B, K] weights each scale's distance.
    """
    return gaussian_smooth(combine_scales(upsampled_scale_maps(teacher, student, image_size), alpha), sigma)


def standardize_scales(stack: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(m_k − mean_k) / std_k for each scale of a [B, K, H, W] stack (statistics of normal images)."""
    m = torch.as_tensor(mean, dtype=stack.dtype, device=stack.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=stack.dtype, device=stack.device).view(1, -1, 1, 1)
    return (stack - m) / s.clamp_min(1e-12)


def image_score(
    maps: torch.Tensor,
    reduction: Literal["mean", "max", "top_k"] = "mean",
    top_k_percent: float = 1.0,
) -> torch.Tensor:
    """Image scores [B] from maps [B, H, W]: the mean (official SCRD), the max (RD4AD, anomalib) or
    the mean of the ``top_k_percent`` % highest values (at least one value)."""
    flat = maps.reshape(maps.shape[0], -1)
    if reduction == "mean":
        return flat.mean(dim=1)
    if reduction == "max":
        return flat.amax(dim=1)
    if reduction == "top_k":
        k = max(1, int(flat.shape[1] * top_k_percent / 100.0))
        return flat.topk(k, dim=1).values.mean(dim=1)
    raise ValueError(f"reduction must be 'mean', 'max' or 'top_k', got {reduction!r}")
