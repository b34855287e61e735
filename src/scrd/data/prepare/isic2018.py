"""ISIC 2018 Task 3 -> a one-class benchmark with nevus as the normal class.

Raw input: the ISIC 2018 Task 3 download, anywhere under ``raw``: the image folders
``ISIC2018_Task3_{Training,Validation,Test}_Input/`` and the ground-truth CSVs
``ISIC2018_Task3_{Training,Validation,Test}_GroundTruth.csv`` (columns image, MEL, NV, BCC, AKIEC,
BKL, DF, VASC; one-hot). No split list exists (MedIAnomaly issue #8: "the original split"):

* train: the Training images whose NV is 1 (6705), label 0;
* test, protocol ``test`` (MedIAnomaly): the official Test set, 1512 images, NV = 0 (909), any
  other class = 1 (603);
* test, protocol ``validation`` (ReContrast): the official Validation set, 193 images (123 + 70).

Images are copied byte for byte into ``images/``; names stay ``ISIC_XXXXXXX.jpg``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .common import PrepareError, PrepareReport, copy_file, finish, prepare_listed

CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
NORMAL = "NV"
PROTOCOLS = {"test": "Test", "validation": "Validation"}
PAPER_COUNTS = {
    "test": {"train/0": 6705, "test/0": 909, "test/1": 603},
    "validation": {"train/0": 6705, "test/0": 123, "test/1": 70},
}


def _find(raw: Path, name: str, want_dir: bool) -> Path:
    hits = sorted(p for p in [raw, *raw.rglob(name)] if p.name == name and p.is_dir() == want_dir)
    if not hits:
        kind = "folder" if want_dir else "file"
        raise PrepareError(f"{raw}: {kind} {name} not found (unpack the ISIC 2018 Task 3 download there)")
    if len(hits) > 1:
        raise PrepareError(f"{raw}: {name} found {len(hits)} times ({hits[0]}, {hits[1]}); keep one copy")
    return hits[0]


def read_ground_truth(path: Path) -> dict[str, str]:
    """``{image id: class}`` from a Task 3 ground-truth CSV; malformed rows are errors."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = [c.strip() for c in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PrepareError(f"{path}: cannot read ({exc})") from exc
    if fields[:1] != ["image"] or not set(CLASSES) <= set(fields):
        raise PrepareError(f"{path}: expected columns image,{','.join(CLASSES)}; got {fields}")
    out: dict[str, str] = {}
    bad: list[str] = []
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        try:
            hot = [c for c in CLASSES if float(row[c]) == 1.0]
            zeros = all(float(row[c]) in (0.0, 1.0) for c in CLASSES)
        except ValueError:
            hot, zeros = [], False
        if len(hot) != 1 or not zeros or not row["image"] or row["image"] in out:
            bad.append(f"line {line}")
            continue
        out[row["image"]] = hot[0]
    if bad:
        raise PrepareError(
            f"{path}: rows that are not one image with exactly one class ({len(bad)}): {', '.join(bad[:10])}"
        )
    return out


def prepare_isic2018(raw: str | Path, out: str | Path, protocol: str = "test", workers: int = 1) -> PrepareReport:
    """Prepare ISIC 2018 with the ``test`` (1512 images) or ``validation`` (193) test protocol."""
    raw, out = Path(raw), Path(out)
    if protocol not in PROTOCOLS:
        raise PrepareError(f"unknown ISIC 2018 protocol {protocol!r}; choose test or validation")
    if not raw.is_dir():
        raise PrepareError(f"{raw}: no such folder (expected the unpacked ISIC 2018 Task 3 download)")
    sets = {"train": "Training", "test": PROTOCOLS[protocol]}
    truth = {s: read_ground_truth(_find(raw, f"ISIC2018_Task3_{n}_GroundTruth.csv", False)) for s, n in sets.items()}
    folders = {s: _find(raw, f"ISIC2018_Task3_{n}_Input", True) for s, n in sets.items()}
    images = {
        s: {
            p.stem: p
            for p in sorted(folders[s].iterdir())
            if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")
        }
        for s in sets
    }
    clash = sorted(set(truth["train"]) & set(truth["test"]))
    if clash:
        raise PrepareError(f"{raw}: image ids in both the Training and the {sets['test']} CSV: {', '.join(clash[:10])}")

    groups = {
        "train/0": [i for i, c in truth["train"].items() if c == NORMAL],
        "test/0": [i for i, c in truth["test"].items() if c == NORMAL],
        "test/1": [i for i, c in truth["test"].items() if c != NORMAL],
    }
    split_of = {"train/0": "train", "test/0": "test", "test/1": "test"}
    # Output names keep the download's file names (ISIC_0024306.jpg).
    sources = {
        images[split_of[g]][i].name: images[split_of[g]][i]
        for g, ids in groups.items()
        for i in ids
        if i in images[split_of[g]]
    }
    named = {
        g: [images[split_of[g]][i].name if i in images[split_of[g]] else f"{i}.jpg" for i in ids]
        for g, ids in groups.items()
    }
    report = PrepareReport("isic2018", str(raw), str(out), protocol=protocol, paper=dict(PAPER_COUNTS[protocol]))
    prepared = prepare_listed(report, out, named, sources, copy_file, workers)
    report.extra = sorted(p.name for s in sets for i, p in images[s].items() if i not in truth[s])
    excluded = sum(1 for c in truth["train"].values() if c != NORMAL)
    report.notes.append(f"{excluded} Training images of other classes are left out: training uses nevus (NV) only")
    return finish(report, out, prepared)
