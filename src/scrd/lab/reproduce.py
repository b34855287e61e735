"""``scrd reproduce TABLE``: one of the paper's tables as a command, driving the experiment runner.

Each table has a grid file shipped in ``scrd/reproduce/<table>.yaml`` (the paper's settings, the
variants of its rows, the datasets it covers) and its printed figures in
``scrd/reproduce/paper_numbers.yaml``. For every dataset whose prepared folder exists, the grid is
written out as a plain experiment-runner grid (``OUT/<dataset>/<table>.yaml``) and run with
:func:`~scrd.lab.experiment.run_grid` into ``OUT/<dataset>/<variant>/seed-<seed>/``. Rows of the
same name in several tables (``scrd``, ``rd4ad``) have the same settings, so a run trained for one
table is reused by the others; a run folder whose stored config differs is refused, not reused.

``smoke=True`` swaps the settings for tiny ones and the data for generated phantoms, so each table
runs on a CPU in seconds: it checks the command end to end and says nothing about the method.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, InputError
from ..filenames import CONFIG_FILE, SPLIT_FILE
from .reproduce_settings import DATA_FOLDERS, DATASET_TITLES, SMOKE_PHANTOM, SMOKE_SETTINGS, TABLES


@dataclass
class TableSpec:
    name: str
    title: str
    datasets: list[str]
    grid: dict[str, Any]  # the experiment-runner keys: seeds, base, variants
    paper: dict[str, dict[str, Any]]  # variant -> {source, <dataset>: {auc, f1, acc} or {text}}


def _resource(name: str) -> str:
    return resources.files("scrd").joinpath("reproduce", name).read_text(encoding="utf-8")


def load_table(name: str) -> TableSpec:
    """The shipped grid and paper figures of table ``name``; checks that every row has its figures."""
    if name not in TABLES:
        raise ConfigError(f"unknown table {name!r}; choose one of {', '.join(TABLES)}")
    spec = yaml.safe_load(_resource(f"{name}.yaml"))
    paper = yaml.safe_load(_resource("paper_numbers.yaml")).get(name, {})
    for variant in spec["variants"]:
        entry = paper.get(variant["name"])
        missing = [d for d in spec["datasets"] if entry is None or d not in entry]
        if entry is None or "source" not in entry or missing:
            what = missing or "source"
            raise ConfigError(f"scrd/reproduce/paper_numbers.yaml: {name}.{variant['name']} lacks {what}")
    grid = {k: spec[k] for k in ("seeds", "base", "variants")}
    return TableSpec(name, spec["title"], list(spec["datasets"]), grid, paper)


def smoke_grid(grid: dict[str, Any]) -> dict[str, Any]:
    """The grid with :data:`SMOKE_SETTINGS` over its base and over any variant's own value of them."""
    variants = []
    for v in grid["variants"]:
        own = v.get("set") or {}
        variants.append({**v, "set": {**own, **{k: SMOKE_SETTINGS[k] for k in own if k in SMOKE_SETTINGS}}})
    return {**grid, "base": {**grid["base"], **SMOKE_SETTINGS}, "variants": variants}


def dataset_folders(
    datasets: list[str], given: dict[str, str], data_root: str | Path, smoke_root: Path | None
) -> dict[str, Path | None]:
    """Each dataset's prepared folder, or None when it is not there (its rows say so).

    A folder named with ``--data`` must exist; the default ``DATA_ROOT/<folder>`` may be missing.
    With ``smoke_root``, phantom datasets are generated there instead.
    """
    unknown = set(given) - set(DATA_FOLDERS)
    if unknown:
        raise InputError(f"--data: unknown dataset(s) {sorted(unknown)}; use {', '.join(DATA_FOLDERS)}")
    folders: dict[str, Path | None] = {}
    for i, name in enumerate(datasets):
        if smoke_root is not None:
            folders[name] = _phantom(smoke_root / name, seed=i)
        elif name in given:
            folder = Path(given[name])
            if not (folder / SPLIT_FILE).is_file():
                raise InputError(f"{folder}: no {SPLIT_FILE} (prepare it with `scrd data prepare {name}`)")
            folders[name] = folder
        else:
            folder = Path(data_root) / DATA_FOLDERS[name]
            folders[name] = folder if (folder / SPLIT_FILE).is_file() else None
    return folders


def _phantom(root: Path, seed: int) -> Path:
    from ..data.phantom import make_phantom_dataset

    if not (root / SPLIT_FILE).is_file():
        make_phantom_dataset(root, seed=seed, **SMOKE_PHANTOM)
    return root


def check_existing_runs(grid, out: Path) -> None:
    """Refuse a run folder trained with other settings than the grid asks for (e.g. a smoke run
    where a full one is expected), instead of reporting its figures under the wrong row."""
    from ..config import Config

    for variant in grid.variants:
        for seed in grid.seeds_of(variant):
            stored = out / variant.name / f"seed-{seed}" / CONFIG_FILE
            if stored.is_file() and Config.load(stored).to_dict() != grid.config(variant, seed).to_dict():
                raise ConfigError(
                    f"{stored}: this run was trained with other settings than `{variant.name}` now has; "
                    "use another --out (or delete the folder)"
                )


def reproduce(
    table: str,
    out: str | Path,
    data: dict[str, str] | None = None,
    data_root: str | Path = "data",
    smoke: bool = False,
    progress: bool = True,
    command: str = "",
) -> str:
    """Run (or resume) every row of ``table`` on each dataset found; return the markdown table."""
    from .experiment import load_grid, run_grid
    from .reproduce_table import render

    spec = load_table(table)
    out = Path(out)
    grid_spec = smoke_grid(spec.grid) if smoke else spec.grid
    folders = dataset_folders(spec.datasets, data or {}, data_root, out / "smoke-data" if smoke else None)
    grids = {}
    for name, folder in folders.items():
        if folder is None:
            continue
        grid_file = out / name / f"{table}.yaml"  # a plain grid: `scrd experiment report` reads it too
        grid_file.parent.mkdir(parents=True, exist_ok=True)
        title = f"{spec.title}, {DATASET_TITLES[name]}{' (smoke run)' if smoke else ''}"
        grid = {"title": title, "data": str(folder.resolve()), **grid_spec}
        grid_file.write_text(yaml.safe_dump(grid, sort_keys=False, allow_unicode=True))
        grids[name] = load_grid(grid_file)
        check_existing_runs(grids[name], out / name)
    for name, grid in grids.items():
        run_grid(grid, out / name, progress=progress)
    return render(spec, grids, folders, out, smoke, command, data_root)
