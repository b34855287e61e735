"""``scrd compare EVAL_A EVAL_B``: are two evaluations' AUROCs on the same images different?

Reads the two ``scores.csv`` files, pairs the images by path (both must have scored the same images,
with the same labels) and runs DeLong's paired test (:mod:`.intervals`): each AUROC with its 95 %
interval, the difference, its interval and p-value, and the word our docs use: "above"/"below" only
where p < 0.05, else "level".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..filenames import SCORES_FILE
from ..runs.run_logs import read_scores
from .intervals import auroc_interval, paired_delong, verdict


def _scores_file(where: str | Path) -> Path:
    where = Path(where)
    return where / SCORES_FILE if where.is_dir() else where


def compare_evaluations(a: str | Path, b: str | Path, alpha: float = 0.05) -> dict[str, Any]:
    """The paired comparison of two evaluation folders (or their scores.csv files)."""
    files = _scores_file(a), _scores_file(b)
    first, second = (read_scores(f) for f in files)
    by_path = {p: (label, score) for p, label, score in zip(second.paths, second.labels, second.scores)}
    missing = [p for p in first.paths if p not in by_path]
    extra = len(set(second.paths) - set(first.paths))
    if missing or extra:
        example = missing[0] if missing else next(iter(set(second.paths) - set(first.paths)))
        raise InputError(
            f"{files[0]} and {files[1]} did not score the same images ({len(missing)} only in the first, "
            f"{extra} only in the second, e.g. {example}); a paired test needs the same images"
        )
    other_labels = np.array([by_path[p][0] for p in first.paths])
    if not np.array_equal(other_labels, first.labels):
        raise InputError(f"{files[0]} and {files[1]} label some images differently")
    other = np.array([by_path[p][1] for p in first.paths])
    test = paired_delong(first.labels, first.scores, other)
    return {
        "a": {"scores": str(files[0]), **auroc_interval(first.labels, first.scores)},
        "b": {"scores": str(files[1]), **auroc_interval(first.labels, other)},
        "n_normal": int((first.labels == 0).sum()),
        "n_abnormal": int((first.labels == 1).sum()),
        "test": "DeLong's paired test of AUROC(a) = AUROC(b), two-sided",
        **test,
        "verdict": verdict(test, alpha),
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    a, b = result["a"], result["b"]
    return [
        f"a: AUROC {a['auroc']:.4f} (95 % CI {a['low']:.4f}-{a['high']:.4f})  {a['scores']}",
        f"b: AUROC {b['auroc']:.4f} (95 % CI {b['low']:.4f}-{b['high']:.4f})  {b['scores']}",
        f"a - b = {result['difference']:+.4f} (95 % CI {result['low']:+.4f} to {result['high']:+.4f}), "
        f"p = {result['p']:.3g} on {result['n_normal']} normal and {result['n_abnormal']} abnormal images: "
        f"a is {result['verdict']}{' b' if result['verdict'] != 'level' else ' with b'}",
    ]
