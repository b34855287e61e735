"""Named presets: each is a set of option values over the defaults (the released code's).

``docs/configuration.md`` describes each preset and why its values are what they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    overrides: dict[str, Any]  # dotted keys over the defaults


_PRESETS = (
    Preset(
        "official",
        "the released code: its loss and its map with α inside the cosine (a no-op unless α saturates), "
        "the fixed noise texture, the noisy image through bottleneck and decoder, the mean score",
        {},
    ),
    Preset(
        "paper",
        "the paper's text: Eq. 4 with ε and α weighting the distances, fresh simplex noise for every "
        "sample, the noisy image through the teacher only (Fig. 1), an α-weighted map",
        {
            "noise.field": "fresh",
            "noise.patch_rng": "generator",
            "loss.form": "per_scale_ratio",
            "loss.alpha_placement": "outside",
            "loss.batch_reduction": "mean_of_ratios",
            "loss.eps": 1e-6,
            "train.noisy_branch": "encoder_only",
            "scoring.alpha_weighting": "weighted",
        },
    ),
    Preset(
        "rd4ad",
        "the RD4AD baseline (Table 2, first row) in the same pipeline: Eq. 1 with the flattened cosine, "
        "no synthetic anomalies, no α",
        {
            "loss.form": "rd4ad",
            "loss.alpha_placement": "none",
            "train.noisy_branch": "encoder_only",
            "scoring.alpha_weighting": "none",
        },
    ),
)

_PRESETS += (
    Preset(
        "knn",
        "the training-free reference: a memory bank of 3x3-averaged teacher patches (scales 2 and 3, "
        "10 % random subset), nearest-neighbour distance maps, image score = largest value (PatchCore)",
        {"model.method": "knn", "scoring.score": "max"},
    ),
)

# The best configurations measured on brain MRI (docs/results.md; docs/configuration.md says where they
# depart from the paper and the released code, and why).
_DENOISING = {
    "noise.field": "fresh",
    "noise.patch_rng": "generator",
    "loss.form": "rd4ad",
    "loss.alpha_placement": "none",
    "loss.student_input": "noisy",
    "train.noisy_branch": "encoder_only",
    "train.iterations": 4000,
    "train.lr_schedule": "cosine",
    "scoring.alpha_weighting": "none",
    "scoring.feature_pool": 3,
    "scoring.score": "top_k",
    "scoring.top_k_percent": 5.0,
    "scoring.scale_fusion": "normal_softmax",
    "scoring.fusion_temperature": 2.0,
}
_PRESETS += (
    Preset(
        "denoising",
        "denoising reverse distillation: the student reconstructs the clean image's teacher features "
        "from the noisy image's (fresh simplex patches through the teacher only), RD4AD's cosine loss, "
        "no α, 4000 iterations on a cosine learning rate; maps compare 3x3-averaged features, each scale's "
        "map in units of its spread over held-out normal images and weighted per image by softmax(z / 2) of "
        "how far the image departs from them at that scale; image score = mean of the top 5 % of the map",
        _DENOISING,
    ),
    Preset(
        "denoising_knn",
        "the denoising preset's student with the knn reference's memory bank beside it (fitted after "
        "training, on the same teacher): the student's fused map and the bank's distance map, each in "
        "units of its image score's spread over held-out normal images, are added; image score = mean "
        "of the top 5 % of that map",
        {**_DENOISING, "model.memory_bank": True, "scoring.memory_bank_weight": 1.0},
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
DEFAULT_PRESET = "denoising_knn"  # the best measured (docs/results.md); Config() stays the released code


def preset_overrides(name: str) -> dict[str, Any]:
    """The dotted-key values of preset ``name`` over the defaults."""
    try:
        return dict(PRESETS[name].overrides)
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}") from None


def preset(name: str):
    """The full :class:`~scrd.config.Config` of preset ``name``."""
    from .schema import Config

    return Config().with_overrides(preset_overrides(name))
