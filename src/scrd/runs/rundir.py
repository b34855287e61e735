"""What every job does with its process and run directory: seeding and the environment report."""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..allocator import allocator_name, tune_malloc
from ..version import __version__


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


def git_commit() -> str | None:
    """The commit of the scrd source tree when it is a git checkout (an editable install), else None;
    "+changes" is appended when the tree differs from that commit."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+changes" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_report(device: torch.device) -> dict[str, Any]:
    """What produced a run's numbers: versions (scrd and its commit, torch build), the machine and
    the device, so two runs with the same settings and different results can be told apart."""
    import torchvision

    report: dict[str, Any] = {
        "scrd": __version__,
        "scrd_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_git": torch.version.git_version,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "allocator": allocator_name(),
    }
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
        report["cuda_version"] = torch.version.cuda
    return report
