"""The knn method's network: the frozen teacher alone, whose features a memory bank scores."""

from __future__ import annotations

import torch
from torch import nn

from .backbones import Teacher


class TeacherOnly(nn.Module):
    """``forward(x) -> [u_1, u_2, u_3]``: the teacher's features (frozen: eval mode, no gradients).
    Its state dict keys are ``teacher.*``, as the SCRD model's teacher and scrd 0.2's knn models."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        self.arch = arch
        self.teacher = Teacher(arch)

    def train(self, mode: bool = True) -> TeacherOnly:
        super().train(mode)
        self.teacher.train(False)
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.teacher(x)
