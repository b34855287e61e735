"""Measuring a scoring head's normal-image statistics (its ``map_*``, ``score_*`` and ``pair_*`` buffers).

A head reads, depending on its scoring: each scale map's pixel mean and std (``standardized``), each
scale's image-score mean and std (the ``normal_*`` fusions), and the (student, bank) image-score means
and stds that put the two maps in common units. The last depends on the first two, so the per-scale
maps of the normal images are kept (on the CPU, [N, K + 1, S, S] floats: about 200 MB for 200 images
at 256 px) and the pair statistics are measured from them: one network pass over the images.

The normal images are the run's held-out normal training images (training refuses to measure them
on images it trained on); the means and stds are population statistics over those images, in float64.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import torch

from .head import STATISTICS, ScoringHead
from .maps import gaussian_smooth
from .scale_fusion import per_scale_scores, scale_score_statistics


class NormalFeatures(NamedTuple):
    teacher: Sequence[torch.Tensor]
    student: Sequence[torch.Tensor] | None
    alpha: torch.Tensor | None


@torch.no_grad()
def measure_statistics(heads: Sequence[ScoringHead], batches: Iterable[NormalFeatures]) -> int:
    """Fill the statistics every head in ``heads`` needs from the features of normal images; returns
    the number of images. Heads that differ only after the network share ``batches`` (one pass)."""
    heads = [h for h in heads if any(h.needs().values())]
    kept: list[list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]] = [[] for _ in heads]
    moments = [(0.0, 0.0, 0) for _ in heads]
    scale_scores: list[list[torch.Tensor]] = [[] for _ in heads]
    images = 0
    for features in batches:
        images += len(features.teacher[0])
        with torch.autocast(features.teacher[0].device.type, enabled=False):
            teacher = [t.float() for t in features.teacher]
            student = None if features.student is None else [v.float() for v in features.student]
            searched: dict[tuple, torch.Tensor] = {}  # one search per bank, way of searching, batch
            for i, head in enumerate(heads):
                needs = head.needs()
                stack = head.scale_stack(teacher, student, features.alpha) if head.has_student else None
                if needs["map_moments"]:
                    total, total_sq, pixels = moments[i]
                    values = stack.double()
                    moments[i] = (
                        total + values.sum((0, 2, 3)),
                        total_sq + (values * values).sum((0, 2, 3)),
                        pixels + values.shape[0] * values.shape[2] * values.shape[3],
                    )
                if needs["scale_scores"]:
                    scale_scores[i].append(
                        per_scale_scores(gaussian_smooth(stack, head.scoring.sigma), head.scoring).cpu()
                    )
                if needs["pair"]:
                    if head.search_key() not in searched:
                        searched[head.search_key()] = head.unsmoothed_bank_map(teacher).cpu()
                    kept[i].append((stack.cpu(), searched[head.search_key()], _cpu(features.alpha)))
    if images < 2:
        raise ValueError(f"need at least 2 normal images to measure scoring statistics, got {images}")
    for i, head in enumerate(heads):
        needs = head.needs()
        if needs["map_moments"]:
            total, total_sq, pixels = moments[i]
            mean = total / pixels
            head.map_mean.copy_(mean)
            head.map_std.copy_((total_sq / pixels - mean * mean).clamp_min(0).sqrt())
        if needs["scale_scores"]:
            stats = scale_score_statistics(torch.cat(scale_scores[i]))
            head.score_mean.copy_(torch.tensor(stats["mean"], dtype=torch.float64))
            head.score_std.copy_(torch.tensor(stats["std"], dtype=torch.float64))
        if needs["pair"]:
            _measure_pair(head, kept[i])
    return images


def _measure_pair(head: ScoringHead, kept: list) -> None:
    """The (student, bank) image-score statistics, from the kept per-scale maps: the student's map is
    fused with the statistics measured just before."""
    per_image = []
    device = head.pair_mean.device
    for stack, bank, alpha in kept:
        stack = stack.to(device)
        alpha = None if alpha is None else alpha.to(device)
        student_map = head.fuse_scales(stack, alpha)[0]
        bank_map = gaussian_smooth(bank.to(device), head.scoring.sigma)[:, 0]
        per_image.append(per_scale_scores(torch.stack([student_map, bank_map], 1), head.scoring).cpu())
    stats = scale_score_statistics(torch.cat(per_image))
    head.pair_mean.copy_(torch.tensor(stats["mean"], dtype=torch.float64))
    head.pair_std.copy_(torch.tensor(stats["std"], dtype=torch.float64))


def _cpu(alpha: torch.Tensor | None) -> torch.Tensor | None:
    return None if alpha is None else alpha.float().cpu()


def statistics_record(head: ScoringHead) -> dict[str, list[float]]:
    """The head's measured statistics as plain numbers, for model.json (a record; scoring reads the buffers)."""
    return {n: getattr(head, n).tolist() for n in STATISTICS if not torch.isnan(getattr(head, n)).all()}
