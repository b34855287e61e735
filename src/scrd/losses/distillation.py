"""Reverse-distillation losses: RD4AD, the released SCRD form, Eq. 4 and Algorithm 2.

Every form uses the distance d(a, b) = 1 − cos(a, b) between *per-sample flattened* feature
maps (C·H·W vectors), the "global cosine" of the RD4AD code: the per-pixel form of the paper's
Eq. 1 trains markedly worse (RD4AD issue #22). Per-pixel cosines are used only for the maps.

Options (all in ``LossConfig``):

* ``form``: ``rd4ad`` Σ_k d(u_k, v_k); ``ratio_of_sums`` [Σ_k w_k d(u_k, v_k)] / [Σ_k w_k d(z_k, v_k)]
  (Algorithm 2 and the released code); ``per_scale_ratio`` Σ_k w_k d(u_k, v_k) / (d(z_k, v_k) + ε)
  (Eq. 4).
* ``alpha_placement``: ``outside`` w_k = α_k weights the distances (the paper's reading);
  ``inside_cosine`` multiplies both flattened vectors by α_k inside the cosine, as the released
  code does: a positive scalar cancels in a cosine, so α has no effect and gets no gradient;
  ``none`` w_k = 1.
* ``batch_reduction``: ``ratio_of_means`` averages numerator and denominator over the batch
  before dividing (released code); ``mean_of_ratios`` averages per-sample losses.
* ``eps`` is added to every denominator (Eq. 4's ε; 0 in the released code).
* ``alpha_grad``: ``detach`` stops the loss from training the scale head; so does
  ``alpha_objective = separation``, whose head objective is in :mod:`.scale_objective`.
* ``alpha_entropy`` β: with α trained by this loss, −β·H(α) is added (H the entropy of each
  sample's α, averaged), which keeps α from collapsing to one scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..config import LossConfig


def flat_cosine_distance(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """1 − cos of per-sample flattened features, shape [B]; ``scale`` multiplies both inside."""
    a, b = a.flatten(1), b.flatten(1)
    if scale is not None:
        a, b = a * scale[:, None], b * scale[:, None]
    return 1.0 - F.cosine_similarity(a, b, dim=1, eps=1e-8)


@dataclass
class LossTerms:
    loss: torch.Tensor  # scalar to minimise
    d_uv: torch.Tensor  # [B, K] distances student↔clean teacher (detached)
    d_zv: torch.Tensor | None  # [B, K] distances student↔noisy teacher (detached); None for rd4ad


def _distances(
    teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], alpha: torch.Tensor | None, inside: bool
) -> torch.Tensor:
    return torch.stack(
        [flat_cosine_distance(t, s, alpha[:, k] if inside else None) for k, (t, s) in enumerate(zip(teacher, student))],
        dim=1,
    )


def distillation_loss(
    clean: Sequence[torch.Tensor],
    student: Sequence[torch.Tensor],
    alpha: torch.Tensor | None,
    config: LossConfig,
    noisy: Sequence[torch.Tensor] | None = None,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> LossTerms:
    """The configured loss from clean teacher u, student v, scale weights α and noisy teacher z.

    ``gather`` maps this process's per-sample rows to the global batch's (multi-process training),
    so the batch means, and hence the loss, are those of the global batch.
    """
    placement = config.alpha_placement
    if placement != "none" and alpha is None:
        raise ValueError(f"alpha_placement={placement!r} needs the scale weights alpha")
    if alpha is not None and (config.alpha_grad == "detach" or config.alpha_objective == "separation"):
        alpha = alpha.detach()
    inside = placement == "inside_cosine"
    gather = gather or (lambda rows: rows)
    d_uv = gather(_distances(clean, student, alpha, inside))
    d_zv = gather(_distances(noisy, student, alpha, inside)) if noisy is not None and config.form != "rd4ad" else None
    alpha = gather(alpha) if alpha is not None else None
    weight = alpha if placement == "outside" else torch.ones_like(d_uv)

    bonus = 0.0
    if config.alpha_entropy > 0 and placement == "outside" and alpha.requires_grad:
        bonus = config.alpha_entropy * alpha_entropy(alpha)
    if config.form == "rd4ad":
        loss = (weight * d_uv).mean(0).sum() - bonus
        return LossTerms(loss, d_uv.detach(), None)
    if d_zv is None:
        raise ValueError(f"loss form {config.form!r} needs the noisy teacher features")
    eps, batch_level = config.eps, config.batch_reduction == "ratio_of_means"

    if config.form == "ratio_of_sums":
        num, den = (weight * d_uv).sum(1), (weight * d_zv).sum(1)
        loss = num.mean() / (den.mean() + eps) if batch_level else (num / (den + eps)).mean()
    elif config.form == "per_scale_ratio":
        if batch_level:
            loss = ((weight * d_uv).mean(0) / (d_zv.mean(0) + eps)).sum()
        else:
            loss = (weight * d_uv / (d_zv + eps)).sum(1).mean()
    else:
        raise ValueError(f"unknown loss form {config.form!r}")
    return LossTerms(loss - bonus, d_uv.detach(), d_zv.detach())


def alpha_entropy(alpha: torch.Tensor) -> torch.Tensor:
    """Mean over samples of H(α) = −Σ_k α_k log α_k (log 3 for uniform weights, 0 for one-hot)."""
    return -(alpha * alpha.clamp_min(1e-12).log()).sum(1).mean()
