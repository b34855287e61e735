"""The scale head of SCRD (paper Eq. 3): per-sample weights α over the three scales."""

from __future__ import annotations

import torch
from torch import nn


class ScaleHead(nn.Module):
    """α = softmax(W · GlobalMaxPool(φ)) (paper Eq. 3): one weight per scale, per sample."""

    def __init__(self, in_channels: int, num_scales: int = 3) -> None:
        super().__init__()
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.linear = nn.Linear(in_channels, num_scales)

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(self.pool(phi).flatten(1)), dim=-1)
