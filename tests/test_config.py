"""Config presets, YAML round trip and strict validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import TINY_FLAGS

from scrd.cli import main
from scrd.config import PRESETS, Config, ConfigError, preset

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_yaml(name, tmp_path):
    config = preset(name)
    config.save(tmp_path / "c.yaml")
    assert Config.load(tmp_path / "c.yaml") == config


def test_the_defaults_are_the_product():
    """Config(), the command line without flags and the default preset are one config."""
    from scrd.cli import build_parser, config_from_args
    from scrd.config import DEFAULT_PRESET

    args = build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    assert config_from_args(args) == Config() == preset(DEFAULT_PRESET)
    c = Config()
    assert (c.model.arch, c.model.memory_bank, c.train.holdout_fraction) == ("mobilenet_v2", True, 0.1)
    assert (c.scoring.scale_fusion, c.scoring.score, c.loss.student_input) == ("normal_softmax", "top_k", "noisy")


@pytest.mark.parametrize("name", ["official", "paper", "rd4ad", "knn"])
def test_the_replay_presets_are_what_they_were(name):
    """The presets that replay the released code, the paper and the baselines resolve to exactly the
    configs of scrd 0.2.0, when the defaults were the released code's (only the one renamed option
    differs: scoring.normalize 'none' is scale_fusion's default reading now). The knn section, which
    a preset without a memory bank never reads, follows the defaults (since the bank became a 1 % coreset)."""
    old = json.loads((FIXTURES / "presets_0.2.0.json").read_text())["presets"][name]
    new = preset(name)
    if new.model.method != "knn" and not new.model.memory_bank:
        old["knn"] = Config().to_dict()["knn"]
    assert Config.from_dict(old) == new


def test_a_config_of_scrd_0_2_with_normalize_loads_as_standardized():
    old = preset("paper").to_dict()
    old["scoring"]["normalize"] = "scale"
    assert Config.from_dict(old).scoring.scale_fusion == "standardized"
    old["scoring"]["scale_fusion"] = "normal_softmax"
    with pytest.raises(ConfigError, match="standardized"):
        Config.from_dict(old)


def test_a_scoring_variant_is_validated_like_a_config():
    import dataclasses

    with pytest.raises(ConfigError, match="fusion_temperature"):
        dataclasses.replace(Config().scoring, fusion_temperature=0.0)
    with pytest.raises(ConfigError, match="not one of"):
        dataclasses.replace(Config().scoring, score="nonsense")


def test_official_preset_is_the_released_code():
    c = preset("official")
    assert c.model.arch == "wide_resnet50_2" and not c.model.memory_bank and c.train.holdout_fraction == 0.0
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


def test_the_option_reference_in_the_docs_is_the_schemas():
    """docs/configuration.md's table is what `scrd config --reference` writes: regenerate it with
    that command when an option changes."""
    from scrd.config.reference import reference_tables

    docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    block = docs.split("<!-- reference: start -->\n", 1)[1].split("<!-- reference: end -->", 1)[0]
    assert block == reference_tables()
    for name, default in (("model.memory_bank", "true"), ("train.holdout_min", "50"), ("scoring.score", "`top_k`")):
        assert f"| `{name}` | {default} |" in block
