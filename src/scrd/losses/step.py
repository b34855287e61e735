"""One SCRD loss evaluation on a clean batch and its noisy twin (shared by training, the benchmark
and the tests)."""

from __future__ import annotations

from typing import Callable, Literal

import torch

from ..config import LossConfig, uses_synthetic_anomalies
from ..device import autocast
from ..model import SCRD, SCRDOutput
from ..scoring.maps import upsampled_scale_maps
from .distillation import LossTerms, distillation_loss
from .scale_objective import patch_mask, patch_separation, separation_objective, spatial_separation_objective


def scrd_loss(
    model: SCRD,
    clean: torch.Tensor | None,
    noisy: torch.Tensor | None,
    loss: LossConfig,
    *,
    noisy_branch: Literal["full_model", "encoder_only"],
    teacher: list[torch.Tensor] | None = None,
    precision: str = "fp32",
    patches: torch.Tensor | None = None,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[LossTerms, SCRDOutput]:
    """Loss for normalised ``clean`` images and their normalised ``noisy`` versions.

    ``teacher``: the clean images' teacher features when they are already known (the feature
    cache); ``clean`` is then not needed. The clean pass runs first, as in the released code.
    With ``noisy_branch="full_model"`` and the model in train mode the noisy teacher features also
    go through the bottleneck and decoder, as the released code does: that output is unused, but
    it moves the BatchNorm running statistics towards noisy-batch statistics. It runs without a
    graph here, which changes no number and halves the memory the released code spends on it.
    With ``precision="bf16"`` the networks run under bf16 autocast; the distances and the loss are
    always computed in float32 (in bf16 the ratio's small changes round away).
    With ``loss.student_input = noisy`` the student reconstructs from the noisy features instead (the
    released code's extra noisy pass is then the student pass itself).
    With ``loss.alpha_objective = separation`` the scale head's own objective is added
    (:mod:`.scale_objective`); it needs the noise ``patches`` ([B, K, 4]).
    ``gather``: in multi-process training, this process's per-sample rows -> the global batch's.
    """
    device = next(model.parameters()).device
    noisy_teacher = None
    with autocast(device, precision):
        clean_teacher = teacher if teacher is not None else model.encode(clean)
        if uses_synthetic_anomalies(loss):
            if noisy is None:
                raise ValueError(f"loss form {loss.form!r} (student input {loss.student_input}) needs noisy images")
            noisy_teacher = model.encode(noisy)
        if loss.student_input == "noisy":  # the student repairs: from z towards u, away from z
            out = model.forward_features(noisy_teacher)
            out = SCRDOutput(teacher=clean_teacher, student=out.student, alpha=out.alpha, phi=out.phi)
        else:
            out = model.forward_features(clean_teacher)
            if noisy_teacher is not None and noisy_branch == "full_model" and model.training:
                with torch.no_grad():
                    model.reconstruct(noisy_teacher)

    def f32(features: list[torch.Tensor] | None) -> list[torch.Tensor] | None:
        return None if features is None else [f.float() for f in features]

    terms = distillation_loss(
        f32(out.teacher), f32(out.student), out.alpha.float(), loss, f32(noisy_teacher), gather=gather
    )
    if loss.alpha_objective == "separation":
        head = _head_objective(model, noisy_teacher, noisy, patches, loss, device, precision, gather)
        terms.loss = terms.loss + head
    return terms, out


def _head_objective(
    model: SCRD,
    noisy_teacher,
    noisy: torch.Tensor,
    patches: torch.Tensor | None,
    loss: LossConfig,
    device: torch.device,
    precision: str,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The separation objective of the scale head on the noisy batch (maps in eval mode, detached)."""
    if patches is None:
        raise ValueError("loss.alpha_objective 'separation' needs the noise patches")
    training = model.training
    model.eval()  # test-time BatchNorm for the maps, and no statistics moved by this extra pass
    with torch.no_grad(), autocast(device, precision):
        phi, student = model.reconstruct(noisy_teacher)
    model.train(training)
    mask = patch_mask(patches, noisy.shape[-2], noisy.shape[-1])
    gather = gather or (lambda rows: rows)
    teacher, student = [f.float() for f in noisy_teacher], [f.float() for f in student]
    alpha = model.alpha_of(phi.float(), teacher)
    if model.spatial_alpha:
        stack = upsampled_scale_maps(teacher, student, tuple(mask.shape[-2:]))
        return gather(spatial_separation_objective(alpha, stack, mask, loss.alpha_entropy)).mean()
    return separation_objective(gather(alpha), gather(patch_separation(teacher, student, mask)), loss.alpha_entropy)
