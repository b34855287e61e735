"""Append-only CSV logs keyed by iteration (the training log, the evaluation log).

Rows are flushed as they are written. On resume the log is cut back to the checkpoint's
iteration by an atomic rewrite, so no iteration is ever listed twice and nothing written after
the checkpoint (before a kill) survives.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

from ..storage import atomic_write


class CsvLog:
    def __init__(self, path: Path, fields: Sequence[str], keep_through: int = 0) -> None:
        """Open ``path``, keeping only the rows with ``iteration <= keep_through``."""
        self.path, self.fields = Path(path), list(fields)
        self.rows: list[dict[str, str]] = []  # every row of the file, as strings
        self.file = None
        if self.path.is_file():
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= keep_through]
            self._rewrite()

    def _rewrite(self) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.fields)
                writer.writeheader()
                writer.writerows(self.rows)

        atomic_write(self.path, write)

    def write(self, row: dict[str, Any]) -> None:
        if self.file is None:
            if not self.path.is_file():
                self._rewrite()  # header only
            self.file = open(self.path, "a", newline="")
            self.writer = csv.DictWriter(self.file, fieldnames=self.fields)
        self.writer.writerow(row)
        self.file.flush()
        self.rows.append({k: str(v) for k, v in row.items()})

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
