"""Named presets: each is a set of option values over the defaults (which are the recommended
detector, ``denoising_knn``).

``docs/configuration.md`` describes each preset and why its values are what they are. This module
is data only: :func:`scrd.config.preset` builds the config of a name.
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


# The released code (MedAITech/SCRD4AD, train_rsna.py) where it differs from the defaults; the
# golden parity tests check this preset against values that code produced.
OFFICIAL: dict[str, Any] = {
    "model.arch": "wide_resnet50_2",
    "model.memory_bank": False,
    "noise.field": "fixed",
    "noise.patch_rng": "official",
    "loss.form": "ratio_of_sums",
    "loss.alpha_placement": "inside_cosine",
    "loss.student_input": "clean",
    "train.lr_schedule": "constant",
    "train.noisy_branch": "full_model",
    "train.holdout_fraction": 0.0,
    "train.holdout_min": 0,
    "scoring.score": "mean",
    "scoring.top_k_percent": 1.0,
    "scoring.feature_pool": 1,
    "scoring.scale_fusion": "sum",
    "scoring.alpha_weighting": "inside_cosine",
}

_PRESETS = (
    Preset(
        "denoising_knn",
        "the recommended detector (the defaults): a denoising student (it reconstructs the clean image's "
        "teacher features from the noisy image's, fresh simplex patches through the teacher only, RD4AD's "
        "cosine loss, no α, 4000 iterations on a cosine learning rate) with a memory bank of the knn "
        "reference's patch vectors beside it (a greedy coreset of 1 % of the normal patches); maps compare "
        "3x3-averaged features, each scale's map in units of its spread over held-out normal images and "
        "weighted per image by softmax(z / 2), the student's and the bank's maps added in units of normal "
        "variation; image score = mean of the top 5 % of the map",
        {},
    ),
    Preset(
        "denoising",
        "the same student alone, without the memory bank",
        {"model.memory_bank": False},
    ),
    Preset(
        "official",
        "the released code: its loss and its map with α inside the cosine (a no-op unless α saturates), "
        "the fixed noise texture, the noisy image through bottleneck and decoder, the mean score, "
        "wide_resnet50_2, no held-out images",
        OFFICIAL,
    ),
    Preset(
        "paper",
        "the paper's text: Eq. 4 with ε and α weighting the distances, fresh simplex noise for every "
        "sample, the noisy image through the teacher only (Fig. 1), an α-weighted map",
        {
            **OFFICIAL,
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
            **OFFICIAL,
            "loss.form": "rd4ad",
            "loss.alpha_placement": "none",
            "train.noisy_branch": "encoder_only",
            "scoring.alpha_weighting": "none",
        },
    ),
    Preset(
        "knn",
        "the training-free reference: a memory bank of 3x3-averaged teacher patches (scales 2 and 3, "
        "10 % random subset), nearest-neighbour distance maps, image score = largest value (PatchCore)",
        {**OFFICIAL, "model.method": "knn", "scoring.score": "max", "knn.sampling": "random", "knn.fraction": 0.1},
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
DEFAULT_PRESET = "denoising_knn"  # the defaults themselves: Config() == preset(DEFAULT_PRESET)


def preset_overrides(name: str) -> dict[str, Any]:
    """The dotted-key values of preset ``name`` over the defaults."""
    try:
        return dict(PRESETS[name].overrides)
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}") from None
