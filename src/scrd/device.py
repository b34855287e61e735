"""Choosing the torch device a job runs on."""

from __future__ import annotations

import torch

from .errors import DeviceError


def choose_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where the hardware computes bf16 natively (a CUDA GPU that supports it,
    or a CPU with AVX512-BF16 or AMX), else ``fp32``; ``fp32`` and ``bf16`` as asked."""
    if precision in ("fp32", "bf16"):
        return precision
    if precision != "auto":
        raise DeviceError(f"unknown precision {precision!r}; use auto, fp32 or bf16")
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native else "fp32"


def scoring_precision(precision: str, device: torch.device) -> str:
    """The precision a detector scores in: ``auto`` is fp32, so a score, and the decision at a threshold
    calibrated on scores, is the same on every machine and in the exported graph (bf16 moved scores by
    up to 0.17 on brain MRI); ``bf16`` only when asked for."""
    return resolve_precision("fp32" if precision == "auto" else precision, device)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on the device for ``precision == "bf16"``, else a no-op context. Callers keep
    losses, distances and maps in float32 (a bf16 cosine distance rounds away small changes)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format
