"""Find the labelled images of a dataset split, whatever layout the dataset is stored in.

Three layouts are understood (see :func:`detect_layout`):

* ``data.json`` — MedIAnomaly / DDAD: ``root/images/<file>`` and ``root/data.json`` holding
  ``{"train": {"0": [...]}, "test": {"0": [...], "1": [...]}}`` (the format the official SCRD
  code reads; ``train.unlabeled`` is accepted and reachable as split ``"unlabeled"``).
* ``folders`` — ``root/<split>/normal/`` and ``root/<split>/abnormal/``.
* ``csv`` — a manifest with a ``path`` column and optional ``label`` and ``split`` columns.

Files holding several images (NIfTI volumes; multi-frame DICOM with ``data.dicom_frames = all``)
are expanded into one sample per kept slice/frame, with ids like ``vol.nii.gz#slice=12``.

Problems (missing files, duplicates, bad labels, nothing found) raise :class:`DatasetError`;
nothing is dropped silently, because a quietly shrunken test set changes the reported metrics.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from ..errors import DatasetError
from ..filenames import OUTPUT_MARKER, OUTPUT_PNG_KEY, SPLIT_FILE
from .readers import frame_word, is_image_file, list_frames, supported_suffixes

if TYPE_CHECKING:
    from ..config import DataConfig

LAYOUT_DATA_JSON = SPLIT_FILE
LAYOUT_FOLDERS = "folders"
LAYOUT_CSV = "csv"

_FOLDER_LABELS = {"normal": 0, "abnormal": 1}
_LABEL_WORDS = {"0": 0, "1": 1, "normal": 0, "abnormal": 1}
_MAX_LISTED = 10


@dataclass(frozen=True)
class Sample:
    """One image: ``label`` is 0 (normal), 1 (abnormal) or None (unknown).

    ``frame`` picks one slice/frame of a file that holds several (None: the file is one image).
    """

    path: Path
    label: int | None
    id: str
    frame: int | None = None

    @property
    def key(self) -> str:
        """The file path, plus ``#slice=K`` / ``#frame=K`` for one image of a multi-image file."""
        return str(self.path) if self.frame is None else f"{self.path}#{frame_word(self.path)}={self.frame}"


def expand_frames(samples: Sequence[Sample], options: "DataConfig | None" = None) -> list[Sample]:
    """Replace each multi-image file by one sample per kept slice/frame (ids get ``#slice=K``)."""
    out: list[Sample] = []
    for s in samples:
        frames = list_frames(s.path, options) if s.frame is None else None
        if frames is None:
            out.append(s)
            continue
        word, indices = frames
        out.extend(Sample(s.path, s.label, f"{s.id}#{word}={i}", i) for i in indices)
    return out


def _problem(source: str | Path, what: str, items: Sequence[object]) -> DatasetError:
    """A DatasetError listing up to 10 offending entries and their total count."""
    shown = ", ".join(str(i) for i in items[:_MAX_LISTED])
    more = f", ... ({len(items)} in total)" if len(items) > _MAX_LISTED else f" ({len(items)} in total)"
    return DatasetError(f"{source}: {what}: {shown}{more}")


def _check(source: str | Path, samples: list[Sample]) -> list[Sample]:
    """Reject empty results, duplicate files and files that do not exist."""
    if not samples:
        raise DatasetError(f"{source}: no images found for this split")
    seen: set[str] = set()
    dups = []
    for s in samples:
        key = os.path.normcase(os.path.abspath(s.path))
        if key in seen:
            dups.append(s.id)
        seen.add(key)
    if dups:
        raise _problem(source, "duplicate entries", dups)
    missing = [str(s.path) for s in samples if not s.path.is_file()]
    if missing:
        raise _problem(source, "listed file(s) not found", missing)
    return samples


def detect_layout(root: str | Path) -> str:
    """The layout of a dataset path: ``LAYOUT_CSV``, ``LAYOUT_DATA_JSON`` or ``LAYOUT_FOLDERS``."""
    root = Path(root)
    if root.suffix.lower() == ".csv":
        if not root.is_file():
            raise DatasetError(f"{root}: manifest not found")
        return LAYOUT_CSV
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder or .csv manifest")
    if (root / SPLIT_FILE).is_file():
        return LAYOUT_DATA_JSON
    if any((root / split / cls).is_dir() for split in ("train", "test") for cls in _FOLDER_LABELS):
        return LAYOUT_FOLDERS
    raise DatasetError(
        f"{root}: unknown dataset layout; expected images/ + data.json, "
        "train/normal/ + test/{normal,abnormal}/ folders, or a .csv manifest with a 'path' column"
    )


