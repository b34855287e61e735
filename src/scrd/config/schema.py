"""The whole config: its sections (:mod:`.sections`), YAML round trip, presets as bases, overrides.

``Config()`` is the recommended detector, the one ``scrd train`` trains without flags; a preset
(:mod:`.presets`) or a YAML file changes it, and a config file may name its base with ``preset:``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .legacy import upgrade
from .presets import preset_overrides
from .sections import (
    DataConfig,
    KnnConfig,
    LossConfig,
    ModelConfig,
    NoiseConfig,
    ScoringConfig,
    TrainConfig,
)
from .validation import build_dataclass, validate


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def dotted(self) -> dict[str, Any]:
        """Every option by its dotted key ("train.iterations"), as ``with_overrides`` takes them."""
        return {f"{section}.{key}": v for section, fields in self.to_dict().items() for key, v in fields.items()}

    @staticmethod
    def differing(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
        """The dotted keys whose values differ between two ``dotted()`` forms (a key one lacks counts)."""
        return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        from ..storage import atomic_write_text  # atomic: a kill never leaves half a config

        atomic_write_text(path, self.to_yaml())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """A config from nested values; a top-level ``preset: NAME`` makes that preset the base that
        the other values override (without it, the base is the defaults). Configs written by earlier
        versions are upgraded (:mod:`.legacy`)."""
        if not isinstance(data, dict):
            raise ConfigError(f"config: expected a mapping, got {type(data).__name__}")
        data = upgrade(dict(data))
        base_name = data.pop("preset", None)
        if base_name is not None:
            if not isinstance(base_name, str):
                raise ConfigError(f"config.preset: expected a preset name, got {base_name!r}")
            data = _merge(preset(base_name).to_dict(), data)
        return build_dataclass(cls, data, "config")

    @classmethod
    def load(cls, path: str | Path) -> Config:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """A copy with dotted keys replaced, e.g. {"train.iterations": 100}."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            *parents, leaf = dotted.split(".")
            node = data
            for p in parents:
                if not isinstance(node.get(p), dict):
                    raise ConfigError(f"unknown config key {dotted!r}")
                node = node[p]
            if leaf not in node or isinstance(node[leaf], dict):
                raise ConfigError(f"unknown config key {dotted!r}")
            node[leaf] = value
        return build_dataclass(Config, data, "config")


SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Config))


def preset(name: str) -> Config:
    """The full config of preset ``name`` (its overrides over the defaults)."""
    return Config().with_overrides(preset_overrides(name))


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
