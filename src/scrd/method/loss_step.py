"""One SCRD loss evaluation on a clean batch and its noisy twin (shared by training and tests)."""

from __future__ import annotations

from typing import Literal

import torch

from ..config import LossConfig
from ..model import SCRD, SCRDOutput
from .losses import LossTerms, distillation_loss


def scrd_loss(
    model: SCRD,
    clean: torch.Tensor,
    noisy: torch.Tensor | None,
    loss: LossConfig,
    *,
    noisy_branch: Literal["full_model", "encoder_only"],
) -> tuple[LossTerms, SCRDOutput]:
    """Loss for normalised ``clean`` images and their normalised ``noisy`` versions.

    The clean pass runs first, as in the released code. With ``noisy_branch="full_model"`` and
    the model in train mode the noisy teacher features also go through the bottleneck and
    decoder, as the released code does: that output is unused, but it moves the BatchNorm
    running statistics towards noisy-batch statistics. It runs without a graph here, which
    changes no number and halves the memory the released code spends on it.
    """
    out = model(clean)
    noisy_teacher = None
    if loss.form != "rd4ad":
        if noisy is None:
            raise ValueError(f"loss form {loss.form!r} needs noisy images")
        noisy_teacher = model.encode(noisy)
        if noisy_branch == "full_model" and model.training:
            with torch.no_grad():
                model.reconstruct(noisy_teacher)
    terms = distillation_loss(out.teacher, out.student, out.alpha, loss, noisy_teacher)
    return terms, out
