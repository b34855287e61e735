"""Heat maps that show where: a colour scale anchored on normal images, the overlay that leaves normal
places unpainted, and on phantoms with lesion masks, the hottest region on the lesion."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import needs_mobilenet_weights

from scrd.config import preset
from scrd.data.layouts import load_samples
from scrd.data.phantom import make_phantom_dataset
from scrd.detector import Detector
from scrd.evaluation.evaluate import evaluate
from scrd.evaluation.localisation import localisation, mask_path
from scrd.filenames import METRICS_FILE, REPORT_FILE
from scrd.reporting.colour_scale import colour_scale
from scrd.reporting.plots import overlay_array
from scrd.training.train import train


def test_the_colour_scale_runs_from_the_normal_median_to_the_threshold():
    amap = np.linspace(0, 10, 16).reshape(4, 4)
    calibrated = colour_scale([1.0, 4.0], 6.0, amap)
    assert (calibrated.low, calibrated.high) == (1.0, 6.0) and "threshold" in calibrated.label
    uncalibrated = colour_scale([1.0, 4.0], None, amap)
    assert (uncalibrated.low, uncalibrated.high) == (1.0, 4.0) and "99.9" in uncalibrated.label
    old = colour_scale(None, None, amap)  # a model saved before the range was recorded
    assert (old.low, old.high) == (0.0, 10.0) and old.note


def test_the_overlay_leaves_what_is_at_or_below_normal_unpainted():
    image = np.full((4, 4, 3), 0.5, np.float32)
    amap = np.array([[0.0] * 4, [1.0] * 4, [2.0] * 4, [3.0] * 4])
    out = overlay_array(image, amap, vmin=1.0, vmax=3.0)
    assert (out[:2] == 127).all()  # at or below the median normal value: the image as it is
    assert not (out[3] == 127).all() and out[3, 0, 0] > out[3, 0, 2]  # the threshold's level: red


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    return make_phantom_dataset(
        tmp_path_factory.mktemp("lesions"), n_train=16, n_test_normal=6, n_test_abnormal=8, size=128, seed=1
    )


def test_phantoms_come_with_their_lesion_masks(lesions):
    samples = load_samples(lesions, "test")
    assert all(mask_path(s.path).is_file() == (s.label == 1) for s in samples)


@needs_mobilenet_weights
def test_the_hottest_region_of_a_phantom_falls_on_its_lesion(lesions, tmp_path):
    config = preset("knn").with_overrides(
        {"model.arch": "mobilenet_v2", "model.image_size": 128, "noise.max_size": 24, "train.holdout_fraction": 0.25}
    )
    train(config, lesions, tmp_path / "run", progress=False)
    detector = Detector.load(tmp_path / "run", "cpu", "fp32")
    abnormal = [s for s in load_samples(lesions, "test") if s.label == 1]
    maps = detector.score(torch.stack([detector.load_image(s.path) for s in abnormal])).maps
    on_lesion = 0
    for amap, sample in zip(maps, abnormal):
        from PIL import Image

        mask = np.asarray(Image.open(mask_path(sample.path))) > 0
        on_lesion += bool(mask.flatten()[int(amap.flatten().argmax())])
    assert on_lesion >= 7  # of 8
    found = localisation(detector, load_samples(lesions, "test"))
    assert found["top1_in_lesion"] > 0.6 and found["pixel_auroc"] > 0.9
    evaluate(tmp_path / "run", lesions, tmp_path / "eval")
    stored = json.loads((tmp_path / "eval" / METRICS_FILE).read_text())["localisation"]
    assert stored["images_with_masks"] == 8 and stored["top1_in_lesion"] > 0.6  # (evaluate runs in its own precision)
    assert "Where the heat maps point" in (tmp_path / "eval" / REPORT_FILE).read_text()
