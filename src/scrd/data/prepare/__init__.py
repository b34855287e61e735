"""``scrd data prepare``: the paper's datasets from their public downloads to the data.json layout.

Each preparation writes ``OUT/images/``, ``OUT/data.json`` (the files actually prepared) and
``OUT/prepare_report.json`` (counts against the paper's, missing and extra files). The registry
below is the one list of dataset names; the modules are imported only when one is prepared.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ...filenames import PREPARE_REPORT as REPORT_FILE

__all__ = ["DATASETS", "REPORT_FILE", "prepare"]

# dataset name -> (module, function)
DATASETS: dict[str, tuple[str, str]] = {
    "rsna": ("rsna", "prepare_rsna"),
    "brain-tumor": ("brain_tumor", "prepare_brain_tumor"),
    "isic2018": ("isic2018", "prepare_isic2018"),
}


def prepare(dataset: str, raw: str | Path, out: str | Path, **options: Any):
    """Prepare ``dataset`` (a key of :data:`DATASETS`) from ``raw`` into ``out``; returns its report."""
    from ...errors import PrepareError

    if dataset not in DATASETS:
        raise PrepareError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    module, function = DATASETS[dataset]
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)(raw, out, **options)
