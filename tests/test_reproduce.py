"""``scrd reproduce``: every table's smoke run writes its markdown table with the paper's figures
beside ours; rows without data say so; a run folder trained with other settings is refused."""

from __future__ import annotations

import json

import pytest
import yaml

from scrd.cli import main
from scrd.lab.experiment import SUMMARY
from scrd.lab.reproduce import load_table
from scrd.lab.reproduce_settings import TABLES


@pytest.fixture(scope="module")
def shared_out(tmp_path_factory):
    """One --out for every table, as a user would: rows common to several tables run once."""
    return tmp_path_factory.mktemp("reproduce")


def _rows(text: str, dataset_title: str) -> dict[str, list[str]]:
    """The table rows (cells) under the heading of one dataset, by row name."""
    section = text.split(f"## {dataset_title}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows[1:]}  # rows[0]: the header


@pytest.mark.parametrize("table", list(TABLES))
def test_smoke_run_writes_the_table_with_the_paper_column(table, shared_out, capsys):
    from scrd.lab.reproduce_settings import DATASET_TITLES

    assert main(["reproduce", table, "--out", str(shared_out), "--smoke", "--no-progress"]) == 0
    report = shared_out / f"{table}-smoke.md"
    assert f"table: {report}" in capsys.readouterr().out
    text = report.read_text()
    assert "(smoke run)" in text.splitlines()[0] and "**Smoke run**" in text
    assert f"scrd reproduce {table} --out {shared_out} --report {report} --smoke" in text
    spec = load_table(table)
    for dataset in spec.datasets:
        rows = _rows(text, DATASET_TITLES[dataset])
        assert list(rows) == [v["name"] for v in spec.grid["variants"]]
        for name, cells in rows.items():
            paper = spec.paper[name][dataset]
            expected = paper.get("text") or f"{paper['auc']:.2f} / {paper['f1']:.2f} / {paper['acc']:.2f}"
            assert cells[1] == expected
            assert cells[7] == spec.paper[name]["source"]
            summary = json.loads((shared_out / dataset / name / "seed-111" / SUMMARY).read_text())
            assert cells[2] == f"{100 * summary['auroc']:.2f}"  # our AUROC, from that row's own run
            assert cells[4].count(" / ") == 1 and cells[5].count(" / ") == 1 and cells[6] == "1"
            config = yaml.safe_load((shared_out / dataset / name / "seed-111" / "config.yaml").read_text())
            assert config["model"]["image_size"] == 32 and config["train"]["iterations"] == 2  # the smoke settings
    if table == "table1":  # quoted from the paper's Table 1, row Ours, RSNA
        assert _rows(text, "RSNA (chest X-ray)")["scrd"][1] == "91.01 / 84.05 / 83.40"


def test_rows_without_prepared_data_say_so(tmp_path):
    out, report = tmp_path / "runs", tmp_path / "t3.md"
    cmd = ["reproduce", "table3", "--out", str(out), "--report", str(report), "--data-root", str(tmp_path / "none")]
    assert main([*cmd, "--no-progress"]) == 0
    text = report.read_text()
    assert "Smoke run" not in text and "wide_resnet50_2 teacher (imagenet weights), 256 px, 4000 iterations" in text
    rows = _rows(text, "Brain Tumor (MRI)")
    assert rows["gaussian"][1] == "75.23 / 74.88 / 68.25"  # the paper's figures are there all the same
    assert all(r[2].startswith("not run: no prepared data (`scrd data prepare brain-tumor") for r in rows.values())
    assert not list(out.glob("*/*/seed-*"))  # nothing was trained


def test_a_named_dataset_folder_must_exist(tmp_path, capsys):
    assert main(["reproduce", "fig3", "--out", str(tmp_path), "--data", f"rsna={tmp_path / 'nope'}"]) == 2
    assert f"{tmp_path / 'nope'}: no data.json" in capsys.readouterr().err
    assert main(["reproduce", "fig3", "--out", str(tmp_path), "--data", "chest=x"]) == 2
    assert "unknown dataset(s) ['chest']" in capsys.readouterr().err


def test_a_run_trained_with_other_settings_is_refused(shared_out, capsys):
    """The paper's settings into a folder of smoke runs: refused before anything trains."""
    if not (shared_out / "rsna" / "scrd" / "seed-111" / "config.yaml").is_file():
        assert main(["reproduce", "fig3", "--out", str(shared_out), "--smoke", "--no-progress"]) == 0
    data = shared_out / "smoke-data" / "rsna"
    assert main(["reproduce", "fig3", "--out", str(shared_out), "--data", f"rsna={data}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "config.yaml: this run was trained with other settings" in err and "use another --out" in err


@pytest.mark.parametrize("table", list(TABLES))
def test_shipped_grids_hold_the_papers_settings(table, tmp_path):
    """Every row's full config is valid and has the paper's settings (Sec. 3.1.3)."""
    from scrd.lab.experiment import load_grid

    spec = load_table(table)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"data": str(tmp_path), **spec.grid}, allow_unicode=True))
    grid = load_grid(path)  # checks every variant's config
    archs = set()
    for variant in grid.variants:
        config = grid.config(variant, 111)
        archs.add(config.model.arch)
        assert (config.model.image_size, config.train.iterations, config.train.batch_size) == (256, 4000, 16)
        assert config.model.weights == "imagenet" and config.train.selection == "final"
        assert config.train.lr == 1e-3 and config.train.holdout_fraction > 0  # calibrated out of sample
    assert archs == ({"resnet34", "resnet50", "wide_resnet50_2"} if table == "table4" else {"wide_resnet50_2"})
    strengths = [grid.config(v, 111).noise.strength for v in grid.variants]
    assert strengths == ([0.1, 0.2, 0.3, 0.4, 0.5] if table == "fig3" else [0.2] * len(strengths))
