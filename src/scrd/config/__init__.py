"""Configuration: typed sections, named presets, YAML round trip (torch-free)."""

from ..errors import ConfigError
from .presets import DEFAULT_PRESET, PRESET_NAMES, PRESETS, Preset, preset, preset_overrides
from .schema import (
    ARCHITECTURES,
    OFFICIAL_NOISE_SEED,
    SECTIONS,
    SIMPLEX_FRACTAL_STD,
    Config,
    DataConfig,
    KnnConfig,
    LossConfig,
    ModelConfig,
    NoiseConfig,
    ScoringConfig,
    TrainConfig,
    uses_synthetic_anomalies,
)

__all__ = [
    "ARCHITECTURES",
    "Config",
    "ConfigError",
    "DEFAULT_PRESET",
    "DataConfig",
    "KnnConfig",
    "LossConfig",
    "ModelConfig",
    "NoiseConfig",
    "OFFICIAL_NOISE_SEED",
    "PRESETS",
    "PRESET_NAMES",
    "Preset",
    "SECTIONS",
    "SIMPLEX_FRACTAL_STD",
    "ScoringConfig",
    "TrainConfig",
    "uses_synthetic_anomalies",
    "preset",
    "preset_overrides",
]
