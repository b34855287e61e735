"""The markdown table of ``scrd reproduce``: the paper's figure beside ours, row by row.

Ours are read from each run's evaluation (``evaluation/metrics.json``): the final checkpoint's
AUROC, F1/ACC at the oracle threshold (best F1 on the test set itself, what the paper reports) and
F1/ACC, sensitivity and specificity at the threshold calibrated on held-out normal images (what a
deployment can use). A row that did not run says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..filenames import METRICS_FILE
from ..storage import read_json
from .experiment import SUMMARY
from .reproduce_settings import DATA_FOLDERS, DATASET_TITLES, SMOKE_SETTINGS


def _pct(values: list[float | None]) -> str:
    """Mean (± std over seeds) in percent, as the paper prints them; – when any seed lacks it."""
    if not values or any(v is None or not np.isfinite(v) for v in values):
        return "–"
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values, ddof=1):.2f}"


def _paper_cell(entry: dict[str, Any]) -> str:
    if "text" in entry:
        return entry["text"]
    return f"{entry['auc']:.2f} / {entry['f1']:.2f} / {entry['acc']:.2f}"


def _runs(run_root: Path, seeds: list[int]) -> list[tuple[dict, dict]]:
    """(summary, metrics) of every finished seed of one variant."""
    found = []
    for seed in seeds:
        run = run_root / f"seed-{seed}"
        if (run / SUMMARY).is_file() and (run / "evaluation" / METRICS_FILE).is_file():
            found.append((read_json(run / SUMMARY), read_json(run / "evaluation" / METRICS_FILE)))
    return found


def _our_cells(runs: list[tuple[dict, dict]]) -> list[str]:
    metrics = [m for _, m in runs]
    oracle = [m["oracle_threshold"] for m in metrics]
    calibrated = [m.get("calibrated_threshold", {}) for m in metrics]
    in_sample = " (in-sample)" if any(s.get("calibration_in_sample") for s, _ in runs) else ""

    def pair(rows: list[dict], a: str, b: str) -> str:
        return f"{_pct([r.get(a) for r in rows])} / {_pct([r.get(b) for r in rows])}"

    return [
        _pct([m["auroc"] for m in metrics]),
        pair(oracle, "f1", "acc"),
        pair(calibrated, "f1", "acc") + in_sample,
        pair(calibrated, "sensitivity", "specificity") + in_sample,
        str(len(runs)),
    ]


def _protocol(spec, smoke: bool) -> list[str]:
    base = spec.grid["base"]
    lines = []
    if smoke:
        tiny = SMOKE_SETTINGS
        lines += [
            f"**Smoke run**: tiny settings (random-weight {tiny['model.arch']} for every row, "
            f"{tiny['model.image_size']} px, {tiny['train.iterations']} iterations) on generated phantom images. "
            "It checks that the command "
            "runs; its figures say nothing about the method. "
            "The paper's settings need a GPU: run the command without `--smoke`.",
            "",
        ]
    lines += [
        f"Settings of the grid{' (replaced in this smoke run)' if smoke else ''}: {base['model.arch']} teacher "
        f"({base['model.weights']} weights), {base['model.image_size']} px, {base['train.iterations']} iterations, "
        f"batch {base['train.batch_size']}, seeds {spec.grid['seeds']}, "
        f"{100 * base['train.holdout_fraction']:.0f} % of the training normals held out for calibration.",
        "",
        "**Paper**: AUC / F1 / ACC in % as printed; its F1 and ACC use the best-F1 threshold chosen on the test "
        "set itself (an oracle). **Ours**, all from the final checkpoint (no selection on test labels), in %: "
        "AUROC; F1 / ACC at that same oracle threshold, for comparison with the paper; F1 / ACC and "
        "sensitivity / specificity at the threshold calibrated on held-out normal images only "
        "(target specificity 95 %), the honest figures. n: seeds finished.",
        "",
    ]
    return lines


def render(spec, grids: dict, folders: dict[str, Path | None], out: Path, smoke: bool, command: str, data_root) -> str:
    """The whole markdown file of one table."""
    lines = [f"# {spec.title}{' (smoke run)' if smoke else ''}", "", "Written by:", "", f"    {command}", ""]
    lines += _protocol(spec, smoke)
    header = (
        "| row | paper: AUC / F1 / ACC | ours: AUROC | ours: F1 / ACC, oracle thr. | ours: F1 / ACC, calibrated thr. "
        "| ours: sens. / spec., calibrated thr. | n | paper's source | what it is |"
    )
    for dataset in spec.datasets:
        folder = folders.get(dataset)
        lines += [f"## {DATASET_TITLES[dataset]}", ""]
        expected = Path(data_root) / DATA_FOLDERS[dataset]
        lines += [f"Data: `{folder}`." if folder else f"Data: not found at `{expected}`.", ""]
        lines += [header, "|---|---|---|---|---|---|---|---|---|"]
        for variant in spec.grid["variants"]:
            name, entry = variant["name"], spec.paper[variant["name"]]
            if folder is None:
                ours = [
                    f"not run: no prepared data (`scrd data prepare {dataset} --raw RAW "
                    f"--out {expected}`, or `--data {dataset}=DIR`)"
                ] + [""] * 4
            else:
                grid = grids[dataset]
                seeds = grid.seeds_of(next(v for v in grid.variants if v.name == name))
                runs = _runs(out / dataset / name, seeds)
                ours = _our_cells(runs) if runs else ["not run yet (rerun the command to resume)"] + [""] * 4
            cells = [name, _paper_cell(entry[dataset]), *ours, entry["source"], variant.get("about", "")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
