"""``scrd data prepare``: the paper's datasets from their public downloads to the data.json layout.

Each preparation writes ``OUT/images/``, ``OUT/data.json`` (the files actually prepared) and
``OUT/prepare_report.json`` (counts against the paper's, missing and extra files). Nothing here
imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .brain_tumor import prepare_brain_tumor
from .common import REPORT_FILE, PrepareError, PrepareReport, split_list
from .isic2018 import prepare_isic2018
from .rsna import prepare_rsna

DATASETS = ("rsna", "brain-tumor", "isic2018")


def prepare(dataset: str, raw: str | Path, out: str | Path, **options: Any) -> PrepareReport:
    """Prepare ``dataset`` (one of :data:`DATASETS`) from ``raw`` into ``out``."""
    functions = {"rsna": prepare_rsna, "brain-tumor": prepare_brain_tumor, "isic2018": prepare_isic2018}
    if dataset not in functions:
        raise PrepareError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return functions[dataset](raw, out, **options)


__all__ = ["DATASETS", "REPORT_FILE", "PrepareError", "PrepareReport", "prepare", "prepare_brain_tumor",
           "prepare_isic2018", "prepare_rsna", "split_list"]