def load_samples(source: str | Path, split: str, options: "DataConfig | None" = None) -> list[Sample]:
    """The single entry point: all samples of ``split`` in a dataset folder or CSV manifest.

    A path to a ``data.json`` file is taken to mean its folder. Volumes and multi-frame files are
    expanded into their kept slices/frames following ``options`` (:func:`expand_frames`).
    """
    if Path(source).name == SPLIT_FILE and Path(source).is_file():
        source = Path(source).parent
    layout = detect_layout(source)
    if layout == LAYOUT_CSV:
        samples = samples_from_csv(source, split)
    elif layout == LAYOUT_DATA_JSON:
        samples = samples_from_data_json(source, split)
    else:
        samples = samples_from_folders(source, split)
    return expand_frames(samples, options)


def samples_from_data_json(root: str | Path, split: str) -> list[Sample]:
    """Samples of ``split`` (``train``, ``test`` or ``unlabeled``) in the MedIAnomaly layout.

    Label keys other than "0"/"1" are errors. ``train.unlabeled`` (present in the official
    split files) is not part of ``train``; ask for split ``"unlabeled"`` to get it.
    """
    root = Path(root)
    path = root / SPLIT_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(spec, dict):
        raise DatasetError(f"{path}: top level must be an object with 'train'/'test' keys")
    if split == "unlabeled":
        groups = spec.get("train", {}).get("unlabeled") if isinstance(spec.get("train"), dict) else None
    else:
        groups = spec.get(split)
    if not isinstance(groups, dict):
        available = [k for k in spec if isinstance(spec[k], dict)]
        raise DatasetError(f"{path}: no split {split!r} (available: {', '.join(available)})")
    groups = {k: v for k, v in groups.items() if not (split == "train" and k == "unlabeled")}
    bad = [k for k in groups if k not in ("0", "1")]
    if bad:
        raise _problem(path, f"bad label key(s) in split {split!r} (expected '0' or '1')", [repr(k) for k in bad])
    samples: list[Sample] = []
    not_names = []
    for key in sorted(groups):
        names = groups[key]
        if not isinstance(names, list):
            raise DatasetError(f"{path}: {split}.{key} must be a list of file names")
        for name in names:
            if not isinstance(name, str) or not name:
                not_names.append(repr(name))
                continue
            samples.append(Sample(root / "images" / name, int(key), name))
    if not_names:
        raise _problem(path, f"entries in split {split!r} that are not file names", not_names)
    return _check(path, samples)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p) and not p.name.startswith("."))


def samples_from_folders(root: str | Path, split: str) -> list[Sample]:
    """Samples under ``root/<split>/normal`` (label 0) and ``root/<split>/abnormal`` (label 1)."""
    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir}: split folder not found")
    unknown = sorted(
        p.name
        for p in split_dir.iterdir()
        if p.is_dir() and p.name not in _FOLDER_LABELS and not p.name.startswith(".")
    )
    if unknown:
        raise _problem(split_dir, "unexpected class folder(s) (expected 'normal' and 'abnormal')", unknown)
    loose = sorted(p.name for p in split_dir.iterdir() if p.is_file() and is_image_file(p))
    if loose:
        raise _problem(split_dir, "images outside the normal/ and abnormal/ folders", loose)
    samples = [
        Sample(p, label, p.relative_to(root).as_posix())
        for cls, label in _FOLDER_LABELS.items()
        if (split_dir / cls).is_dir()
        for p in _image_files(split_dir / cls)
    ]
    return _check(split_dir, samples)


def _parse_label(value: str | None) -> int | None:
    """'0'/'1'/'normal'/'abnormal' or empty (unknown); anything else raises KeyError."""
    text = (value or "").strip().lower()
    return None if text == "" else _LABEL_WORDS[text]


