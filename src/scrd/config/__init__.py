"""Configuration: typed sections whose defaults are the recommended detector, named presets, YAML
round trip (torch-free)."""

from ..errors import ConfigError
from .presets import DEFAULT_PRESET, OFFICIAL, PRESET_NAMES, PRESETS, Preset, preset_overrides
from .schema import SECTIONS, Config, preset
from .sections import (
    ARCHITECTURES,
    OFFICIAL_NOISE_SEED,
    SIMPLEX_FRACTAL_STD,
    DataConfig,
    KnnConfig,
    LossConfig,
    ModelConfig,
    NoiseConfig,
    ScoringConfig,
    TrainConfig,
    is_replay,
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
    "OFFICIAL",
    "OFFICIAL_NOISE_SEED",
    "PRESETS",
    "PRESET_NAMES",
    "Preset",
    "SECTIONS",
    "SIMPLEX_FRACTAL_STD",
    "ScoringConfig",
    "TrainConfig",
    "is_replay",
    "uses_synthetic_anomalies",
    "preset",
    "preset_overrides",
]
