"""Typed configuration: every choice the paper leaves open is a named option here.

A preset is a set of option values (``PRESETS``); ``docs/configuration.md`` gives each default
and its reason. Configs round-trip through YAML; unknown keys and out-of-range values are
errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


@dataclass
class ModelConfig:
    arch: Literal["resnet18", "resnet34", "resnet50", "wide_resnet50_2", "mobilenet_v2"] = "wide_resnet50_2"
    weights: str = "imagenet"  # 'imagenet' (torchvision IMAGENET1K_V1), 'none' or a file path
    image_size: int = 256


@dataclass
class NoiseConfig:
    kind: Literal["simplex", "gaussian"] = "simplex"
    field: Literal["fixed", "fresh"] = "fixed"  # fixed: the released code's single texture
    strength: float = 0.2  # λ, added in [0, 1] image space before normalisation, unclipped
    octaves: int = 6
    persistence: float = 0.6
    frequency: float = 32.0
    min_size: int = 10  # patch side drawn uniformly in [min_size, max_size]
    max_size: int = 31
    field_seed: int = 7698519916  # the seed the released code's noise field gets
    gaussian_std: float = 0.4  # per-pixel std of the 6-octave simplex sum: equal energy at one λ
    # Patch sizes/positions: 'official' = numpy RandomState(train.seed) after the released script's
    # two seed draws, so seed 111 replays its patch sequence; 'generator' = numpy default_rng.
    patch_rng: Literal["official", "generator"] = "official"


@dataclass
class LossConfig:
    form: Literal["rd4ad", "ratio_of_sums", "per_scale_ratio"] = "ratio_of_sums"
    alpha_placement: Literal["inside_cosine", "outside", "none"] = "inside_cosine"
    batch_reduction: Literal["ratio_of_means", "mean_of_ratios"] = "ratio_of_means"
    eps: float = 0.0
    alpha_grad: Literal["train", "detach"] = "train"


@dataclass
class TrainConfig:
    iterations: int = 4000  # the paper's figure; the released script runs 40000
    batch_size: int = 16
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    noisy_branch: Literal["full_model", "encoder_only"] = "full_model"
    bn_eval_after_validation: bool = False  # replicate the released code's BatchNorm-mode slip
    eval_every: int = 0  # 0: no evaluation during training
    selection: Literal["final", "best_on_test"] = "final"
    seed: int = 111
    deterministic: bool = False
    device: str = "auto"  # auto: CUDA when available
    bf16: bool = False  # bf16 autocast on CUDA
    num_workers: int = 0
    checkpoint_every: int = 500
    log_every: int = 10


@dataclass
class ScoringConfig:
    sigma: float = 4.0  # Gaussian smoothing of the map (scipy 'reflect' boundary)
    score: Literal["mean", "max"] = "mean"
    alpha_weighting: Literal["none", "weighted"] = "none"  # weight scale maps by α at test time


@dataclass
class DataConfig:
    """How files become [0, 1] images: grey-level mapping, DICOM frames, NIfTI slicing."""

    intensity: Literal["none", "minmax", "percentile", "fixed"] = "none"
    percentiles: tuple[float, float] = (1.0, 99.0)  # for intensity 'percentile', per image
    window: tuple[float, float] = (0.0, 255.0)  # for intensity 'fixed', stored units (HU for CT)
    dicom_frames: Literal["reject", "first", "middle", "all"] = "reject"
    nifti_axis: int = 2  # 0 sagittal, 1 coronal, 2 axial (after reorienting to RAS+)
    nifti_percentiles: tuple[float, float] = (0.5, 99.5)  # volume-wide robust range -> [0, 1]
    nifti_tissue_level: float = 0.1  # a voxel is tissue above this normalised value
    nifti_min_tissue: float = 0.05  # keep slices with at least this tissue fraction (0 keeps all)
    on_bad_image: Literal["error", "skip"] = "error"  # skip: listed in the run/output folder, counted


@dataclass
class Config:
    preset: str = "official"
    model: ModelConfig = field(default_factory=ModelConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        from .checkpoint import atomic_write_text  # atomic: a kill never leaves half a config
        atomic_write_text(path, self.to_yaml())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        return _build(cls, data, "config")

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        try:
            data = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def with_overrides(self, overrides: dict[str, Any]) -> "Config":
        """A copy with dotted keys replaced, e.g. {"train.iterations": 100}."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            *parents, leaf = dotted.split(".")
            node = data
            for p in parents:
                if not isinstance(node.get(p), dict):
                    raise ConfigError(f"unknown config key {dotted!r}")
                node = node[p]
            if leaf not in node:
                raise ConfigError(f"unknown config key {dotted!r}")
            node[leaf] = value
        return Config.from_dict(data)


