"""Brain Tumor MRI Dataset (Kaggle, masoudnickparvar) -> the DDAD/MedIAnomaly BrainTumor benchmark.

Raw input: the Kaggle download's ``Training/`` and ``Testing/`` folders, each with ``glioma/``,
``meningioma/``, ``notumor/`` and ``pituitary/``. The split is DDAD-ASR's
``data/BrainTumor/data.json`` (shipped with scrd): train 1000 normal, test 600 normal + 600
glioma/meningioma (no pituitary), 400 + 600 unlabeled.

The split's file names are the Kaggle file names, unchanged: ``<T>-<cc>[Tr]_<NNNN>.jpg``, where
``T`` is ``Tr`` (``Training/``) or ``Te`` (``Testing/``) and ``cc`` the class folder (``gl``
glioma, ``me`` meningioma, ``no`` notumor, ``pi`` pituitary); the optional ``Tr`` after the class
code is part of the Kaggle name (e.g. ``Testing/glioma/Te-glTr_0009.jpg``), not a folder.
Files are copied byte for byte into ``images/`` (DDAD only moves them).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..readers import PIL_SUFFIXES
from .common import (
    PrepareError,
    PrepareReport,
    all_listed,
    copy_file,
    finish,
    groups_of,
    index_by_name,
    prepare_listed,
    split_list,
)

PAPER_COUNTS = {"train/0": 1000, "test/0": 600, "test/1": 600}
PAPER_UNLABELED = {"train/unlabeled/0": 400, "train/unlabeled/1": 600}
SPLIT_FOLDERS = {"Tr": "Training", "Te": "Testing"}
CLASS_FOLDERS = {"gl": "glioma", "me": "meningioma", "no": "notumor", "pi": "pituitary"}
_NAME = re.compile(r"^(Tr|Te)-(gl|me|no|pi)(Tr)?_\d+\.\w+$")


def kaggle_location(name: str) -> str | None:
    """``Training/glioma`` for ``Tr-gl_0010.jpg`` (the folder a split name lives in), else None."""
    m = _NAME.match(name)
    return f"{SPLIT_FOLDERS[m.group(1)]}/{CLASS_FOLDERS[m.group(2)]}" if m else None


def prepare_brain_tumor(raw: str | Path, out: str | Path, unlabeled: bool = False, workers: int = 1) -> PrepareReport:
    """Prepare Brain Tumor from ``raw`` (the folder holding ``Training/`` and ``Testing/``)."""
    raw, out = Path(raw), Path(out)
    if not raw.is_dir():
        raise PrepareError(f"{raw}: no such folder (expected the Kaggle folder with Training/ and Testing/)")
    spec = split_list("BrainTumor")
    groups = groups_of(spec, unlabeled)
    sources = index_by_name(raw, PIL_SUFFIXES)
    if not sources:
        raise PrepareError(f"{raw}: no images found (expected Training/<class>/Tr-*.jpg and Testing/<class>/Te-*.jpg)")
    report = PrepareReport(
        "brain-tumor", str(raw), str(out), paper={**PAPER_COUNTS, **(PAPER_UNLABELED if unlabeled else {})}
    )
    prepared = prepare_listed(report, out, groups, sources, copy_file, workers)
    listed = all_listed(spec)
    report.extra = sorted(k for k in sources if k not in listed)
    misplaced = [
        f"{name} in {sources[name].parent.relative_to(raw).as_posix()}"
        for names in prepared.values()
        for name in names
        if kaggle_location(name) and not sources[name].parent.as_posix().endswith(kaggle_location(name))
    ]
    if misplaced:
        report.notes.append(
            f"{len(misplaced)} file(s) are not in the Kaggle folder their name implies "
            f"(used anyway; check the download): {', '.join(misplaced[:10])}"
        )
    if report.extra:
        report.notes.append("extra images are expected: the split leaves out pituitary and some other Kaggle files")
    if not unlabeled:
        report.notes.append("train.unlabeled lists not prepared (use --with-unlabeled)")
    return finish(report, out, prepared)
