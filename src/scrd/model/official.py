"""Released-code (MedAITech/SCRD4AD ``RdadAtten``) state dicts: key conversion and strict loading.

Our attribute names say what they are (``teacher``, ``bottleneck``, ``scale_head``); the released
code names them ``encoder``, ``bn``, ``mlp``. Converting renames prefixes and keeps the order.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import torch

from .scrd import SCRD

# Released code (MedAITech/SCRD4AD `RdadAtten`) prefix -> ours.
_OFFICIAL_PREFIXES = (
    ("encoder.", "teacher."),
    ("bn.", "bottleneck."),
    ("decoder.", "decoder."),
    ("mlp.", "scale_head.linear."),
)


def _rename(state: Mapping[str, torch.Tensor], pairs: tuple[tuple[str, str], ...]) -> "OrderedDict[str, torch.Tensor]":
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        for old, new in pairs:
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            raise KeyError(f"state-dict key {key!r} has none of the prefixes {[p for p, _ in pairs]}")
    return out


def from_official_state_dict(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Rename a released-code (``RdadAtten``) state dict to this model's keys, order kept."""
    return _rename(state, _OFFICIAL_PREFIXES)


def to_official_state_dict(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Rename this model's state dict to the released code's key layout."""
    return _rename(state, tuple((new, old) for old, new in _OFFICIAL_PREFIXES))


def load_official_state_dict(model: SCRD, state: Mapping[str, torch.Tensor]) -> None:
    """Load a released-code checkpoint's state dict (strict: every key must match)."""
    model.load_state_dict(from_official_state_dict(state), strict=True)