# ---------------------------------------------------------------------------- presets

def _preset_official() -> Config:
    """The released code: its loss (α inside the cosine, a no-op), the fixed noise texture, the
    noisy image through bottleneck and decoder, the unweighted map and the mean score."""
    return Config(preset="official")


def _preset_paper() -> Config:
    """The paper's text: Eq. 4 with ε and α weighting the distances, fresh simplex noise for
    every sample, the noisy image through the teacher only (Fig. 1), an α-weighted map."""
    return Config(
        preset="paper",
        noise=NoiseConfig(field="fresh", patch_rng="generator"),
        loss=LossConfig(form="per_scale_ratio", alpha_placement="outside",
                        batch_reduction="mean_of_ratios", eps=1e-6),
        train=TrainConfig(noisy_branch="encoder_only"),
        scoring=ScoringConfig(alpha_weighting="weighted"))


def _preset_rd4ad() -> Config:
    """The RD4AD baseline (Table 2, first row) in the same pipeline: Eq. 1 with flattened cosine,
    no synthetic anomalies, no α."""
    return Config(preset="rd4ad", loss=LossConfig(form="rd4ad", alpha_placement="none"),
                  train=TrainConfig(noisy_branch="encoder_only"))


PRESETS = {"official": _preset_official, "paper": _preset_paper, "rd4ad": _preset_rd4ad}


def preset(name: str) -> Config:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


# ------------------------------------------------------------------------- validation

def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, data: Any, where: str) -> Any:
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
            kwargs[name] = _build(hint, value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, hint, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if origin is tuple:
        kinds = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(kinds):
            raise ConfigError(f"{where}: expected a list of {len(kinds)} numbers, got {value!r}")
        return tuple(_coerce(v, k, where) for v, k in zip(value, kinds))
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
    return value


def validate(config: Config) -> None:
    """Range checks that types alone do not express."""
    for section in (config.model, config.noise, config.loss, config.train, config.scoring, config.data):
        for f in dataclasses.fields(section):
            _coerce(getattr(section, f.name), typing.get_type_hints(type(section))[f.name],
                    f"{type(section).__name__}.{f.name}")
    checks = [
        (config.model.image_size >= 32, "model.image_size must be at least 32"),
        (config.model.image_size % 16 == 0, "model.image_size must be a multiple of 16"),
        (0 < config.noise.min_size <= config.noise.max_size, "noise: need 0 < min_size <= max_size"),
        (config.noise.max_size + 2 <= config.model.image_size, "noise.max_size must fit inside the image"),
        (config.noise.strength >= 0, "noise.strength must be >= 0"),
        (config.noise.octaves >= 1, "noise.octaves must be >= 1"),
        (config.loss.eps >= 0, "loss.eps must be >= 0"),
        (config.train.iterations >= 1, "train.iterations must be >= 1"),
        (config.train.batch_size >= 1, "train.batch_size must be >= 1"),
        (config.train.lr > 0, "train.lr must be > 0"),
        (config.train.eval_every >= 0, "train.eval_every must be >= 0"),
        (config.train.checkpoint_every >= 1, "train.checkpoint_every must be >= 1"),
        (config.scoring.sigma >= 0, "scoring.sigma must be >= 0"),
        (config.loss.form != "rd4ad" or config.loss.alpha_placement != "inside_cosine",
         "loss: alpha_placement 'inside_cosine' has no meaning for the rd4ad form"),
        (config.train.selection == "final" or config.train.eval_every > 0,
         "train.selection 'best_on_test' needs train.eval_every > 0"),
        (0 <= config.data.percentiles[0] < config.data.percentiles[1] <= 100,
         "data.percentiles must satisfy 0 <= low < high <= 100"),
        (config.data.window[0] < config.data.window[1], "data.window must satisfy low < high"),
        (config.data.nifti_axis in (0, 1, 2), "data.nifti_axis must be 0, 1 or 2"),
        (0 <= config.data.nifti_percentiles[0] < config.data.nifti_percentiles[1] <= 100,
         "data.nifti_percentiles must satisfy 0 <= low < high <= 100"),
        (0 <= config.data.nifti_tissue_level <= 1, "data.nifti_tissue_level must be in [0, 1]"),
        (0 <= config.data.nifti_min_tissue <= 1, "data.nifti_min_tissue must be in [0, 1]"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
