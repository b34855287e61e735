"""Adding a memory bank's map to the student's (``model.memory_bank``, ``scoring.memory_bank_weight``).

The student's map m_s (its scales fused as the scoring says) and the bank's nearest-patch distance map
m_b (the knn reference's, on the same teacher) are on unrelated scales, so each is first put in units
of its own image score's spread over normal images (μ, σ of score(m) over the run's held-out normals):

    m = (m_s − μ_s) / σ_s + w · (m_b − μ_b) / σ_b

The image score is then taken from m as for any map, and m is the heat map: one map per image, in
normal standard deviations.

Why: on brain MRI a student trained to reconstruct the teacher and a bank of normal teacher patches
are about equally good alone and miss different images; their standardised sum beats both
(docs/studies/brain_tumor.md).
"""

from __future__ import annotations

from typing import Sequence

import torch


def add_bank_map(
    student: torch.Tensor, bank: torch.Tensor, mean: Sequence[float], std: Sequence[float], weight: float
) -> torch.Tensor:
    """The combined map [B, H, W] from the student's and the bank's smoothed maps [B, H, W] and the
    (student, bank) image-score means and stds over normal images."""
    z_student = (student - mean[0]) / max(std[0], 1e-12)
    z_bank = (bank - mean[1]) / max(std[1], 1e-12)
    return z_student + weight * z_bank
