"""The SCRD network: frozen teacher, OCBE bottleneck, student decoder and scale head.

The model is pure: it maps images to tensors and knows nothing of files, losses or optimisers.
Training (clean and noisy passes, the loss) lives in ``scrd.training``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from .backbones import Teacher, backbone_spec, load_teacher_weights
from .bottleneck import OCBE, ScaleHead
from .decoder import DeBasicBlock, DeBottleneck, StudentDecoder


@dataclass
class SCRDOutput:
    teacher: list[torch.Tensor]  # u_k, k = 1..3 (highest resolution first)
    student: list[torch.Tensor]  # v_k
    alpha: torch.Tensor  # [B, 3] scale weights from the clean pass
    phi: torch.Tensor  # bottleneck code


class SCRD(nn.Module):
    def __init__(self, arch: str = "wide_resnet50_2") -> None:
        super().__init__()
        spec = backbone_spec(arch)
        self.arch = arch
        self.teacher = Teacher(arch)
        self.bottleneck = OCBE(spec.block, spec.channels, spec.ocbe_blocks, spec.width_per_group,
                               keep_unused=spec.official_layout)
        de_block = DeBottleneck if spec.block is Bottleneck else DeBasicBlock
        self.decoder = StudentDecoder(de_block, self.bottleneck.out_channels, spec.channels,
                                      spec.decoder_layers, spec.width_per_group,
                                      signed_targets=spec.signed_features)
        self.scale_head = ScaleHead(self.bottleneck.out_channels, num_scales=3)

    def train(self, mode: bool = True) -> "SCRD":
        super().train(mode)
        self.teacher.train(False)  # the teacher is frozen in every mode
        return self

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Teacher features (no gradients, frozen BatchNorm)."""
        return self.teacher(x)

    def reconstruct(self, teacher_features: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """φ and the student's features from teacher features."""
        phi = self.bottleneck(teacher_features)
        return phi, self.decoder(phi)

    def forward(self, x: torch.Tensor) -> SCRDOutput:
        u = self.encode(x)
        phi, v = self.reconstruct(u)
        return SCRDOutput(teacher=u, student=v, alpha=self.scale_head(phi), phi=phi)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Bottleneck, decoder and scale head: what the optimiser updates."""
        return [p for m in (self.bottleneck, self.decoder, self.scale_head) for p in m.parameters()]


def build_model(arch: str = "wide_resnet50_2", weights: str = "imagenet") -> tuple[SCRD, str]:
    """A new SCRD model with teacher ``weights``; returns the model and a description of them."""
    model = SCRD(arch)
    return model, load_teacher_weights(model.teacher, weights)


# ------------------------------------------------------------------ released-code state dicts

# Released code (MedAITech/SCRD4AD `RdadAtten`) prefix -> ours.
_OFFICIAL_PREFIXES = (("encoder.", "teacher."), ("bn.", "bottleneck."), ("decoder.", "decoder."),
                      ("mlp.", "scale_head.linear."))


def _rename(state: Mapping[str, torch.Tensor], pairs: tuple[tuple[str, str], ...]) -> "OrderedDict[str, torch.Tensor]":
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        for old, new in pairs:
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            raise KeyError(f"state-dict key {key!r} has none of the prefixes {[p for p, _ in pairs]}")
    return out


def from_official_state_dict(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Rename a released-code (``RdadAtten``) state dict to this model's keys, order kept."""
    return _rename(state, _OFFICIAL_PREFIXES)


def to_official_state_dict(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Rename this model's state dict to the released code's key layout."""
    return _rename(state, tuple((new, old) for old, new in _OFFICIAL_PREFIXES))


def load_official_state_dict(model: SCRD, state: Mapping[str, torch.Tensor]) -> None:
    """Load a released-code checkpoint's state dict (strict: every key must match)."""
    model.load_state_dict(from_official_state_dict(state), strict=True)


def parameter_counts(model: SCRD) -> "OrderedDict[str, int]":
    """Parameter counts by part; 'unused' layers are stored but never run."""
    def count(module: nn.Module, names: set[str] | None = None) -> int:
        return sum(p.numel() for n, p in module.named_parameters() if names is None or n in names)

    teacher_used = count(model.teacher, model.teacher.used_parameter_names())
    bottleneck_used = count(model.bottleneck, model.bottleneck.used_parameter_names())
    counts = OrderedDict([
        ("teacher (layers used)", teacher_used),
        ("teacher (stored, never run)", count(model.teacher) - teacher_used),
        ("OCBE bottleneck (used)", bottleneck_used),
        ("OCBE bottleneck (stored, never run)", count(model.bottleneck) - bottleneck_used),
        ("student decoder", count(model.decoder)),
        ("scale head", count(model.scale_head)),
    ])
    counts["trainable (OCBE used + decoder + scale head)"] = (
        bottleneck_used + counts["student decoder"] + counts["scale head"])
    counts["run at inference (teacher used + trainable)"] = (
        teacher_used + counts["trainable (OCBE used + decoder + scale head)"])
    counts["total stored"] = sum(p.numel() for p in model.parameters())
    return counts
