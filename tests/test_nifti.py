"""NIfTI volumes: RAS+ slicing, robust volume range, the tissue rule, ids, errors, train/predict."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from helpers import TINY_FLAGS  # noqa: E402

from scrd import cli  # noqa: E402
from scrd.config import DataConfig  # noqa: E402
from scrd.data import ImageDataset, ImageReadError, collect_samples, list_frames, load_samples, read_image  # noqa: E402


def _volume() -> np.ndarray:
    """[x=10, y=12, z=8]: z 0-1 empty, z 2-6 a block of tissue (brighter upwards), z 7 a speck."""
    vol = np.zeros((10, 12, 8), np.float32)
    for z in range(2, 7):
        vol[2:8, 3:10, z] = 100.0 * z
    vol[5, 5, 7] = 50.0
    return vol


def _save(path, vol, affine=None):
    nib.save(nib.Nifti1Image(vol, np.eye(4) if affine is None else affine), str(path))
    return path


def test_slices_count_ids_and_intensities(tmp_path):
    vol = _volume()
    path = _save(tmp_path / "brain.nii.gz", vol)
    assert list_frames(path) == ("slice", [2, 3, 4, 5, 6])  # empty and speck slices skipped
    samples = collect_samples([str(path)])
    assert [s.id for s in samples] == [f"{path}#slice={k}" for k in range(2, 7)]
    low, high = np.percentile(vol, [0.5, 99.5])
    for s in samples:
        img = read_image(s.path, s.frame)
        assert img.shape == (12, 10, 1) and img.dtype == np.float32  # rows = y, columns = x
        expected = np.clip((100.0 * s.frame - low) / (high - low), 0, 1)
        assert img.max() == pytest.approx(expected, abs=1e-6)
        assert img[0, 0, 0] == pytest.approx(np.clip(-low / (high - low), 0, 1))
    every = DataConfig(nifti_min_tissue=0.0)
    assert list_frames(path, every)[1] == list(range(8))
    assert len(list_frames(path, DataConfig(nifti_axis=0))[1]) == 6  # x 2..7 hold tissue


def test_orientation_on_disk_does_not_change_slices(tmp_path):
    vol = _volume()
    ref = _save(tmp_path / "ras.nii", vol)
    flipped = np.diag([-1.0, 1.0, -1.0, 1.0])  # x and z stored backwards
    flip = _save(tmp_path / "flip.nii", vol[::-1, :, ::-1].copy(), flipped)
    permuted = np.zeros((4, 4))
    permuted[0, 2] = permuted[1, 1] = permuted[2, 0] = permuted[3, 3] = 1  # stored as [z, y, x]
    perm = _save(tmp_path / "perm.nii.gz", vol.transpose(2, 1, 0).copy(), permuted)
    for other in (flip, perm):
        assert list_frames(other) == list_frames(ref)
        for k in list_frames(ref)[1]:
            np.testing.assert_array_equal(read_image(other, k), read_image(ref, k))


def test_display_orientation_anterior_up(tmp_path):
    vol = np.zeros((4, 6, 1), np.float32)
    vol[:, 5, 0] = 1.0  # the most anterior row (largest y)
    vol[0, :, 0] = 0.5  # the patient's left-most column (smallest x in RAS+)
    img = read_image(_save(tmp_path / "a.nii", vol), 0, DataConfig(nifti_min_tissue=0.0))[..., 0]
    assert (img[0, 1:] == 1).all()  # anterior at the top
    assert (img[1:, 0] == 0.5).all()  # patient's left on the image's left (neurological view)


def test_scaling_and_per_slice_mappings(tmp_path):
    raw = np.zeros((4, 4, 3), np.int16)
    raw[1:3, 1:3, :] = [10, 20, 30]
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(2.0, -5.0)
    path = tmp_path / "scaled.nii"
    nib.save(img, str(path))
    window = DataConfig(intensity="fixed", window=(-5.0, 55.0), nifti_min_tissue=0.0)
    got = [read_image(path, k, window).max() for k in range(3)]
    np.testing.assert_allclose(got, [(2 * v - 5 + 5) / 60 for v in (10, 20, 30)], atol=1e-6)
    minmax = DataConfig(intensity="minmax", nifti_min_tissue=0.0)
    assert all(read_image(path, k, minmax).max() == 1 for k in range(3))


def test_training_folder_of_volumes_and_errors(tmp_path):
    root = tmp_path / "data"
    (root / "train" / "normal").mkdir(parents=True)
    _save(root / "train" / "normal" / "a.nii.gz", _volume())
    _save(root / "train" / "normal" / "b.nii", _volume())
    samples = load_samples(root, "train")
    assert [s.id for s in samples] == [
        f"train/normal/{n}#slice={k}" for n in ("a.nii.gz", "b.nii") for k in range(2, 7)
    ]
    item = ImageDataset(samples, size=16)[0]
    assert item["image"].shape == (3, 16, 16) and item["path"].endswith("a.nii.gz#slice=2")
    _save(root / "train" / "normal" / "empty.nii", np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ImageReadError, match=r"empty\.nii: no slice .*data\.nifti_min_tissue"):
        load_samples(root, "train")
    with pytest.raises(ImageReadError, match="slices"):
        read_image(root / "train" / "normal" / "b.nii")  # a volume needs a slice index
    _save(tmp_path / "4d.nii", np.zeros((4, 4, 4, 2), np.float32))
    with pytest.raises(ImageReadError, match="4-D NIfTI"):
        read_image(tmp_path / "4d.nii", 0)


def test_missing_nibabel_names_file_and_extra(tmp_path, monkeypatch):
    path = _save(tmp_path / "nonib.nii", _volume())
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(ImageReadError, match=r"nonib\.nii: reading NIfTI needs nibabel.*scrd\[nifti\]"):
        list_frames(path)
    with pytest.raises(ImageReadError, match=r"nonib\.nii: reading NIfTI needs nibabel"):
        collect_samples([str(path)])


def test_train_and_predict_on_a_folder_of_volumes(tmp_path):
    root = tmp_path / "data"
    for i in range(2):
        (root / "train" / "normal").mkdir(parents=True, exist_ok=True)
        _save(root / "train" / "normal" / f"v{i}.nii.gz", _volume() * (1 + 0.1 * i))
    run = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "--data",
                str(root),
                "--out",
                str(run),
                *TINY_FLAGS,
                "--iterations",
                "2",
                "--set",
                "data.nifti_axis=2",
            ]
        )
        == 0
    )
    out = tmp_path / "pred"
    assert (
        cli.main(
            [
                "predict",
                str(root / "train" / "normal" / "v0.nii.gz"),
                "--model",
                str(run),
                "--out",
                str(out),
                "--no-heatmaps",
            ]
        )
        == 0
    )
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"].rsplit("#", 1)[1] for r in rows] == [f"slice={k}" for k in range(2, 7)]
    assert all(np.isfinite(float(r["score"])) for r in rows)
