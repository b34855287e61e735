"""Building configs from nested values, with strict types and range checks.

Unknown keys and values of the wrong type or out of range are errors that name the key; nothing
is silently ignored or coerced beyond int -> float.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from ..errors import ConfigError


def build_dataclass(cls: type, data: Any, where: str) -> Any:
    """An instance of the dataclass ``cls`` from nested values, every value checked against its type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build_dataclass(hint, value, f"{where}.{name}")
        else:
            kwargs[name] = coerce(value, hint, f"{where}.{name}")
    return cls(**kwargs)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the type ``hint`` (Literal, tuple, bool, int, float, str)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if origin is tuple:
        kinds = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(kinds):
            raise ConfigError(f"{where}: expected a list of {len(kinds)} numbers, got {value!r}")
        return tuple(coerce(v, k, where) for v, k in zip(value, kinds))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: no coercion for type {hint!r}")  # a schema bug, not a user error


Check = tuple[bool, str]


def _model(m: Any) -> list[Check]:
    return [
        (m.image_size >= 32, "model.image_size must be at least 32"),
        (m.image_size % 16 == 0, "model.image_size must be a multiple of 16"),
    ]


def _knn(k: Any) -> list[Check]:
    return [
        (
            all(s in (1, 2, 3) for s in k.scales) and k.scales[0] < k.scales[1],
            "knn.scales must be two increasing teacher scales out of 1, 2, 3",
        ),
        (k.pool >= 1 and k.pool % 2 == 1, "knn.pool must be an odd number >= 1"),
        (0 < k.fraction <= 1, "knn.fraction must be in (0, 1]"),
        (k.ivf_lists >= 0, "knn.ivf_lists must be >= 0 (0: about 2·√ of the bank's rows)"),
        (k.ivf_probe >= 1, "knn.ivf_probe must be >= 1 (lists searched per patch)"),
    ]


def _noise(n: Any) -> list[Check]:
    return [
        (0 < n.min_size <= n.max_size, "noise: need 0 < min_size <= max_size"),
        (n.strength >= 0, "noise.strength must be >= 0"),
        (n.octaves >= 1, "noise.octaves must be >= 1"),
        (n.patches_per_image >= 1, "noise.patches_per_image must be >= 1"),
        (n.frequency > 0, "noise.frequency must be > 0"),
        (n.gaussian_std >= 0, "noise.gaussian_std must be >= 0"),
    ]


def _loss(loss: Any) -> list[Check]:
    return [
        (loss.eps >= 0, "loss.eps must be >= 0"),
        (loss.alpha_entropy >= 0, "loss.alpha_entropy must be >= 0"),
        (
            loss.form != "rd4ad" or loss.alpha_placement != "inside_cosine",
            "loss: alpha_placement 'inside_cosine' has no meaning for the rd4ad form",
        ),
    ]


def _train(t: Any) -> list[Check]:
    return [
        (t.iterations >= 1, "train.iterations must be >= 1"),
        (t.batch_size >= 1, "train.batch_size must be >= 1"),
        (t.lr > 0, "train.lr must be > 0"),
        (0 <= t.lr_warmup < t.iterations, "train.lr_warmup must be in [0, train.iterations)"),
        (t.eval_every >= 0, "train.eval_every must be >= 0"),
        (0 <= t.holdout_fraction < 1, "train.holdout_fraction must be in [0, 1)"),
        (t.holdout_min >= 0, "train.holdout_min must be >= 0"),
        (t.max_images >= 0, "train.max_images must be >= 0 (0: all training images)"),
        (t.checkpoint_every >= 1, "train.checkpoint_every must be >= 1"),
        (t.log_every >= 1, "train.log_every must be >= 1"),
        (t.num_workers >= 0, "train.num_workers must be >= 0"),
        (t.cache_memory_gb >= 0, "train.cache_memory_gb must be >= 0"),
        (t.select_every >= 0 and t.early_stop_patience >= 0, "train.select_every and early_stop_patience must be >= 0"),
        (
            t.selection != "best_on_test" or t.eval_every > 0,
            "train.selection 'best_on_test' needs train.eval_every > 0",
        ),
        (
            t.selection != "label_free" or t.select_every > 0,
            "train.selection 'label_free' needs train.select_every > 0",
        ),
        (t.early_stop_patience == 0 or t.select_every > 0, "train.early_stop_patience needs train.select_every > 0"),
        (
            t.select_every == 0 or t.holdout_fraction > 0,
            "train.select_every needs held-out normal images (train.holdout_fraction > 0)",
        ),
    ]


