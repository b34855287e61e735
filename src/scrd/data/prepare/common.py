"""What every ``scrd data prepare`` command shares: split lists, the report, atomic file output.

A preparation never drops files silently: every file the split lists but the download lacks is
*missing*, every image of the download that no split lists is *extra*, and the counts are set
against the paper's. The ``data.json`` written lists only the files actually prepared, so a
partial download still gives a loadable dataset, while the report (printed, and saved as
``prepare_report.json``) says exactly how it differs from the paper's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable

from ...errors import PrepareError
from ...filenames import PREPARE_REPORT as REPORT_FILE
from ...filenames import SPLIT_FILE

_SHOWN = 10


def split_list(name: str) -> dict[str, Any]:
    """The paper's split list shipped with scrd (``RSNA`` or ``BrainTumor``), DDAD-ASR's data.json."""
    text = resources.files("scrd.data.prepare").joinpath(f"splits/{name}/data.json").read_text(encoding="utf-8")
    return json.loads(text)


def groups_of(spec: dict[str, Any], unlabeled: bool = False) -> dict[str, list[str]]:
    """Flatten a data.json into ``{"train/0": [...], "test/0": [...], "test/1": [...]}``.

    ``train.unlabeled`` becomes ``train/unlabeled/0`` and ``/1`` when ``unlabeled`` is true.
    """
    out: dict[str, list[str]] = {}
    for split in ("train", "test"):
        for key, value in spec.get(split, {}).items():
            if key == "unlabeled":
                if unlabeled:
                    for label, names in value.items():
                        out[f"{split}/unlabeled/{label}"] = list(names)
            else:
                out[f"{split}/{key}"] = list(value)
    return out


def all_listed(spec: dict[str, Any]) -> set[str]:
    """Every file name in a split list, unlabeled included."""
    return {n for names in groups_of(spec, unlabeled=True).values() for n in names}


def data_json_from_groups(groups: dict[str, list[str]]) -> dict[str, Any]:
    """The inverse of :func:`groups_of`: the MedIAnomaly/DDAD data.json structure."""
    spec: dict[str, Any] = {}
    for group, names in groups.items():
        parts = group.split("/")
        node = spec
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = list(names)
    return spec


def atomic_output(target: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, so a killed run leaves no torn file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def copy_file(source: Path, target: Path) -> None:
    """Copy bytes unchanged (the DDAD and MedIAnomaly layouts keep the original JPEGs)."""
    atomic_output(target, lambda tmp: shutil.copyfile(source, tmp))


def index_by_name(
    root: Path,
    suffixes: Iterable[str],
    key: Callable[[Path], str] = lambda p: p.name,
) -> dict[str, Path]:
    """Files under ``root`` (recursively) by ``key``; the same key twice is an error."""
    suffixes = tuple(s.lower() for s in suffixes)
    index: dict[str, Path] = {}
    duplicates: list[str] = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            k = key(path)
            if k in index:
                duplicates.append(f"{index[k]} and {path}")
            else:
                index[k] = path
    if duplicates:
        shown = "; ".join(duplicates[:_SHOWN])
        raise PrepareError(
            f"{root}: the same file name appears more than once ({len(duplicates)} "
            f"times, e.g. {shown}); point --raw at one copy of the download"
        )
    return index


@dataclass
class PrepareReport:
    """Counts per group (listed, prepared, paper), missing and extra files, and notes."""

    dataset: str
    raw: str
    out: str
    protocol: str | None = None
    listed: dict[str, int] = field(default_factory=dict)
    prepared: dict[str, int] = field(default_factory=dict)
    paper: dict[str, int] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def missing_total(self) -> int:
        return sum(len(v) for v in self.missing.values())

    @property
    def complete(self) -> bool:
        """Every listed file was prepared."""
        return self.missing_total == 0

    @property
    def matches_paper(self) -> bool:
        """The prepared counts equal the paper's for every group the paper gives."""
        return all(self.prepared.get(g, 0) == n for g, n in self.paper.items())

    def to_dict(self) -> dict[str, Any]:
        groups = {
            g: {
                "listed": self.listed.get(g, 0),
                "prepared": self.prepared.get(g, 0),
                "missing": len(self.missing.get(g, [])),
                "paper": self.paper.get(g),
            }
            for g in dict.fromkeys([*self.listed, *self.paper])
        }
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "raw": self.raw,
            "out": self.out,
            "complete": self.complete,
            "matches_paper": self.matches_paper,
            "groups": groups,
            "missing_total": self.missing_total,
            "missing": self.missing,
            "extra_total": len(self.extra),
            "extra": self.extra,
            "notes": self.notes,
        }

    def write(self, out_dir: Path) -> Path:
        path = Path(out_dir) / REPORT_FILE
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        atomic_output(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return path

    def summary(self) -> str:
        """Human-readable lines: counts against the paper's, then missing and extra files."""
        title = self.dataset + (f" ({self.protocol} protocol)" if self.protocol else "")
        lines = [f"{title}: {self.raw} -> {self.out}"]
        for group, row in self.to_dict()["groups"].items():
            paper = "-" if row["paper"] is None else row["paper"]
            flag = "" if row["paper"] is None or row["paper"] == row["prepared"] else "  (differs from the paper)"
            lines.append(
                f"  {group:<20} prepared {row['prepared']:>6} of {row['listed']:>6} listed; paper {paper}{flag}"
            )
        lines.append(f"  missing: {self.missing_total} listed file(s) not found in the download")
        for group, names in self.missing.items():
            if names:
                more = f", ... ({len(names)} in total)" if len(names) > _SHOWN else ""
                lines.append(f"    {group}: {', '.join(names[:_SHOWN])}{more}")
        more = f", ... ({len(self.extra)} in total)" if len(self.extra) > _SHOWN else ""
        lines.append(
            f"  extra: {len(self.extra)} file(s) in the download that no split uses"
            + (f": {', '.join(self.extra[:_SHOWN])}{more}" if self.extra else "")
        )
        lines.extend(f"  note: {n}" for n in self.notes)
        if not self.complete:
            lines.append(
                "  WARNING: incomplete; data.json lists only the prepared files, so results "
                "on it are not comparable with the paper's"
            )
        return "\n".join(lines)


def finish(report: PrepareReport, out_dir: Path, groups: dict[str, list[str]]) -> PrepareReport:
    """Write data.json (the prepared files only) and the report; callers check ``report.complete``."""
    spec = data_json_from_groups(groups)
    text = json.dumps(spec, indent=1) + "\n"
    atomic_output(Path(out_dir) / SPLIT_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    report.write(out_dir)
    return report


def run_jobs(jobs: list[tuple[Any, ...]], fn: Callable[..., None], workers: int) -> None:
    """Run ``fn(*job)`` for every job, in ``workers`` processes when more than one."""
    if workers <= 1 or len(jobs) < 2:
        for job in jobs:
            fn(*job)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(fn, *job) for job in jobs]:
            future.result()


def prepare_listed(
    report: PrepareReport,
    out_dir: Path,
    groups: dict[str, list[str]],
    sources: dict[str, Path],
    convert: Callable[[Path, Path], None],
    workers: int = 1,
) -> dict[str, list[str]]:
    """Make ``out_dir/images/<name>`` for every listed name found in ``sources``; fill the report.

    Files already in ``images/`` are kept (a stopped run resumes); the prepared names are
    returned per group.
    """
    images = Path(out_dir) / "images"
    images.mkdir(parents=True, exist_ok=True)
    prepared: dict[str, list[str]] = {}
    jobs: list[tuple[Path, Path]] = []
    for group, names in groups.items():
        present = [n for n in names if n in sources]
        prepared[group] = present
        report.listed[group] = len(names)
        report.prepared[group] = len(present)
        report.missing[group] = [n for n in names if n not in sources]
        jobs.extend((sources[n], images / n) for n in present if not (images / n).is_file())
    run_jobs(jobs, convert, workers)
    return prepared
