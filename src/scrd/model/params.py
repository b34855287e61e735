"""Parameter counts of an SCRD model by part (``scrd params``)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .scrd import SCRD


def parameter_counts(model: SCRD) -> "OrderedDict[str, int]":
    """Parameter counts by part; 'unused' layers are stored but never run."""

    def count(module: nn.Module, names: set[str] | None = None) -> int:
        return sum(p.numel() for n, p in module.named_parameters() if names is None or n in names)

    teacher_used = count(model.teacher, model.teacher.used_parameter_names())
    bottleneck_used = count(model.bottleneck, model.bottleneck.used_parameter_names())
    counts = OrderedDict(
        [
            ("teacher (layers used)", teacher_used),
            ("teacher (stored, never run)", count(model.teacher) - teacher_used),
            ("OCBE bottleneck (used)", bottleneck_used),
            ("OCBE bottleneck (stored, never run)", count(model.bottleneck) - bottleneck_used),
            ("student decoder", count(model.decoder)),
            ("scale head", count(model.scale_head)),
        ]
    )
    counts["trainable (OCBE used + decoder + scale head)"] = (
        bottleneck_used + counts["student decoder"] + counts["scale head"]
    )
    counts["run at inference (teacher used + trainable)"] = (
        teacher_used + counts["trainable (OCBE used + decoder + scale head)"]
    )
    counts["total stored"] = sum(p.numel() for p in model.parameters())
    return counts