def _scoring(s: Any) -> list[Check]:
    return [
        (s.sigma >= 0, "scoring.sigma must be >= 0"),
        (0 < s.top_k_percent <= 100, "scoring.top_k_percent must be in (0, 100]"),
        (s.feature_pool >= 1 and s.feature_pool % 2 == 1, "scoring.feature_pool must be an odd number >= 1"),
        (s.fusion_temperature > 0, "scoring.fusion_temperature must be > 0"),
        (s.memory_bank_weight >= 0, "scoring.memory_bank_weight must be >= 0"),
        (min(s.scale_weights) >= 0 and sum(s.scale_weights) > 0, "scoring.scale_weights must be >= 0 and not all 0"),
        # the one rule between the ways scales are combined
        (
            s.scale_fusion not in ("normal_sum", "normal_softmax") or s.alpha_weighting != "weighted",
            f"scoring.scale_fusion '{s.scale_fusion}' sets the scale weights itself: it cannot be combined "
            "with scoring.alpha_weighting 'weighted' (set scale_fusion 'sum' or 'standardized' to weight by α)",
        ),
    ]


def _data(d: Any) -> list[Check]:
    return [
        (0 <= d.percentiles[0] < d.percentiles[1] <= 100, "data.percentiles must satisfy 0 <= low < high <= 100"),
        (d.window[0] < d.window[1], "data.window must satisfy low < high"),
        (d.nifti_axis in (0, 1, 2), "data.nifti_axis must be 0, 1 or 2"),
        (
            0 <= d.nifti_percentiles[0] < d.nifti_percentiles[1] <= 100,
            "data.nifti_percentiles must satisfy 0 <= low < high <= 100",
        ),
        (0 <= d.nifti_tissue_level <= 1, "data.nifti_tissue_level must be in [0, 1]"),
        (0 <= d.nifti_min_tissue <= 1, "data.nifti_min_tissue must be in [0, 1]"),
        (d.max_image_pixels >= 1, "data.max_image_pixels must be >= 1"),
    ]


SECTION_CHECKS = {
    "model": _model,
    "knn": _knn,
    "noise": _noise,
    "loss": _loss,
    "train": _train,
    "scoring": _scoring,
    "data": _data,
}


def _raise_first(checks: list[Check]) -> None:
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def validate_section(section: Any, name: str) -> None:
    """The type of every field of one config section and its own range checks: also for a section
    built directly or with ``dataclasses.replace`` (a scoring variant), not only from YAML."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        coerce(getattr(section, f.name), hints[f.name], f"{name}.{f.name}")
    _raise_first(SECTION_CHECKS[name](section))


def validate(config: Any) -> None:
    """Every section (:func:`validate_section`), then the rules between sections."""
    for f in dataclasses.fields(config):
        validate_section(getattr(config, f.name), f.name)
    m, n, loss, s = config.model, config.noise, config.loss, config.scoring
    _raise_first(
        [
            (n.max_size + 2 <= m.image_size, "noise.max_size must fit inside the image (max_size + 2 <= image_size)"),
            (
                m.scale_head == "global" or (loss.alpha_objective == "separation" and loss.alpha_placement == "none"),
                "model.scale_head 'spatial' needs loss.alpha_objective 'separation' and loss.alpha_placement "
                "'none' (its per-location α weights the maps, not the per-scale loss)",
            ),
            (
                m.scale_head == "global" or s.alpha_weighting != "inside_cosine",
                "model.scale_head 'spatial' needs scoring.alpha_weighting 'weighted' or 'none'",
            ),
            (
                not m.memory_bank or m.method == "scrd",
                "model.memory_bank adds a bank beside a trained student: it needs model.method 'scrd' "
                "(the knn method is a memory bank already)",
            ),
        ]
    )
