"""The whole scoring path of a detector as one module: [0, 1] images -> (smoothed maps, scores).

This is what ``scrd export`` traces. It calls the detector's own ``scale_stack`` and ``combine``
and the same ``image_score``, so the exported graph cannot drift from what ``Detector.score``
computes: normalisation, the network, per-scale distances, α weighting, scale normalisation,
Gaussian smoothing and the configured reduction are all inside it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..detector import Detector
from ..scoring.maps import image_score


class ScoringGraph(nn.Module):
    """``forward(images01 [B, 3, S, S]) -> (anomaly_map [B, S, S], score [B])``, both float32."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector
        self.model = detector.model  # registered, so the exporter sees the weights as parameters

    def forward(self, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scoring = self.detector.config.scoring
        stack, alpha = self.detector.scale_stack(images01)
        maps = self.detector.combine(stack, alpha).float()
        return maps, image_score(maps, scoring.score, scoring.top_k_percent)
