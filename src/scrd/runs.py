"""Run directories, device choice, seeding and the environment report."""

from __future__ import annotations

import os
import platform
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__

CONFIG_FILE = "config.yaml"
ENV_FILE = "environment.json"
LOG_FILE = "train_log.csv"
STATE_FILE = "checkpoints/last.pt"
STATE_META = "checkpoints/last.json"
MODEL_FILE = "model.pt"
MODEL_META = "model.json"
SKIPPED_FILE = "skipped_images.csv"
CHECKPOINT_FORMAT = "scrd-checkpoint/1"


def choose_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device


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
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        report["cuda_device"] = torch.cuda.get_device_name(device)
        report["cuda_version"] = torch.version.cuda
    return report


def resolve_model_path(path: str | Path) -> Path:
    """A run directory or a model file -> the model state-dict file."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model here (expected a run directory or a {MODEL_FILE} file)")
    return path
