"""A detector's saved format: ``model.pt`` and ``model.json`` in one folder.

``model.pt`` holds plain tensors (loaded with ``weights_only=True``, so it cannot run code): the
network's state dict (``state_dict``, keys as the released code's after renaming, see
:mod:`scrd.model.official`) and the scoring head's (``scoring``: normal-image statistics and the
memory bank). ``model.json`` holds the config, teacher weights, calibration and provenance. Models
saved by scrd 0.2 (format scrd-checkpoint/1, statistics in model.json) load too (:mod:`scrd.scoring.legacy`).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from torch import nn

from ..config import Config
from ..data.readers import is_image_file
from ..device import choose_device
from ..errors import CheckpointError
from ..filenames import CHECKPOINT_FORMAT, LEGACY_CHECKPOINT_FORMATS, MODEL_FILE, MODEL_META, STATE_FILE
from ..scoring.head import ScoringHead
from ..scoring.legacy import fill_head
from ..scoring.statistics import statistics_record
from ..storage import load_tensors, read_json, save_tensors, write_json
from ..version import __version__
from .parts import build_head, build_network


def resolve_model_path(path: str | Path) -> Path:
    """A run directory or a ``model.pt`` file -> the model's state-dict file (with its model.json)."""
    path = Path(path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file() and (path / STATE_FILE).is_file():
            raise CheckpointError(
                f"{path}: the run has not finished (no {MODEL_FILE}, only {STATE_FILE}); "
                f"finish it with scrd train --resume --out {path} --data DATA"
            )
        path = path / MODEL_FILE
    elif path.is_file() and path.name != MODEL_FILE:
        if path.parent.name == Path(STATE_FILE).parent.name:
            raise CheckpointError(
                f"{path}: is a training checkpoint, not a model; pass the run directory "
                f"{path.parent.parent} (resume the run first if it has not finished)"
            )
        if is_image_file(path):
            raise CheckpointError(f"{path}: is an image; --model expects a run directory or its {MODEL_FILE}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no trained model here (expected a run directory or a {MODEL_FILE} file)")
    if not (path.parent / MODEL_META).is_file():
        raise CheckpointError(
            f"{path}: its {MODEL_META} is not beside it in {path.parent}; a model is the two "
            f"files {MODEL_FILE} and {MODEL_META} of one folder"
        )
    return path


def write_model(
    network: nn.Module, head: ScoringHead, config: Config, metadata: dict[str, Any], directory: str | Path
) -> Path:
    """Write model.pt and model.json (``metadata`` is completed with the format, config and provenance)."""
    directory = Path(directory)
    path = directory / MODEL_FILE
    tensors = {
        "state_dict": network.state_dict(),
        "scoring": head.state_dict(),
        "method": config.model.method,
        "arch": config.model.arch,
    }
    save_tensors(path, tensors)
    if head.has_bank:
        metadata["memory_bank_shape"] = list(head.bank.shape)
    metadata.update(
        {
            "format": CHECKPOINT_FORMAT,
            "method": config.model.method,
            "arch": config.model.arch,
            "scrd_version": __version__,
            "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": config.to_dict(),
            "scoring_statistics": {**metadata.get("scoring_statistics", {}), **statistics_record(head)},
        }
    )
    write_metadata(metadata, directory)
    return path


def write_metadata(metadata: dict[str, Any], directory: str | Path) -> None:
    write_json(Path(directory) / MODEL_META, metadata)


def read_model(path: str | Path, device: str = "auto") -> tuple[nn.Module, ScoringHead, Config, dict[str, Any], Any]:
    """(network, head, config, metadata, device) of a saved model, on ``device`` ("auto": CUDA if any)."""
    model_path = resolve_model_path(path)
    meta_path = model_path.parent / MODEL_META
    metadata = read_json(meta_path)
    fmt = metadata.get("format")
    if fmt != CHECKPOINT_FORMAT and fmt not in LEGACY_CHECKPOINT_FORMATS:
        raise CheckpointError(
            f"{meta_path}: format {fmt!r} is not one this scrd ({__version__}) reads "
            f"({', '.join((CHECKPOINT_FORMAT, *LEGACY_CHECKPOINT_FORMATS))}); retrain the model with this version"
        )
    config = Config.from_dict(metadata["config"])
    state = load_tensors(model_path)
    held = (state.get("method", config.model.method), state.get("arch", config.model.arch))
    if held != (config.model.method, config.model.arch):
        raise CheckpointError(
            f"{model_path}: holds a {held[0]} {held[1]} model, but {MODEL_META} says "
            f"{config.model.method} {config.model.arch}: the two files come from different "
            "runs; keep a run's model.pt and model.json together"
        )
    network_state = dict(state.get("state_dict", {}))
    if fmt == CHECKPOINT_FORMAT:
        head_state = state.get("scoring")
        if head_state is None:
            raise CheckpointError(f"{model_path}: holds no scoring state ('scoring'); keep a run's files together")
        bank = head_state.get("bank")
    else:  # scrd 0.2: the knn bank inside the network's state dict, a student's bank beside it
        bank = network_state.pop("bank", None) if config.model.method == "knn" else state.get("memory_bank")
        head_state = None
    if (config.model.method == "knn" or config.model.memory_bank) and bank is None:
        raise CheckpointError(
            f"{model_path}: {MODEL_META} says the model has a memory bank, but the file holds none; "
            "keep a run's model.pt and model.json together"
        )
    network = build_network(config)
    head = build_head(config, None if bank is None else tuple(bank.shape))
    try:
        network.load_state_dict(network_state, strict=True)
        if head_state is not None:
            head.load_state_dict(head_state, strict=True)
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise CheckpointError(
            f"{model_path}: does not fit a {config.model.method} {config.model.arch} model ({first})"
        ) from exc
    if head_state is None:
        if bank is not None:
            head.bank = bank
        fill_head(head, metadata.get("normal_statistics", {}))
    return network.eval(), head, config, metadata, choose_device(device)
