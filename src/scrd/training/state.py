"""The resumable state of a training run (``checkpoints/last.pt``): model, optimiser, every random
generator, the iteration, and the fingerprint of the data it was trained on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..anomalies.synthesis import AnomalySynthesizer
from ..errors import CheckpointError, ResumeError
from ..filenames import STATE_FILE, STATE_META
from ..storage import load_tensors, save_tensors, write_json


def save_state(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    synth: AnomalySynthesizer,
    iteration: int,
    data: dict[str, str],
    train_seconds: float = 0.0,
    world_size: int = 1,
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "iteration": iteration,
        "torch_rng": torch.get_rng_state(),
        "noise_rng": json.dumps(synth.state_dict()),
        "data": json.dumps(data),  # {"source", "fingerprint"}
        "train_seconds": float(train_seconds),
        "world_size": int(world_size),  # processes that trained it: a resume must use as many
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    save_tensors(run_dir / STATE_FILE, state)
    write_json(run_dir / STATE_META, {"iteration": iteration, "world_size": int(world_size), **data})


def check_same_data(saved: dict[str, str], source: str, fingerprint: str, where: Path) -> None:
    if saved.get("fingerprint") != fingerprint:
        before = f"{saved.get('source')!r} (fingerprint {saved.get('fingerprint', '?')[:12]})"
        raise ResumeError(
            f"{where}: the run was trained on {before}, but --data {source!r} has other images "
            f"(fingerprint {fingerprint[:12]}); resume with the run's own data, or start a new run"
        )


def check_same_world(saved: int, now: int, where: Path) -> None:
    """Exact resume holds for the number of processes that wrote the checkpoint: each one's shard
    of every batch, and the float rounding of the sums over them, depend on it."""
    if saved != now:
        how = "without torchrun" if saved == 1 else f"with torchrun, {saved} processes in all"
        raise ResumeError(
            f"{where}: the run was trained by {saved} process(es), this resume has {now}; "
            f"resume it {how}, or start a new run to train with {now}"
        )


def restore_state(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    synth: AnomalySynthesizer,
    source: str,
    fingerprint: str,
    world_size: int = 1,
) -> tuple[int, float]:
    """Load the checkpoint into the given objects; returns its iteration and the training seconds so far."""
    state = load_tensors(run_dir / STATE_FILE)
    check_same_data(json.loads(state.get("data", "{}")), source, fingerprint, run_dir / STATE_FILE)
    check_same_world(int(state.get("world_size", 1)), world_size, run_dir / STATE_FILE)
    try:
        model.load_state_dict(state["model"], strict=True)
        optimizer.load_state_dict(state["optimizer"])
        synth.load_state_dict(json.loads(state["noise_rng"]))
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{run_dir / STATE_FILE}: cannot resume from it: {exc}") from exc
    return int(state["iteration"]), float(state.get("train_seconds", 0.0))


def data_record(source: str, fingerprint: str) -> dict[str, Any]:
    return {"source": str(source), "fingerprint": fingerprint}
