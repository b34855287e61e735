"""Frozen teacher encoders from torchvision, by name (the architecture registry).

Each teacher returns three feature maps at strides 4, 8 and 16 (64, 32 and 16 pixels at a 256
input), the scales k = 1, 2, 3 of the paper. ImageNet weights are always torchvision's
IMAGENET1K_V1 files: ``weights="DEFAULT"`` is V2 for resnet50, wide_resnet50_2 and
mobilenet_v2, a different network from the one SCRD and RD4AD were trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, Bottleneck

from ..config import ARCHITECTURES
from ..errors import ConfigError


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the model needs to know about one teacher architecture."""

    name: str
    build: Callable[[], nn.Module]
    weight_url: str  # torchvision IMAGENET1K_V1
    weight_sha256: str | None  # full digest when known; else the 8-hex prefix in the name is checked
    channels: tuple[int, int, int]  # feature channels at strides 4, 8, 16
    block: type[nn.Module]  # residual block of the OCBE's fusion stage
    ocbe_blocks: int
    decoder_layers: tuple[int, int, int]
    width_per_group: int = 64
    official_layout: bool = True  # the released code has this architecture (keys_<arch>.json)
    signed_features: bool = False  # teacher features can be negative (no ReLU at the taps)

    @property
    def weight_file(self) -> str:
        return self.weight_url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        return self.weight_file.rsplit("-", 1)[-1].split(".")[0]


_URL = "https://download.pytorch.org/models/"

BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(
        "resnet18", models.resnet18, _URL + "resnet18-f37072fd.pth", None, (64, 128, 256), BasicBlock, 2, (2, 2, 2)
    ),
    "resnet34": BackboneSpec(
        "resnet34", models.resnet34, _URL + "resnet34-b627a593.pth", None, (64, 128, 256), BasicBlock, 3, (3, 4, 6)
    ),
    "resnet50": BackboneSpec(
        "resnet50", models.resnet50, _URL + "resnet50-0676ba61.pth", None, (256, 512, 1024), Bottleneck, 3, (3, 4, 6)
    ),
    "wide_resnet50_2": BackboneSpec(
        "wide_resnet50_2",
        models.wide_resnet50_2,
        _URL + "wide_resnet50_2-95faca4d.pth",
        None,
        (256, 512, 1024),
        Bottleneck,
        3,
        (3, 4, 6),
        width_per_group=128,
    ),
    # Not in the released code; our own mirrored design (see docs/architecture.md).
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2",
        models.mobilenet_v2,
        _URL + "mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        (24, 32, 96),
        BasicBlock,
        2,
        (2, 2, 2),
        official_layout=False,
        signed_features=True,
    ),
}

if tuple(BACKBONES) != ARCHITECTURES:  # the config's list of choices and this registry are one list
    raise ImportError(f"backbone registry {tuple(BACKBONES)} differs from config ARCHITECTURES {ARCHITECTURES}")

# torchvision mobilenet_v2.features indices ending each stride: /4 after 3, /8 after 6, /16 after 13.
_MOBILENET_STAGES = ((0, 4), (4, 7), (7, 14))


def backbone_spec(arch: str) -> BackboneSpec:
    try:
        return BACKBONES[arch]
    except KeyError:
        raise ConfigError(f"unknown arch {arch!r}; choose one of {', '.join(BACKBONES)}") from None


class Teacher(nn.Module):
    """A frozen torchvision network that returns its features at three scales.

    The torchvision modules are registered directly on this module (``teacher.conv1``,
    ``teacher.layer1`` …), so a torchvision state dict, and the released code's ``encoder.*``
    keys, load into it unchanged. Layers that never run (ResNet ``layer4``/``fc``, the
    MobileNet classifier) are kept for that strict compatibility but never executed.
    The teacher is always in eval mode, runs without gradients and never updates BatchNorm
    statistics, whatever mode the parent model is put in.
    """

    def __init__(self, arch: str) -> None:
        super().__init__()
        self.arch = arch
        net = backbone_spec(arch).build()
        for name, child in net.named_children():
            self.add_module(name, child)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "Teacher":
        return super().train(False)  # frozen BatchNorm, always

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.training:  # someone bypassed train(); never let BN statistics move
            super().train(False)
        if self.arch == "mobilenet_v2":
            feats, out = [], x
            for start, stop in _MOBILENET_STAGES:
                for i in range(start, stop):
                    out = self.features[i](out)
                feats.append(out)
            return feats
        out = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(out)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [f1, f2, f3]

    def used_parameter_names(self) -> set[str]:
        """Names of the parameters that take part in the forward pass."""
        if self.arch == "mobilenet_v2":
            keep = tuple(f"features.{i}." for i in range(_MOBILENET_STAGES[-1][1]))
        else:
            keep = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")
        return {n for n, _ in self.named_parameters() if n.startswith(keep)}
