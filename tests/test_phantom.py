"""The synthetic phantom dataset used by the demo and tests (scrd.data.phantom)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scrd.data import load_samples, make_phantom_dataset, phantom_slice, read_image, render_phantom

SIZE = 96


def test_slice_is_deterministic_for_a_seed():
    a = phantom_slice(np.random.default_rng(7), SIZE, lesion=True)
    b = phantom_slice(np.random.default_rng(7), SIZE, lesion=True)
    c = phantom_slice(np.random.default_rng(8), SIZE, lesion=True)
    assert a.shape == (SIZE, SIZE) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.01


def test_slices_look_like_a_head():
    img = phantom_slice(np.random.default_rng(0), SIZE, lesion=False)
    centre = img[SIZE // 2 - 8 : SIZE // 2 + 8, SIZE // 2 - 8 : SIZE // 2 + 8].mean()
    corner = img[:6, :6].mean()
    assert corner < 0.1 < centre  # dark background, tissue in the middle
    assert img.max() > 0.7  # bright skull ring
    # Normal slices vary a little between seeds but stay similar overall.
    others = [phantom_slice(np.random.default_rng(s), SIZE, lesion=False) for s in range(1, 4)]
    diffs = [np.abs(img - o).mean() for o in others]
    assert all(0.005 < d < 0.2 for d in diffs)


@pytest.mark.parametrize("seed", range(6))
def test_lesion_changes_only_the_brain(seed):
    normal = render_phantom(np.random.default_rng(seed), SIZE, lesion=False)
    abnormal = render_phantom(np.random.default_rng(seed), SIZE, lesion=True)
    diff = np.abs(abnormal.image - normal.image)
    assert abnormal.lesion.any() and not normal.lesion.any()
    assert not (abnormal.lesion & ~abnormal.brain).any()
    assert diff[abnormal.lesion].mean() > 0.15  # a visible lesion
    assert diff[~abnormal.brain].max() < 1e-6  # skull and background untouched
    radius = np.sqrt(abnormal.lesion.sum() / np.pi) / SIZE
    assert 0.015 < radius < 0.2


def test_lesion_sizes_and_polarity_vary():
    radii, signs = [], []
    for seed in range(30):
        normal = render_phantom(np.random.default_rng(seed), SIZE, lesion=False)
        abnormal = render_phantom(np.random.default_rng(seed), SIZE, lesion=True)
        radii.append(np.sqrt(abnormal.lesion.sum() / np.pi) / SIZE)
        signs.append(np.sign((abnormal.image - normal.image)[abnormal.lesion].mean()))
    assert min(radii) < 0.06 and max(radii) > 0.1
    assert {-1.0, 1.0} <= set(signs)


def test_dataset_files_counts_and_determinism(tmp_path):
    root = make_phantom_dataset(tmp_path / "a", n_train=6, n_test_normal=3, n_test_abnormal=4, size=64, seed=3)
    spec = json.loads((root / "data.json").read_text())
    assert [len(spec["train"]["0"]), len(spec["test"]["0"]), len(spec["test"]["1"])] == [6, 3, 4]
    train, test = load_samples(root, "train"), load_samples(root, "test")
    assert len(train) == 6 and [s.label for s in test].count(1) == 4
    img = read_image(train[0].path)
    assert img.shape == (64, 64, 1)  # 8-bit grayscale PNG
    np.testing.assert_array_equal(img * 255, np.round(img * 255))

    again = make_phantom_dataset(tmp_path / "b", n_train=6, n_test_normal=3, n_test_abnormal=4, size=64, seed=3)
    other = make_phantom_dataset(tmp_path / "c", n_train=6, n_test_normal=3, n_test_abnormal=4, size=64, seed=4)
    for name in spec["train"]["0"] + spec["test"]["1"]:
        a = (root / "images" / name).read_bytes()
        assert a == (again / "images" / name).read_bytes()
        assert a != (other / "images" / name).read_bytes()


def test_images_do_not_depend_on_other_counts(tmp_path):
    small = make_phantom_dataset(tmp_path / "s", n_train=2, n_test_normal=1, n_test_abnormal=1, size=48)
    big = make_phantom_dataset(tmp_path / "b", n_train=5, n_test_normal=1, n_test_abnormal=1, size=48)
    name = "test_abnormal_0000.png"
    assert (small / "images" / name).read_bytes() == (big / "images" / name).read_bytes()
