"""The SCRD network: frozen teacher, OCBE bottleneck, student decoder and scale head.

The model is pure: it maps images to tensors and knows nothing of files, losses or optimisers.
Training (clean and noisy passes, the loss) lives in :mod:`scrd.losses` and :mod:`scrd.training`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from .backbones import Teacher, backbone_spec
from .bottleneck import OCBE
from .decoder import DeBasicBlock, DeBottleneck, StudentDecoder
from .scale_head import ScaleHead, SpatialScaleHead
from .weights import load_teacher_weights


@dataclass
class SCRDOutput:
    teacher: list[torch.Tensor]  # u_k, k = 1..3 (highest resolution first)
    student: list[torch.Tensor]  # v_k
    alpha: torch.Tensor  # [B, 3] scale weights (a spatial head: their mean over the image)
    phi: torch.Tensor  # bottleneck code
    alpha_map: torch.Tensor | None = None  # [B, 3, H_2, W_2] per-location weights of a spatial head


class SCRD(nn.Module):
    def __init__(self, arch: str = "wide_resnet50_2", scale_head: str = "global") -> None:
        super().__init__()
        spec = backbone_spec(arch)
        self.arch = arch
        self.teacher = Teacher(arch)
        self.bottleneck = OCBE(
            spec.block, spec.channels, spec.ocbe_blocks, spec.width_per_group, keep_unused=spec.official_layout
        )
        de_block = DeBottleneck if spec.block is Bottleneck else DeBasicBlock
        self.decoder = StudentDecoder(
            de_block,
            self.bottleneck.out_channels,
            spec.channels,
            spec.decoder_layers,
            spec.width_per_group,
            signed_targets=spec.signed_features,
        )
        if scale_head == "global":
            self.scale_head = ScaleHead(self.bottleneck.out_channels, num_scales=3)
        elif scale_head == "spatial":
            self.scale_head = SpatialScaleHead(spec.channels, num_scales=3)
        else:
            raise ValueError(f"scale_head must be 'global' or 'spatial', got {scale_head!r}")
        self.spatial_alpha = scale_head == "spatial"

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
        return self.forward_features(self.encode(x))

    def forward_features(self, teacher_features: list[torch.Tensor]) -> SCRDOutput:
        """Everything after the teacher, from its features (e.g. cached ones)."""
        phi, v = self.reconstruct(teacher_features)
        alpha = self.alpha_of(phi, teacher_features)
        if self.spatial_alpha:
            return SCRDOutput(teacher_features, v, alpha.mean((2, 3)), phi, alpha_map=alpha)
        return SCRDOutput(teacher=teacher_features, student=v, alpha=alpha, phi=phi)

    def alpha_of(self, phi: torch.Tensor, teacher_features: list[torch.Tensor]) -> torch.Tensor:
        """The scale head's output: [B, 3] from φ (global) or [B, 3, H_2, W_2] from the teacher (spatial)."""
        return self.scale_head(teacher_features) if self.spatial_alpha else self.scale_head(phi)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Bottleneck, decoder and scale head: what the optimiser updates."""
        return [p for m in (self.bottleneck, self.decoder, self.scale_head) for p in m.parameters()]


def build_model(
    arch: str = "wide_resnet50_2", weights: str = "imagenet", scale_head: str = "global"
) -> tuple[SCRD, str]:
    """A new SCRD model with teacher ``weights``; returns the model and a description of them."""
    model = SCRD(arch, scale_head)
    return model, load_teacher_weights(model.teacher, weights)
