"""The README's figures are the default's: the grid rows they come from resolve to the command line's
default config (the data path aside), and the figures in the README are those of the study reports the
grids wrote."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scrd.cli import build_parser, config_from_args
from scrd.lab.experiment import load_grid

ROOT = Path(__file__).resolve().parents[1]
GRIDS = {"brain": "docs/experiments/default_brain.yaml", "chest": "docs/experiments/default_chest.yaml"}
PRODUCT_ROW = "denoising_knn_cosine_4000_coreset1"


@pytest.mark.parametrize("grid", GRIDS.values())
def test_the_product_row_is_the_command_lines_default(grid):
    loaded = load_grid(ROOT / grid)
    row = next(v for v in loaded.variants if v.name == PRODUCT_ROW)
    default = config_from_args(build_parser().parse_args(["train", "--data", loaded.data, "--out", "runs/x"]))
    for seed in loaded.seeds_of(row):
        assert loaded.config(row, seed) == default.with_overrides({"train.seed": seed})


def _results_block(readme: str) -> str:
    return readme.split("<!-- results: start -->", 1)[1].split("<!-- results: end -->", 1)[0]


def _table(block: str) -> tuple[list[str], list[list[str]]]:
    """(header, body rows) of the first markdown table in ``block``, cells stripped."""
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines() if line.startswith("|")
    ]
    return rows[0], rows[2:]


def test_the_readme_quotes_the_studies_it_names():
    block = _results_block((ROOT / "README.md").read_text())
    header, rows = _table(block)
    assert rows, "the README's results table is empty"
    checked = 0
    first_figure: dict[str, int] = {}  # each dataset's AUROC column: its first column
    for name, grid in GRIDS.items():
        assert f"scrd experiment run {grid}" in block and f"docs/studies/default_{name}.md" in block
        columns = [i for i, h in enumerate(header) if h.lower().startswith(name)]
        assert columns, f"no {name} column in the README's results table"
        first_figure[name] = columns[0]
        for row in rows:
            for i in columns:
                # a cell quotes the study it names, else the dataset's default study
                named = re.search(r"studies/(\w+\.md)", row[i])
                report = f"docs/studies/{named.group(1) if named else f'default_{name}.md'}"
                study = (ROOT / report).read_text()
                for figure in re.findall(r"\d\.\d{4}(?: ± \d\.\d{4})?", row[i]):
                    assert figure in study, f"{figure} ({row[0]}, {header[i]}) is not in {report}"
                    checked += 1
    assert checked >= 6
    # the mean column is the mean of the two datasets' AUROCs as quoted
    mean = header.index("mean AUROC")
    for row in rows:
        brain, chest = (float(re.match(r"\d\.\d{4}", row[first_figure[n]]).group()) for n in GRIDS)
        assert abs(float(row[mean]) - (brain + chest) / 2) <= 0.00005 + 1e-9, row[0]
