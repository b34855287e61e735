"""Configs written by earlier versions, upgraded to today's options (model.json, config.yaml, grids).

Up to scrd 0.2, ``scoring.normalize: scale`` standardised each scale map on normal images before
the scales were summed; that is now the ``scale_fusion: standardized`` choice, so one option says how
scales are combined.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (nested config values) with options of earlier versions rewritten as today's."""
    train, scoring = data.get("train"), data.get("scoring")
    written_by_0_2 = isinstance(scoring, dict) and "normalize" in scoring  # 0.2 wrote every option
    if written_by_0_2 and isinstance(train, dict) and "holdout_min" not in train:
        # its runs held out round(n * fraction): a resumed or reloaded run keeps its split
        data = {**data, "train": {**train, "holdout_min": 0}}
    scoring = data.get("scoring")
    if isinstance(scoring, dict) and "normalize" in scoring:
        scoring = dict(scoring)
        normalize = scoring.pop("normalize")
        if normalize == "scale":
            if scoring.get("scale_fusion", "sum") != "sum":
                raise ConfigError(
                    "scoring.normalize 'scale' (scrd 0.2) with scale_fusion "
                    f"{scoring['scale_fusion']!r}: write scoring.scale_fusion: standardized instead"
                )
            scoring["scale_fusion"] = "standardized"
        elif normalize != "none":
            raise ConfigError(f"scoring.normalize: {normalize!r} is not one of ['none', 'scale']")
        data = {**data, "scoring": scoring}
    return data


def upgrade_scoring_options(options: dict[str, Any]) -> dict[str, Any]:
    """Scoring options as a grid's ``scorings:`` or an experiment variant gives them, upgraded."""
    return upgrade({"scoring": dict(options)})["scoring"]
