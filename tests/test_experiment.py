"""The experiment runner end to end on a tiny grid: every (variant, seed) trained, calibrated and
evaluated once, a second call repeats nothing, and the report has the tables and the commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrd.cli import main
from scrd.errors import ConfigError
from scrd.lab.experiment import SUMMARY, load_grid, run_grid
from scrd.lab.experiment_report import _label_free_scoring_tables, label_free_pick, report, spearman

TINY_BASE = {
    "model.arch": "mobilenet_v2",
    "model.weights": "none",
    "model.image_size": 64,
    "train.batch_size": 4,
    "train.iterations": 4,
    "noise.max_size": 24,
    "train.holdout_fraction": 0.25,
}


def _grid(tmp_path, data, **extra):
    spec = {
        "title": "Tiny grid",
        "data": str(data),
        "seeds": [1, 2],
        "base": TINY_BASE,
        "variants": [
            {"name": "knn", "preset": "knn", "group": "Baselines", "about": "memory bank", "seeds": [2]},
            {
                "name": "crd",
                "preset": "paper",
                "group": "SCRD",
                "set": {"train.select_every": 2, "train.eval_every": 2, "train.iterations": 6},
            },
        ],
        "scorings": {
            "max": {"score": "max"},
            "top1_pool3": {"score": "top_k", "feature_pool": 3},
            "normalised": {"score": "top_k", "normalize": "scale"},
        },
        **extra,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def test_runner_trains_each_run_once_and_reports(phantom_data, tmp_path, capsys):
    grid, out, md = _grid(tmp_path, phantom_data), tmp_path / "runs", tmp_path / "results.md"
    assert main(["experiment", "run", str(grid), "--out", str(out), "--report", str(md), "--no-progress"]) == 0
    summaries = sorted(out.glob(f"*/seed-*/{SUMMARY}"))
    assert [p.parent.parent.name + "/" + p.parent.name for p in summaries] == [
        "crd/seed-1",
        "crd/seed-2",
        "knn/seed-2",  # a variant's own seeds replace the grid's
    ]
    stamps = {p: p.stat().st_mtime_ns for p in summaries}
    assert main(["experiment", "run", str(grid), "--out", str(out), "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in summaries} == stamps  # nothing was run again
    text = md.read_text()
    assert f"scrd experiment run {grid} --out {out} --report {md}" in text
    assert "Ran on: cpu, " in text and "(3 runs)" in text  # the device and machine of every run
    assert "Not finished yet" not in text
    for heading in ("## Baselines", "## SCRD", "## AUROC of each scoring option", "## Label-free selection"):
        assert heading in text, heading
    crd = json.loads((out / "crd" / "seed-1" / SUMMARY).read_text())
    assert crd["calibration_in_sample"] is False and set(crd["auroc_by_scoring"]) >= {"max", "top1_pool3", "mean"}
    # α on synthetic lesions of growing size, for the run whose α acts (not for the memory bank)
    sizes = crd["alpha_vs_size"]
    assert len(sizes["radius_fraction"]) == len(sizes["mean_alpha"]) == 5 and len(sizes["spearman"]) == 3
    assert all(sum(a) == pytest.approx(1, abs=1e-3) for a in sizes["mean_alpha"])
    assert json.loads((out / "knn" / "seed-2" / SUMMARY).read_text())["alpha_vs_size"] is None
    size_table = text.split("## Scale weights α on synthetic lesions of growing size")[1]
    per_seed = [json.loads((out / "crd" / f"seed-{s}" / SUMMARY).read_text())["alpha_vs_size"] for s in (1, 2)]
    mean_rho_1 = sum(a["spearman"][0] for a in per_seed) / 2  # one line per variant, its seeds averaged
    assert f"| crd | 2 | {mean_rho_1:.3f} / " in size_table and "| knn |" not in size_table
    knn_row = next(line for line in text.splitlines() if line.startswith("| knn |"))
    assert knn_row.startswith("| knn | 1 |") and "memory bank" in knn_row  # its seed count and description
    crd_row = next(line for line in text.splitlines() if line.startswith("| crd |"))
    assert crd_row.startswith("| crd | 2 |") and crd_row.count(" / ") >= 2  # per-seed values
    assert crd_row.split(" | ")[7].count(",") == 2 and knn_row.split(" | ")[7] == "–"  # α only where it acts
    # the scoring a user without labels would choose: the best label-free criterion, and its real AUROC
    criterion = crd["label_free_by_scoring"]
    assert set(criterion) == {"max", "top1_pool3", "normalised"}  # the grid's scorings
    assert all(0 <= v <= 1 for v in criterion.values())
    chosen = text.split("## Scoring option chosen without labels")[1]
    crd_choice = next(line for line in chosen.splitlines() if line.startswith("| crd |"))
    pick = label_free_pick(crd, list(criterion))
    assert f"{crd['auroc_by_scoring'][pick]:.4f}" in crd_choice.split(" | ")[3] and pick in crd_choice

    # a scoring added to the grid later is scored on the trained models, which are not retrained
    models = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/model.pt")}
    spec = json.loads(grid.read_text())
    spec["scorings"]["max_pool3"] = {"score": "max", "feature_pool": 3}
    # one that weighs each image's scales (on statistics the run's held-out normals give it)
    spec["scorings"]["fused"] = {"score": "top_k", "feature_pool": 3, "scale_fusion": "normal_softmax"}
    grid.write_text(json.dumps(spec))
    assert main(["experiment", "run", str(grid), "--out", str(out), "--report", str(md), "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/model.pt")} == models
    for path in summaries:
        assert 0 < json.loads(path.read_text())["auroc_by_scoring"]["max_pool3"] <= 1
    fused = json.loads((out / "crd" / "seed-1" / SUMMARY).read_text())["alpha_by_scoring"]["fused"]
    assert 1 / 3 <= fused["mean_max_weight"] <= 1 and len(fused["std"]) == 3
    assert "fused" not in json.loads((out / "knn" / "seed-2" / SUMMARY).read_text()).get("alpha_by_scoring", {})
    weights_table = md.read_text().split("## Scale weights of the scoring options that weigh each image")[1]
    crd_weights = next(line for line in weights_table.splitlines() if line.startswith("| crd |"))
    assert crd_weights.count(",") == 2 and "| knn | – |" in weights_table  # the memory bank has one map
    # and how those weights move with the size of a synthetic lesion
    fused_sizes = json.loads((out / "crd" / "seed-1" / SUMMARY).read_text())["alpha_vs_size_by_scoring"]["fused"]
    assert len(fused_sizes["mean_alpha"]) == 5 and all(
        sum(a) == pytest.approx(1, abs=1e-3) for a in fused_sizes["mean_alpha"]
    )
    assert json.loads((out / "knn" / "seed-2" / SUMMARY).read_text())["alpha_vs_size_by_scoring"] == {"fused": None}
    assert "| crd, scoring fused | 2 |" in md.read_text()

    # a run finished before the α-size analysis existed gets it on the next call, without retraining
    summary = out / "crd" / "seed-1" / SUMMARY
    summary.write_text(json.dumps({k: v for k, v in json.loads(summary.read_text()).items() if k != "alpha_vs_size"}))
    assert main(["experiment", "run", str(grid), "--out", str(out), "--no-progress"]) == 0
    assert json.loads(summary.read_text())["alpha_vs_size"] == sizes

    # a row edited after its runs finished is not reported under its new description
    spec = json.loads(grid.read_text())
    spec["variants"][1]["set"]["train.iterations"] = 7
    grid.write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match=r"crd/seed-1: .*train\.iterations: trained 6, row says 7"):
        run_grid(load_grid(grid), out)
    spec["variants"][1]["set"]["train.iterations"] = 6
    grid.write_text(json.dumps(spec))

    # a scoring that one seed lacks (added to the grid after it ran) is not averaged over the other
    summary = out / "crd" / "seed-2" / SUMMARY
    edited = json.loads(summary.read_text())
    del edited["auroc_by_scoring"]["normalised"]
    summary.write_text(json.dumps(edited))
    scoring_table = report(load_grid(grid), out, "cmd").split("## AUROC of each scoring option")[1]
    scoring_row = next(line for line in scoring_table.splitlines() if line.startswith("| crd |"))
    assert "– (1 of 2 seeds)" in scoring_row
    summary.unlink()  # an unfinished run is named, not silently left out
    assert "Not finished yet (rerun the command to resume): crd (1 of 2 seeds)." in report(load_grid(grid), out, "cmd")


def test_label_free_pick_is_the_best_criterion_first_of_equals():
    summary = {"label_free_by_scoring": {"a": 0.6, "b": 0.8, "c": 0.8}}
    assert label_free_pick(summary, ["a", "b", "c"]) == "b"
    assert label_free_pick(summary, ["a", "c", "b"]) == "c"  # the grid's order breaks ties
    assert label_free_pick(summary, ["a", "d"]) is None  # no criterion for every option: no choice
    assert label_free_pick({"label_free_by_scoring": None}, ["a"]) is None  # a run without held-out images


def test_one_scoring_is_not_reported_as_a_label_free_choice():
    runs = {"v": [{"label_free_by_scoring": {"a": 0.7, "b": 0.6}, "auroc_by_scoring": {"a": 0.9, "b": 0.8}}]}
    assert "## Scoring option chosen without labels" in "\n".join(_label_free_scoring_tables(["a", "b"], runs))
    assert _label_free_scoring_tables(["a"], runs) == []  # its only option would read as a choice


def test_grid_errors_name_the_problem(tmp_path, phantom_data):
    path = _grid(tmp_path, phantom_data, extra_key=1)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['extra_key'\]"):
        load_grid(path)
    path.write_text(json.dumps({"data": "x", "variants": [{"name": "a", "set": {"train.nope": 1}}]}))
    with pytest.raises(ConfigError, match="unknown config key 'train.nope'"):
        load_grid(path)


def test_rows_share_settings_through_yaml_anchors(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(
        "data: x\n"
        "anchors:\n"
        "  short: &short {train.iterations: 10, train.lr_schedule: cosine}\n"
        "variants:\n"
        "  - {name: a, preset: rd4ad, set: *short}\n"
        "  - {name: b, preset: denoising, set: {<<: *short, noise.strength: 0.3}}\n"
    )
    grid = load_grid(path)
    a, b = (grid.config(v, 1) for v in grid.variants)
    assert a.train.iterations == b.train.iterations == 10 and a.train.lr_schedule == b.train.lr_schedule == "cosine"
    assert b.noise.strength == 0.3 and a.noise.strength == 0.2


def test_spearman_on_hand_computed_ranks():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1, 2, 3, 4) against (2, 1, 4, 3): 1 − 6·Σd²/(n(n²−1)) = 1 − 6·4/60 = 0.6
    assert spearman([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(0.6)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "docs" / "experiments").glob("*.yaml")))
def test_the_documented_studies_are_valid_grids(path):
    grid = load_grid(path)  # every row's config is validated on load
    assert grid.variants and grid.data in ("../shared/data/brain_tumor", "../shared/data/chest_xray")


def test_the_choice_the_banks_and_the_paired_tests_of_a_grid(phantom_data, tmp_path):
    """choice: each run's label-free choice against every candidate; banks: other banks on a run with one;
    compare: DeLong's paired test per seed between rows, a row's candidate or its bank."""
    spec = {
        "title": "Tiny product grid",
        "data": str(phantom_data),
        "seeds": [1],
        "base": TINY_BASE,
        "variants": [
            # with the knn preset's 10 % random bank, so that a 5 % coreset is the smaller bank
            {"name": "default", "preset": "denoising_knn", "set": {"knn.sampling": "random", "knn.fraction": 0.1}},
            {"name": "knn", "preset": "knn"},
        ],
        "choice": True,
        "banks": {"coreset": {"sampling": "coreset", "fraction": 0.05}, "ivf": {"search": "ivf", "ivf_probe": 1}},
        "compare": [
            ["default", "knn"],
            ["default", "default:bank=coreset"],
            ["default", "default:normal_sum-pool1-max"],
        ],
    }
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps(spec))
    out, md = tmp_path / "runs", tmp_path / "results.md"
    assert main(["experiment", "run", str(grid), "--out", str(out), "--report", str(md), "--no-progress"]) == 0
    summary = json.loads((out / "default" / "seed-1" / SUMMARY).read_text())
    choice = summary["choice"]
    assert len(choice["auroc_by_candidate"]) == 20 and choice["chosen"] in choice["auroc_by_candidate"]
    assert choice["auroc_best"] == max(choice["auroc_by_candidate"].values())
    assert summary["banks"]["coreset"]["rows"] < summary["banks"]["own"]["rows"]
    ivf = summary["banks"]["ivf"]  # the run's own bank, searched through an index: no refit, a recall
    assert ivf["rows"] == summary["banks"]["own"]["rows"] and ivf["fit_seconds"] is None
    assert 0 < ivf["recall_at_1"] <= 1 and "recall_at_1" not in summary["banks"]["coreset"]
    assert 0 <= summary["auroc_interval"]["low"] <= summary["auroc"] <= summary["auroc_interval"]["high"] <= 1
    knn = json.loads((out / "knn" / "seed-1" / SUMMARY).read_text())
    assert len(knn["choice"]["auroc_by_candidate"]) == 5  # one map: the reduction only
    text = md.read_text()
    for heading in ("## The image score chosen without labels", "## Other memory banks", "## Paired comparisons"):
        assert heading in text, heading
    assert "| default | knn | 1: " in text and "| default | default:bank=coreset | 1: " in text
    assert f"| {ivf['recall_at_1']:.4f} |" in text  # the recall column of the banks table
    assert "| default | default:normal_sum-pool1-max | 1: –" not in text  # the candidate's scores were kept
    # a bank added to the grid later is analysed alone; the earlier banks' scores stay for the paired tests
    spec["banks"]["random"] = {"sampling": "random", "fraction": 0.05}
    spec["compare"].append(["default", "default:bank=random"])
    grid.write_text(json.dumps(spec))
    assert main(["experiment", "run", str(grid), "--out", str(out), "--report", str(md), "--no-progress"]) == 0
    text = md.read_text()
    assert "| default | default:bank=random | 1: –" not in text
    assert "| default | default:bank=coreset | 1: –" not in text and "| default | default:bank=coreset | 1: " in text


def test_a_grid_refuses_a_comparison_of_an_unknown_row(phantom_data, tmp_path):
    with pytest.raises(ConfigError, match="compare"):
        load_grid(_grid(tmp_path, phantom_data, compare=[["crd", "nope"]]))
