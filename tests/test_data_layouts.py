"""Dataset layouts, manifests, prediction inputs and the torch Dataset (scrd.data)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scrd.data import (
    DatasetError,
    ImageDataset,
    Sample,
    collect_images,
    detect_layout,
    load_samples,
    make_loader,
    read_image,
)

REPO = Path(__file__).resolve().parents[1]
_REAL_CANDIDATES = [Path("/work/shared/data/brain_tumor"), REPO.parent / "shared/data/brain_tumor"]
REAL = next((p for p in _REAL_CANDIDATES if (p / "data.json").is_file()), None)


def _img(path: Path, value: int = 100, size: int = 8, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)
    return path


def _data_json(root: Path, spec: dict, create: bool = True) -> Path:
    names = {n for split in spec.values() for group in split.values() if isinstance(group, list) for n in group}
    if create:
        for n in names:
            _img(root / "images" / n)
    (root / "data.json").write_text(json.dumps(spec))
    return root


SPEC = {
    "train": {"0": ["n1.png", "n2.png", "n3.png"], "unlabeled": {"0": ["u0.png"], "1": ["u1.png", "u2.png"]}},
    "test": {"0": ["t0.png", "t1.png"], "1": ["a0.png"]},
}


# --- data.json layout ----------------------------------------------------------------------------


def test_data_json_layout(tmp_path):
    _data_json(tmp_path, SPEC)
    for n in ("u0.png", "u1.png", "u2.png"):
        _img(tmp_path / "images" / n)
    assert detect_layout(tmp_path) == "data.json"
    train = load_samples(tmp_path, "train")
    assert [(s.id, s.label) for s in train] == [("n1.png", 0), ("n2.png", 0), ("n3.png", 0)]
    assert train[0].path == tmp_path / "images" / "n1.png"
    test = load_samples(str(tmp_path), "test")
    assert sorted((s.id, s.label) for s in test) == [("a0.png", 1), ("t0.png", 0), ("t1.png", 0)]
    assert load_samples(tmp_path / "data.json", "test") == test
    unlabeled = load_samples(tmp_path, "unlabeled")
    assert sorted(s.label for s in unlabeled) == [0, 1, 1]


def test_data_json_missing_file_is_named(tmp_path):
    _data_json(tmp_path, SPEC)
    os.remove(tmp_path / "images" / "t1.png")
    with pytest.raises(DatasetError, match=r"data\.json.*not found.*t1\.png.*\(1 in total\)"):
        load_samples(tmp_path, "test")
    assert len(load_samples(tmp_path, "train")) == 3  # other splits still load


def test_data_json_many_missing_lists_ten_and_total(tmp_path):
    names = [f"m{i:02d}.png" for i in range(13)]
    _data_json(tmp_path, {"train": {"0": names}}, create=False)
    with pytest.raises(DatasetError) as info:
        load_samples(tmp_path, "train")
    msg = str(info.value)
    assert "m09.png" in msg and "m10.png" not in msg and "13 in total" in msg


def test_data_json_duplicates_are_errors(tmp_path):
    _data_json(tmp_path, {"train": {"0": ["a.png", "b.png", "a.png"]}, "test": {"0": ["c.png"], "1": ["c.png"]}})
    with pytest.raises(DatasetError, match=r"duplicate.*a\.png"):
        load_samples(tmp_path, "train")
    with pytest.raises(DatasetError, match=r"duplicate.*c\.png"):
        load_samples(tmp_path, "test")


def test_data_json_bad_label_and_unknown_split(tmp_path):
    _data_json(tmp_path, {"train": {"0": ["a.png"]}, "test": {"0": ["b.png"], "2": ["c.png"]}})
    with pytest.raises(DatasetError, match=r"bad label.*'2'"):
        load_samples(tmp_path, "test")
    with pytest.raises(DatasetError, match=r"no split 'val'"):
        load_samples(tmp_path, "val")


def test_data_json_empty_split(tmp_path):
    _data_json(tmp_path, {"train": {"0": []}})
    with pytest.raises(DatasetError, match="no images"):
        load_samples(tmp_path, "train")


# --- folder layout -------------------------------------------------------------------------------


def test_folder_layout(tmp_path):
    for i in range(3):
        _img(tmp_path / "train" / "normal" / f"n{i}.png")
    _img(tmp_path / "test" / "normal" / "b.jpg")
    _img(tmp_path / "test" / "normal" / "a.png")
    _img(tmp_path / "test" / "abnormal" / "sub" / "z.PNG")
    (tmp_path / "test" / "normal" / "notes.txt").write_text("ignored: not an image suffix")
    assert detect_layout(tmp_path) == "folders"
    train = load_samples(tmp_path, "train")
    assert len(train) == 3 and {s.label for s in train} == {0}
    test = load_samples(tmp_path, "test")
    assert [(s.id, s.label) for s in test] == [
        ("test/normal/a.png", 0),
        ("test/normal/b.jpg", 0),
        ("test/abnormal/sub/z.PNG", 1),
    ]


def test_folder_layout_unknown_class_folder_is_an_error(tmp_path):
    _img(tmp_path / "test" / "normal" / "a.png")
    _img(tmp_path / "test" / "glioma" / "g.png")
    with pytest.raises(DatasetError, match="glioma"):
        load_samples(tmp_path, "test")


def test_unknown_layout(tmp_path):
    _img(tmp_path / "x.png")
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        load_samples(tmp_path, "train")


# --- CSV manifest --------------------------------------------------------------------------------


def test_csv_relative_paths_and_optional_labels(tmp_path):
    _img(tmp_path / "imgs" / "a.png")
    _img(tmp_path / "imgs" / "b.png")
    absolute = _img(tmp_path / "elsewhere" / "c.png")
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"path,label\n../imgs/a.png,0\n../imgs/b.png,1\n{absolute},\n")
    assert detect_layout(manifest) == "csv"
    samples = load_samples(manifest, "test")
    assert [s.label for s in samples] == [0, 1, None]
    assert samples[0].path.resolve() == (tmp_path / "imgs" / "a.png").resolve()
    assert samples[2].path == absolute


def test_csv_without_label_column_and_split_column(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.png")
    (tmp_path / "nolabel.csv").write_text("path\na.png\nb.png\n")
    assert [s.label for s in load_samples(tmp_path / "nolabel.csv", "train")] == [None, None]
    (tmp_path / "split.csv").write_text("path,label,split\na.png,0,train\nb.png,1,test\n")
    assert [s.id for s in load_samples(tmp_path / "split.csv", "test")] == ["b.png"]


def test_csv_bad_label_missing_file_duplicate(tmp_path):
    _img(tmp_path / "a.png")
    (tmp_path / "bad.csv").write_text("path,label\na.png,maybe\n")
    with pytest.raises(DatasetError, match=r"bad\.csv.*bad label.*maybe"):
        load_samples(tmp_path / "bad.csv", "test")
    (tmp_path / "gone.csv").write_text("path,label\na.png,0\nmissing.png,1\n")
    with pytest.raises(DatasetError, match=r"gone\.csv.*not found.*missing\.png"):
        load_samples(tmp_path / "gone.csv", "test")
    (tmp_path / "dup.csv").write_text("path,label\na.png,0\n./a.png,0\n")
    with pytest.raises(DatasetError, match=r"dup\.csv.*duplicate"):
        load_samples(tmp_path / "dup.csv", "test")
    (tmp_path / "nohead.csv").write_text("file,label\na.png,0\n")
    with pytest.raises(DatasetError, match="'path' column"):
        load_samples(tmp_path / "nohead.csv", "test")


# --- prediction inputs ---------------------------------------------------------------------------


def test_collect_images_file_folder_glob_csv_dedup(tmp_path):
    a = _img(tmp_path / "d" / "a.png")
    b = _img(tmp_path / "d" / "deep" / "b.jpg")
    c = _img(tmp_path / "e" / "c.tif")
    (tmp_path / "d" / "readme.txt").write_text("x")
    (tmp_path / "list.csv").write_text("path\ne/c.tif\nd/a.png\n")
    got = collect_images(
        [
            str(a),
            str(tmp_path / "d"),
            str(tmp_path / "e" / "*.tif"),
            str(tmp_path / "list.csv"),
            str(tmp_path / "d" / ".." / "d" / "a.png"),
        ]
    )
    assert got == sorted([a, b, c]) and all(p.is_absolute() for p in got)


def test_collect_images_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"matched no image.*\*\.png"):
        collect_images([str(tmp_path / "*.png")])
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"not image files.*t\.txt"):
        collect_images([str(tmp_path / "t.txt")])
    with pytest.raises(DatasetError, match="inputs: no images given"):
        collect_images([])


# --- torch Dataset and loader --------------------------------------------------------------------


def test_image_dataset_items_and_loader(tmp_path):
    samples = [
        Sample(_img(tmp_path / f"{i}.png", value=20 * i, size=10), label, f"{i}")
        for i, label in enumerate([0, 1, None, 0, 1])
    ]
    ds = ImageDataset(samples, size=6)
    item = ds[2]
    assert item["image"].shape == (3, 6, 6) and item["label"] == -1 and item["index"] == 2
    assert item["path"] == str(samples[2].path)
    torch.testing.assert_close(item["image"], torch.full((3, 6, 6), 40 / 255))

    batches = list(make_loader(ds, 2))
    assert [b["index"].tolist() for b in batches] == [[0, 1], [2, 3], [4]]  # in order, last batch kept
    assert batches[0]["label"].tolist() == [0, 1] and batches[1]["path"] == [str(samples[2].path), str(samples[3].path)]
    assert all(b["skipped"] == [] for b in batches)


def test_loader_lists_unreadable_images_with_their_batch(tmp_path):
    good = Sample(_img(tmp_path / "good.png", value=20, size=10), 0, "good")
    bad_path = tmp_path / "bad.png"
    bad_path.write_bytes(b"not a png")
    ds = ImageDataset([good, Sample(bad_path, 0, "bad")], size=6, on_bad_image="skip")
    (batch,) = list(make_loader(ds, 2))
    assert batch["index"].tolist() == [0]
    assert [p for p, _ in batch["skipped"]] == [str(bad_path)] and "cannot decode" in batch["skipped"][0][1]


# --- real data -----------------------------------------------------------------------------------


@pytest.mark.skipif(
    REAL is None,
    reason="real Brain Tumor data not found at /work/shared/data/brain_tumor or ../shared/data/brain_tumor",
)
def test_real_brain_tumor_split_and_modes():
    train = load_samples(REAL, "train")
    test = load_samples(REAL, "test")
    assert len(train) == 998 and {s.label for s in train} == {0}
    assert sum(s.label == 0 for s in test) == 399 and sum(s.label == 1 for s in test) == 600
    modes: dict[str, Path] = {}
    for s in train + test:
        with Image.open(s.path) as im:
            modes.setdefault(im.mode, s.path)
        if {"RGB", "L"} <= modes.keys():
            break
    assert {"RGB", "L"} <= modes.keys()
    rgb, gray = read_image(modes["RGB"]), read_image(modes["L"])
    assert rgb.shape == (224, 224, 3) and gray.shape == (224, 224, 1)
    for arr in (rgb, gray):
        assert 0.0 <= arr.min() and arr.max() <= 1.0 and arr.max() > 0.2
    ds = ImageDataset([Sample(modes["L"], 0, "g"), Sample(modes["RGB"], 1, "c")], size=64)
    assert ds[0]["image"].shape == ds[1]["image"].shape == (3, 64, 64)
