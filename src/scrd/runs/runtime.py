"""How a job runs a model on this machine: what evaluate, calibrate and predict share and a model's
config does not hold (the same model may be scored on a laptop CPU or a GPU server)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Runtime:
    batch_size: int = 16
    device: str = "auto"  # auto: CUDA when available
    precision: str = "auto"  # auto: fp32 for scoring (scrd.device.scoring_precision); bf16 when asked for
    num_workers: int = 0  # DataLoader worker processes that decode images
    on_bad_image: str | None = None  # error or skip; None: the model's data.on_bad_image


DEFAULT_RUNTIME = Runtime()  # frozen: safe as a default argument
