"""Turn decoded arrays into model-sized tensors, and normalise batches for the network.

The dataset returns images in [0, 1] space; ImageNet normalisation is applied by the training and
inference code *after* anomaly noise is added, as the released SCRD code does (noise is defined
in [0, 1] pixel space and is never clipped).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ITU-R BT.601 luma weights (what Pillow's convert('L') and cv2's RGB2GRAY use).
_LUMA = (0.299, 0.587, 0.114)


def to_model_tensor(img: np.ndarray, size: int, channels: int = 3) -> torch.Tensor:
    """Convert ``[H, W, C]`` float data to a ``[channels, size, size]`` float32 tensor.

    Resizing is bilinear with ``align_corners=False`` and no antialiasing, the closest torch
    equivalent of the ``cv2.resize(INTER_LINEAR)`` in the released code. Like that code, the
    image is stretched to a square (aspect ratio not kept). Grey is replicated to 3 channels when
    ``channels == 3`` (cv2.imread does the same); RGB is reduced to luma when ``channels == 1``.
    Values are not clipped.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"expected an [H, W, C] array with C = 1 or 3, got shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    if x.shape[0] == 3 and channels == 1:
        x = (x * torch.tensor(_LUMA).view(3, 1, 1)).sum(0, keepdim=True)
    if tuple(x.shape[1:]) != (size, size):
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=False)[0]
    if x.shape[0] == 1 and channels == 3:
        x = x.expand(3, -1, -1)
    return x.contiguous()


def normalize(
    x01: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """``(x - mean) / std`` per channel for a ``[B, C, H, W]`` (or ``[C, H, W]``) tensor.

    Works on whatever device and float dtype ``x01`` has; returns a new tensor.
    """
    if x01.dim() not in (3, 4):
        raise ValueError(f"expected [B, C, H, W] or [C, H, W], got shape {tuple(x01.shape)}")
    c = x01.shape[-3]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"{c} channels but mean/std have {len(mean)}/{len(std)} entries")
    dtype = x01.dtype if x01.is_floating_point() else torch.float32
    m = torch.as_tensor(mean, dtype=dtype, device=x01.device).view(c, 1, 1)
    s = torch.as_tensor(std, dtype=dtype, device=x01.device).view(c, 1, 1)
    return (x01.to(dtype) - m) / s
