"""The whole scoring path of a detector as one module: [0, 1] images -> (smoothed maps, scores).

This is what ``scrd export`` traces: the normalisation, the network and the detector's scoring head
(per-scale distances, scale fusion with its normal statistics, the memory bank, smoothing and the
reduction), the same modules ``Detector.score`` runs, so the exported graph cannot drift from it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.transforms import normalize
from ..detector import Detector


class ScoringGraph(nn.Module):
    """``forward(images01 [B, 3, S, S]) -> (anomaly_map [B, S, S], score [B])``, both float32."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.network, self.head, self.knn = detector.network, detector.head, detector.is_knn

    def forward(self, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.network(normalize(images01))
        if self.knn:
            maps, scores, _ = self.head(out)
        else:
            alpha = out.alpha if out.alpha_map is None else out.alpha_map
            maps, scores, _ = self.head(out.teacher, out.student, alpha)
        return maps, scores
