"""The empty parts of a detector for a config: its network and its scoring head."""

from __future__ import annotations

from torch import nn

from ..config import Config
from ..model import SCRD, TeacherOnly
from ..scoring.head import ScoringHead


def build_network(config: Config) -> nn.Module:
    """An empty network of the config's method (weights come from a state dict or training)."""
    if config.model.method == "knn":
        return TeacherOnly(config.model.arch)
    return SCRD(config.model.arch, config.model.scale_head)


def build_head(config: Config, bank_shape: tuple[int, int] | None = None) -> ScoringHead:
    """An unmeasured scoring head for the config, with a memory bank of ``bank_shape`` when given (the
    knn method always has one; a student has one with model.memory_bank, once it is fitted)."""
    scales = 0 if config.model.method == "knn" else 3
    bank = config.knn if bank_shape is not None else None
    return ScoringHead(config.scoring, config.model.image_size, scales, bank, bank_shape or (0, 0))