def _read_manifest(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = [c.strip() for c in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read manifest ({exc})") from exc
    if "path" not in fields:
        raise DatasetError(f"{path}: manifest needs a header with a 'path' column (got {fields})")
    return [{(k or "").strip(): (v or "") for k, v in row.items()} for row in rows]


def samples_from_csv(manifest: str | Path, split: str | None = None) -> list[Sample]:
    """Samples listed in a CSV manifest (relative paths resolve against the CSV's folder).

    The ``label`` column is optional (missing or empty means unknown). If a ``split`` column
    exists, only rows of ``split`` are kept; without one, ``split`` is ignored.
    """
    manifest = Path(manifest)
    rows = _read_manifest(manifest)
    if split is not None and rows and "split" in rows[0]:
        rows = [r for r in rows if r["split"].strip() == split]
    samples, bad_labels, empty = [], [], []
    for line, row in enumerate(rows, start=2):
        raw = row["path"].strip()
        if not raw:
            empty.append(f"line {line}")
            continue
        try:
            label = _parse_label(row.get("label"))
        except KeyError:
            bad_labels.append(f"line {line}: {row.get('label')!r}")
            continue
        p = Path(raw).expanduser()
        samples.append(Sample(p if p.is_absolute() else manifest.parent / p, label, raw))
    if empty:
        raise _problem(manifest, "rows with an empty path", empty)
    if bad_labels:
        raise _problem(manifest, "bad label(s) (expected 0, 1, normal, abnormal or empty)", bad_labels)
    return _check(manifest, samples)


def collect_images(inputs: Sequence[str] | Iterable[str], exclude: Sequence[str | Path] = ()) -> list[Path]:
    """Image paths for prediction from files, folders (recursive), glob patterns or .csv manifests.

    Returns absolute paths, sorted and de-duplicated. An input that matches nothing is an error,
    so a typo cannot silently shrink the batch. What ``scrd predict`` wrote is never an input
    (:func:`is_own_output`), nor anything inside the folders ``exclude`` (where it writes images,
    by resolved path); a warning counts what was left out.
    """
    found: set[Path] = set()
    unmatched: list[str] = []
    missing: list[str] = []
    not_images: list[str] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_file() and p.suffix.lower() == ".csv":
            found.update(s.path for s in samples_from_csv(p))
        elif p.is_file():
            if is_image_file(p):
                found.add(p)
            else:
                not_images.append(str(p))
        else:
            if p.is_dir():
                files = _image_files(p)
            else:
                hits = [Path(h) for h in glob.glob(os.path.expanduser(str(item)), recursive=True)]
                files = [h for h in hits if h.is_file() and is_image_file(h)]
                files += [f for h in hits if h.is_dir() for f in _image_files(h)]
            if files:
                found.update(files)
            elif not p.exists() and not glob.has_magic(str(item)):
                missing.append(str(item))
            else:
                unmatched.append(str(item))
    if missing:
        raise _problem("inputs", "do not exist (no such file or folder)", missing)
    if not_images:
        raise _problem("inputs", f"not image files (supported: {', '.join(supported_suffixes())})", not_images)
    if unmatched:
        raise _problem("inputs", "matched no image files", unmatched)
    if not found:
        raise DatasetError("inputs: no images given")
    paths = sorted({Path(os.path.abspath(p)) for p in found})
    return _leave_out_own_outputs(paths, exclude)


def _leave_out_own_outputs(paths: list[Path], exclude: Sequence[str | Path]) -> list[Path]:
    marked: dict[Path, bool] = {}
    excluded = [Path(folder).resolve() for folder in exclude]
    own = [p for p in paths if _in_folders(p, excluded) or is_own_output(p, marked)]
    if not own:
        return paths
    left_out = set(own)
    kept = [p for p in paths if p not in left_out]
    what = f"{len(own)} file(s) that scrd predict wrote (heat maps, panels), e.g. {own[0]}"
    if not kept:
        raise DatasetError(f"inputs: every image found is one of {what}; scrd never scores its own output")
    warnings.warn(f"inputs: left out {what}: scrd never scores its own output", stacklevel=3)
    return kept


def _in_folders(path: Path, folders: list[Path]) -> bool:
    parents = path.resolve().parents
    return any(folder in parents for folder in folders)


def is_own_output(path: str | Path, marked_folders: dict[Path, bool] | None = None) -> bool:
    """Whether ``scrd predict`` wrote this file: it lies in a folder holding the ``OUTPUT_MARKER``
    file (at any depth), or it is a PNG with the ``OUTPUT_PNG_KEY`` text chunk (a heat map or panel
    copied elsewhere). ``marked_folders`` caches the folders already looked at."""
    path = Path(path).resolve()
    cache = {} if marked_folders is None else marked_folders
    for folder in path.parents:
        if folder not in cache:
            cache[folder] = (folder / OUTPUT_MARKER).is_file()
        if cache[folder]:
            return True
    return path.suffix.lower() == ".png" and OUTPUT_PNG_KEY in png_text_keys(path)


def png_text_keys(path: str | Path) -> set[str]:
    """The keywords of a PNG's tEXt chunks before its image data (read from the chunk headers, no
    decoding); empty for anything that is not a readable PNG."""
    keys: set[str] = set()
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return keys
            while True:
                header = f.read(8)
                if len(header) < 8:
                    return keys
                length, kind = struct.unpack(">I4s", header)
                if kind in (b"IDAT", b"IEND"):
                    return keys
                if kind == b"tEXt" and length <= 4096:
                    keys.add(f.read(length).split(b"\0", 1)[0].decode("latin-1"))
                    f.seek(4, os.SEEK_CUR)
                else:
                    f.seek(length + 4, os.SEEK_CUR)
    except OSError:
        return keys


def collect_samples(
    inputs: Sequence[str] | Iterable[str], options: "DataConfig | None" = None, exclude: Sequence[str | Path] = ()
) -> list[Sample]:
    """Unlabelled samples for prediction: :func:`collect_images` (``exclude``: the folders predict
    writes images to), volumes expanded into slices.

    Ids are the absolute paths (plus ``#slice=K`` / ``#frame=K``).
    """
    return expand_frames([Sample(p, None, str(p)) for p in collect_images(inputs, exclude)], options)
