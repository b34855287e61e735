"""RSNA Pneumonia Detection Challenge -> the DDAD/MedIAnomaly RSNA benchmark.

Raw input: the competition's ``stage_2_train_images/`` (``<patientId>.dcm``; the test images have
no labels and are not used). The split is DDAD-ASR's ``data/RSNA/data.json`` (shipped with scrd):
normal = class "Normal", abnormal = "Lung Opacity"; train 3851 normal, test 1000 + 1000, and
4000 + 5012 unlabeled images (prepared only with ``unlabeled=True``).

Each DICOM becomes ``images/<patientId>.png`` by DDAD's ``preprocess_cxr.py`` steps: the stored
pixel values (no rescale, no window) -> ``max - value`` for MONOCHROME1 -> if not 8-bit, min-max
to [0, 255] truncated to uint8 -> 8-bit grey -> Pillow bilinear resize to 512 x 512 -> PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import (
    PrepareError,
    PrepareReport,
    all_listed,
    atomic_output,
    finish,
    groups_of,
    index_by_name,
    prepare_listed,
    split_list,
)

PAPER_COUNTS = {"train/0": 3851, "test/0": 1000, "test/1": 1000}
PAPER_UNLABELED = {"train/unlabeled/0": 4000, "train/unlabeled/1": 5012}
SIZE = 512


def ddad_png(source: Path, target: Path, size: int = SIZE) -> None:
    """Convert one DICOM to the PNG that DDAD's preprocessing writes."""
    try:
        import pydicom
    except ImportError:
        raise PrepareError(f"{source}: preparing RSNA needs pydicom; pip install 'scrd[dicom]'") from None
    from PIL import Image

    ds = pydicom.dcmread(str(source))
    try:
        img = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise PrepareError(f"{source}: cannot decode pixel data ({type(exc).__name__}: {exc})") from exc
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        img = img.max() - img
    if img.dtype != np.uint8:
        lo, hi = float(img.min()), float(img.max())
        scaled = (img.astype(np.float64) - lo) / (hi - lo) * 255 if hi > lo else np.zeros(img.shape)
        img = scaled.astype(np.uint8)  # truncation, as DDAD's astype(np.uint8)
    im = Image.fromarray(img).convert("L").resize((size, size), resample=Image.BILINEAR)
    atomic_output(target, lambda tmp: im.save(tmp, format="PNG"))


def prepare_rsna(raw: str | Path, out: str | Path, unlabeled: bool = False, workers: int = 1) -> PrepareReport:
    """Prepare RSNA from ``raw`` (a folder holding the ``.dcm`` files, searched recursively)."""
    raw, out = Path(raw), Path(out)
    if not raw.is_dir():
        raise PrepareError(f"{raw}: no such folder (expected the RSNA stage_2_train_images/ folder)")
    spec = split_list("RSNA")
    groups = groups_of(spec, unlabeled)
    sources = index_by_name(raw, (".dcm", ".dicom"), key=lambda p: p.stem + ".png")
    if not sources:
        raise PrepareError(f"{raw}: no .dcm files found (expected stage_2_train_images/<patientId>.dcm)")
    report = PrepareReport("rsna", str(raw), str(out), paper={**PAPER_COUNTS, **(PAPER_UNLABELED if unlabeled else {})})
    prepared = prepare_listed(report, out, groups, sources, ddad_png, workers)
    listed = all_listed(spec)
    report.extra = sorted(sources[k].name for k in sources if k not in listed)
    if report.extra:
        report.notes.append("extra DICOMs are expected: the split leaves out the 'No Lung Opacity / Not Normal' class")
    if not unlabeled:
        report.notes.append("train.unlabeled lists not prepared (use --with-unlabeled)")
    return finish(report, out, prepared)
