"""Config presets, YAML round trip and strict validation."""

from __future__ import annotations

import pytest
from helpers import TINY_FLAGS

from scrd.cli import main
from scrd.config import PRESETS, Config, ConfigError, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_yaml(name, tmp_path):
    config = preset(name)
    config.save(tmp_path / "c.yaml")
    assert Config.load(tmp_path / "c.yaml") == config


def test_official_preset_is_the_released_code():
    c = preset("official")
    assert c == Config()  # the defaults are the released code's values
    assert (c.loss.form, c.loss.alpha_placement, c.loss.batch_reduction, c.loss.eps) == (
        "ratio_of_sums",
        "inside_cosine",
        "ratio_of_means",
        0.0,
    )
    assert c.noise.field == "fixed" and c.noise.field_seed == 7698519916 and c.noise.strength == 0.2
    assert c.train.noisy_branch == "full_model"
    assert (c.scoring.alpha_weighting, c.scoring.score, c.scoring.sigma) == ("inside_cosine", "mean", 4.0)
    assert (c.train.lr, c.train.betas, c.train.batch_size) == (1e-3, (0.5, 0.999), 16)


def test_paper_preset_follows_the_text():
    c = preset("paper")
    assert (c.loss.form, c.loss.alpha_placement, c.loss.eps) == ("per_scale_ratio", "outside", 1e-6)
    assert c.scoring.alpha_weighting == "weighted" and c.noise.field == "fresh"
    assert c.train.noisy_branch == "encoder_only"


def test_unknown_keys_are_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  iters: 10\n")
    with pytest.raises(ConfigError, match=r"c.yaml.*unknown key\(s\) \['iters'\]"):
        Config.load(path)
    with pytest.raises(ConfigError, match="unknown config key"):
        preset("official").with_overrides({"train.nope": 1})


@pytest.mark.parametrize(
    "override, message",
    [
        ({"loss.form": "eq5"}, "not one of"),
        ({"train.iterations": 0}, "iterations"),
        ({"train.iterations": "10"}, "expected an integer"),
        ({"train.deterministic": "yes"}, "true or false"),
        ({"model.image_size": 100}, "multiple of 16"),
        ({"train.selection": "best_on_test"}, "eval_every"),
        ({"train.betas": [0.5]}, "list of 2"),
    ],
)
def test_invalid_values_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        preset("official").with_overrides(override)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    marker = tmp_path / "pwned"
    path.write_text(f"train: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Config.load(path)
    assert not marker.exists()


def test_a_config_file_names_its_base_preset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: paper\ntrain:\n  iterations: 7\n")
    config = Config.load(path)
    assert config == preset("paper").with_overrides({"train.iterations": 7})
    assert "preset" not in config.to_dict()  # the saved config is the resolved one
    path.write_text("preset: nope\n")
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        Config.load(path)


def test_config_and_preset_flags_together_are_an_error(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("train:\n  iterations: 7\n")
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path),
                "--out",
                str(tmp_path / "run"),
                "--config",
                str(tmp_path / "c.yaml"),
                "--preset",
                "paper",
                *TINY_FLAGS,
            ]
        )
        == 2
    )
    assert "--config and --preset both given: put `preset: NAME` in the config file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
