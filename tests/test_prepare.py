"""`scrd data prepare` on miniature raw trees with the real file-name patterns of each download."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scrd.cli import main
from scrd.data import load_samples, read_image
from scrd.data.prepare import prepare
from scrd.data.prepare.brain_tumor import kaggle_location
from scrd.data.prepare.common import split_list
from scrd.data.prepare.isic2018 import prepare_isic2018
from scrd.errors import PrepareError

SHARED_SPLITS = Path(__file__).resolve().parents[2] / "shared" / "splits"


def _jpg(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 10, 3), value, np.uint8)).save(path, quality=95)
    return path


def _report(out: Path) -> dict:
    return json.loads((out / "prepare_report.json").read_text())


# ------------------------------------------------------------------------ shipped split lists


@pytest.mark.parametrize(
    "name, counts",
    [
        (
            "RSNA",
            {"train/0": 3851, "train/unlabeled/0": 4000, "train/unlabeled/1": 5012, "test/0": 1000, "test/1": 1000},
        ),
        (
            "BrainTumor",
            {"train/0": 1000, "train/unlabeled/0": 400, "train/unlabeled/1": 600, "test/0": 600, "test/1": 600},
        ),
    ],
)
def test_shipped_split_lists_are_the_papers(name, counts):
    spec = split_list(name)
    got = {
        "train/0": len(spec["train"]["0"]),
        "test/0": len(spec["test"]["0"]),
        "test/1": len(spec["test"]["1"]),
        **{f"train/unlabeled/{k}": len(v) for k, v in spec["train"]["unlabeled"].items()},
    }
    assert got == counts
    names = [
        n
        for g in (spec["train"]["0"], spec["test"]["0"], spec["test"]["1"], *spec["train"]["unlabeled"].values())
        for n in g
    ]
    assert len(names) == len(set(names))  # no overlaps
    sums = SHARED_SPLITS / "SHA256SUMS"
    if sums.is_file():  # the package data is the steering repo's file, byte for byte
        import scrd

        expected = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
        data = (Path(scrd.__file__).parent / "data" / "prepare" / "splits" / name / "data.json").read_bytes()
        assert hashlib.sha256(data).hexdigest() == expected[f"{name}/data.json"]


def test_brain_tumor_names_map_to_kaggle_folders():
    spec = split_list("BrainTumor")
    for group, names in {
        "0": spec["train"]["0"] + spec["test"]["0"] + spec["train"]["unlabeled"]["0"],
        "1": spec["test"]["1"] + spec["train"]["unlabeled"]["1"],
    }.items():
        folders = {kaggle_location(n) for n in names}
        assert None not in folders
        if group == "0":
            assert {f.split("/")[1] for f in folders} == {"notumor"}
        else:
            assert {f.split("/")[1] for f in folders} == {"glioma", "meningioma"}  # no pituitary
    assert kaggle_location("Te-glTr_0009.jpg") == "Testing/glioma"
    assert kaggle_location("Tr-noTr_0003.jpg") == "Training/notumor"
    assert kaggle_location("Tr-pi_0001.jpg") == "Training/pituitary"
    assert kaggle_location("image(1).jpg") is None


# ---------------------------------------------------------------------------------- RSNA


def _rsna_raw(tmp_path: Path, spec: dict) -> tuple[Path, dict[str, list[str]]]:
    pytest.importorskip("pydicom")
    from dicom_writer import write_dicom

    raw = tmp_path / "rsna" / "stage_2_train_images"
    chosen = {
        "train/0": spec["train"]["0"][:2],
        "test/0": spec["test"]["0"][:1],
        "test/1": spec["test"]["1"][:1],
        "train/unlabeled/0": spec["train"]["unlabeled"]["0"][:1],
    }
    rng = np.random.default_rng(0)
    for group, names in chosen.items():
        for name in names:
            pid = name[: -len(".png")]
            if group == "test/1":  # a 16-bit MONOCHROME1 file: inverted, then min-max to 8 bits
                arr = np.full((32, 32), 300, np.uint16)
                arr[:, 16:] = 100
                write_dicom(raw / f"{pid}.dcm", arr, photometric="MONOCHROME1", bits_stored=12)
            else:  # RSNA's own files: 8-bit MONOCHROME2
                write_dicom(raw / f"{pid}.dcm", rng.integers(0, 256, (32, 32)).astype(np.uint8))
    write_dicom(raw / "00000000-aaaa-4bbb-8ccc-123456789abc.dcm", np.zeros((32, 32), np.uint8))
    return raw, chosen


def test_prepare_rsna(tmp_path, capsys):
    spec = split_list("RSNA")
    raw, chosen = _rsna_raw(tmp_path, spec)
    out = tmp_path / "RSNA"
    assert main(["data", "prepare", "rsna", "--raw", str(raw), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "differs from the paper" in printed and "WARNING: incomplete" in printed

    data = json.loads((out / "data.json").read_text())
    assert data == {"train": {"0": chosen["train/0"]}, "test": {"0": chosen["test/0"], "1": chosen["test/1"]}}
    report = _report(out)
    assert report["groups"]["train/0"] == {"listed": 3851, "prepared": 2, "missing": 3849, "paper": 3851}
    assert report["groups"]["test/1"] == {"listed": 1000, "prepared": 1, "missing": 999, "paper": 1000}
    assert report["missing_total"] == 3849 + 999 + 999 and not report["complete"]
    assert report["missing"]["test/0"] == spec["test"]["0"][1:]
    assert report["extra"] == ["00000000-aaaa-4bbb-8ccc-123456789abc.dcm"]  # unlabeled is not extra

    samples = load_samples(out, "test")
    assert len(samples) == 2
    for s in samples:
        with Image.open(s.path) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "L", (512, 512))
    # 8-bit MONOCHROME2 is only resized (Pillow bilinear, as DDAD does).
    import pydicom

    pid = chosen["train/0"][0][:-4]
    source = pydicom.dcmread(raw / f"{pid}.dcm").pixel_array
    expected = np.asarray(Image.fromarray(source).resize((512, 512), Image.BILINEAR))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "images" / f"{pid}.png")), expected)
    # MONOCHROME1: stored 300 (left) becomes black, 100 (right) white.
    png = read_image(out / "images" / chosen["test/1"][0])[..., 0]
    assert png[:, :200].max() == 0 and png[:, 312:].min() == 1

    assert main(["data", "prepare", "rsna", "--raw", str(raw), "--out", str(out), "--strict"]) == 2
    assert main(["data", "prepare", "rsna", "--raw", str(raw), "--out", str(tmp_path / "U"), "--with-unlabeled"]) == 0
    assert _report(tmp_path / "U")["groups"]["train/unlabeled/0"]["prepared"] == 1


def test_prepare_rsna_errors(tmp_path):
    with pytest.raises(PrepareError, match="no .dcm files"):
        prepare("rsna", tmp_path, tmp_path / "out")
    with pytest.raises(PrepareError, match="no such folder"):
        prepare("rsna", tmp_path / "nope", tmp_path / "out")


# --------------------------------------------------------------------------- Brain Tumor


def _first(names: list[str], pattern: str) -> str:
    return next(n for n in names if re.match(pattern, n))


def test_prepare_brain_tumor(tmp_path, capsys):
    spec = split_list("BrainTumor")
    chosen = {
        "train/0": [_first(spec["train"]["0"], r"Tr-no_"), _first(spec["train"]["0"], r"Te-noTr_")],
        "test/0": [_first(spec["test"]["0"], r"Te-no_")],
        "test/1": [_first(spec["test"]["1"], r"Te-glTr_"), _first(spec["test"]["1"], r"Tr-me_")],
    }
    raw = tmp_path / "archive"
    for value, name in enumerate(n for names in chosen.values() for n in names):
        _jpg(raw / kaggle_location(name) / name, 40 * value)
    _jpg(raw / "Training" / "pituitary" / "Tr-pi_0001.jpg")
    out = tmp_path / "BrainTumor"
    assert main(["data", "prepare", "brain-tumor", "--raw", str(raw), "--out", str(out)]) == 0
    assert "Tr-pi_0001.jpg" in capsys.readouterr().out

    data = json.loads((out / "data.json").read_text())
    assert data == {
        "train": {"0": [n for n in spec["train"]["0"] if n in chosen["train/0"]]},
        "test": {"0": chosen["test/0"], "1": [n for n in spec["test"]["1"] if n in chosen["test/1"]]},
    }
    report = _report(out)
    assert {g: r["prepared"] for g, r in report["groups"].items()} == {"train/0": 2, "test/0": 1, "test/1": 2}
    assert report["groups"]["test/0"]["paper"] == 600 and report["missing_total"] == 998 + 599 + 598
    assert report["extra"] == ["Tr-pi_0001.jpg"]
    for names in chosen.values():
        for name in names:  # copied byte for byte
            assert (out / "images" / name).read_bytes() == (raw / kaggle_location(name) / name).read_bytes()
    assert len(load_samples(out, "train")) == 2

    # A file in a folder its name does not imply is used, and said so.
    moved = chosen["test/0"][0]
    (raw / kaggle_location(moved) / moved).rename(raw / "Training" / "pituitary" / moved)
    report = prepare("brain-tumor", raw, tmp_path / "B2")
    assert any("not in the Kaggle folder" in n and moved in n for n in report.notes)


def test_prepare_brain_tumor_duplicate_names(tmp_path):
    _jpg(tmp_path / "a" / "Training" / "notumor" / "Tr-no_0010.jpg")
    _jpg(tmp_path / "b" / "Training" / "notumor" / "Tr-no_0010.jpg")
    with pytest.raises(PrepareError, match="more than once"):
        prepare("brain-tumor", tmp_path, tmp_path / "out")


# ------------------------------------------------------------------------------ ISIC 2018

CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")


def _isic_set(raw: Path, name: str, rows: dict[str, str], images: list[str]) -> None:
    for image in images:
        _jpg(raw / f"ISIC2018_Task3_{name}_Input" / f"{image}.jpg")
    (raw / f"ISIC2018_Task3_{name}_Input" / "ATTRIBUTION.txt").write_text("not an image")
    folder = raw / f"ISIC2018_Task3_{name}_GroundTruth"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image," + ",".join(CLASSES)]
    lines += [image + "," + ",".join("1.0" if c == cls else "0.0" for c in CLASSES) for image, cls in rows.items()]
    (folder / f"ISIC2018_Task3_{name}_GroundTruth.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def isic_raw(tmp_path) -> Path:
    raw = tmp_path / "isic"
    _isic_set(
        raw,
        "Training",
        {
            "ISIC_0024306": "NV",
            "ISIC_0024307": "NV",
            "ISIC_0024308": "MEL",
            "ISIC_0024309": "NV",
        },  # ISIC_0024309.jpg is missing
        ["ISIC_0024306", "ISIC_0024307", "ISIC_0024308", "ISIC_0099999"],
    )  # 0099999: extra
    _isic_set(
        raw,
        "Validation",
        {"ISIC_0034321": "NV", "ISIC_0034322": "BKL", "ISIC_0034323": "NV"},
        ["ISIC_0034321", "ISIC_0034322", "ISIC_0034323"],
    )
    _isic_set(
        raw,
        "Test",
        {"ISIC_0034524": "NV", "ISIC_0034525": "BCC", "ISIC_0034526": "VASC"},
        ["ISIC_0034524", "ISIC_0034525"],
    )  # ISIC_0034526.jpg is missing
    return raw


def test_prepare_isic2018_test_protocol(isic_raw, tmp_path, capsys):
    out = tmp_path / "ISIC"
    assert main(["data", "prepare", "isic2018", "--raw", str(isic_raw), "--out", str(out)]) == 0
    assert "isic2018 (test protocol)" in capsys.readouterr().out
    data = json.loads((out / "data.json").read_text())
    assert data == {
        "train": {"0": ["ISIC_0024306.jpg", "ISIC_0024307.jpg"]},
        "test": {"0": ["ISIC_0034524.jpg"], "1": ["ISIC_0034525.jpg"]},
    }
    report = _report(out)
    assert report["missing"] == {"train/0": ["ISIC_0024309.jpg"], "test/0": [], "test/1": ["ISIC_0034526.jpg"]}
    assert report["groups"]["train/0"] == {"listed": 3, "prepared": 2, "missing": 1, "paper": 6705}
    assert report["groups"]["test/1"]["paper"] == 603 and not report["matches_paper"]
    assert report["extra"] == ["ISIC_0099999.jpg"]
    assert any("1 Training images of other classes" in n for n in report["notes"])
    assert [s.label for s in load_samples(out, "test")] == [0, 1]


def test_prepare_isic2018_validation_protocol(isic_raw, tmp_path):
    out = tmp_path / "ISICval"
    assert (
        main(["data", "prepare", "isic2018", "--raw", str(isic_raw), "--out", str(out), "--protocol", "validation"])
        == 0
    )
    data = json.loads((out / "data.json").read_text())
    assert data["test"] == {"0": ["ISIC_0034321.jpg", "ISIC_0034323.jpg"], "1": ["ISIC_0034322.jpg"]}
    report = _report(out)
    assert report["protocol"] == "validation"
    assert {g: r["paper"] for g, r in report["groups"].items()} == {"train/0": 6705, "test/0": 123, "test/1": 70}


def test_prepare_isic2018_bad_inputs(isic_raw, tmp_path):
    csv_path = isic_raw / "ISIC2018_Task3_Test_GroundTruth" / "ISIC2018_Task3_Test_GroundTruth.csv"
    csv_path.write_text(csv_path.read_text() + "ISIC_0034527,1.0,1.0,0.0,0.0,0.0,0.0,0.0\n")
    with pytest.raises(PrepareError, match="exactly one class"):
        prepare_isic2018(isic_raw, tmp_path / "o")
    with pytest.raises(PrepareError, match="Validation_GroundTruth.csv not found"):
        prepare_isic2018(_only_training(isic_raw, tmp_path), tmp_path / "o2", protocol="validation")


def _only_training(raw: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "only"
    for name in ("ISIC2018_Task3_Training_Input", "ISIC2018_Task3_Training_GroundTruth"):
        shutil.copytree(raw / name, target / name)
    return target
