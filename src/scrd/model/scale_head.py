"""The scale heads of SCRD: weights α over the three scales.

``ScaleHead`` is the paper's (Eq. 3): one α per image, from the global max-pool of the bottleneck
code φ. A global α cannot tell a small lesion from a large one in the same image, and on brain MRI
it does not follow lesion size (docs/studies/ablations.md). ``SpatialScaleHead`` is our extension:
one α per location, read from the teacher's features of all three scales at that location, so the
weighting can differ between a lesion and the tissue around it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SCALE_HEADS = ("global", "spatial")


class ScaleHead(nn.Module):
    """α = softmax(W · GlobalMaxPool(φ)) (paper Eq. 3): one weight per scale, per sample."""

    def __init__(self, in_channels: int, num_scales: int = 3) -> None:
        super().__init__()
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.linear = nn.Linear(in_channels, num_scales)

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(self.pool(phi).flatten(1)), dim=-1)


class SpatialScaleHead(nn.Module):
    """α(x) = softmax_k(W · [u_1(x), u_2(x), u_3(x)] + b) at every location x of the middle scale.

    The teacher features are brought to the middle scale's grid (the finest one averaged over 2×2
    blocks, the deepest one bilinearly upsampled) and concatenated; a 1×1 convolution gives one logit
    per scale. The output is [B, K, H_2, W_2], summing to 1 over K at every location. The teacher's
    features are detached: the head never changes what the student distils.
    """

    def __init__(self, channels: Sequence[int], num_scales: int = 3) -> None:
        super().__init__()
        self.logits = nn.Conv2d(sum(channels), num_scales, kernel_size=1)

    def forward(self, teacher: Sequence[torch.Tensor]) -> torch.Tensor:
        size = (int(teacher[1].shape[-2]), int(teacher[1].shape[-1]))  # plain ints: a fixed ONNX graph
        grid = [_to_size(u.detach(), size) for u in teacher]
        # float32 softmax: under bf16 autocast the weights would miss summing to 1 by about 2e-3
        return torch.softmax(self.logits(torch.cat(grid, dim=1)).float(), dim=1)


def _to_size(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    height = int(features.shape[-2])
    if height == size[0]:
        return features
    if height > size[0]:  # a finer scale: mean of each block (strides are powers of 2)
        return F.avg_pool2d(features, height // size[0])
    return F.interpolate(features, size=size, mode="bilinear", align_corners=False)
