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
PRODUCT_ROW = "denoising_knn_cosine_4000"


@pytest.mark.parametrize("grid", GRIDS.values())
def test_the_product_row_is_the_command_lines_default(grid):
    loaded = load_grid(ROOT / grid)
    row = next(v for v in loaded.variants if v.name == PRODUCT_ROW)
    default = config_from_args(build_parser().parse_args(["train", "--data", loaded.data, "--out", "runs/x"]))
    for seed in loaded.seeds_of(row):
        assert loaded.config(row, seed) == default.with_overrides({"train.seed": seed})


def test_the_readme_quotes_the_studies_it_names():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- results: start -->", 1)[1].split("<!-- results: end -->", 1)[0]
    for name, grid in GRIDS.items():
        report = f"docs/studies/default_{name}.md"
        assert f"scrd experiment run {grid}" in block and report in block
        study = (ROOT / report).read_text()
        quoted = re.findall(rf"\| {name}\w* \| [^|]+ \| (\d\.\d{{4}} ± \d\.\d{{4}})", block)
        assert quoted, f"no figure of {name} in the README's table"
        for figure in quoted:
            assert figure in study, f"{figure} is not in {report}"
