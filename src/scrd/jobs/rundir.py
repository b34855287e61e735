"""What every job does with its process and run directory: seeding and the environment report."""

from __future__ import annotations

import os
import platform
import random
import sys
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..allocator import allocator_name, tune_malloc


def prepare_process() -> None:
    """Process-wide settings every compute job wants: the allocator tuning of scrd.allocator."""
    tune_malloc()


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    # TF32 changes features beyond the parity tolerances; keep full float32 precision.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def environment_report(device: torch.device) -> dict[str, Any]:
    import torchvision

    report: dict[str, Any] = {
        "scrd": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "allocator": allocator_name(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        report["cuda_device"] = torch.cuda.get_device_name(device)
        report["cuda_version"] = torch.version.cuda
    return report
