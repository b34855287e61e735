"""Decisions do not depend on the precision: a model scores in fp32 unless bf16 is asked for, its
threshold records the precision it was calibrated in, and scoring in another one says so."""

from __future__ import annotations

import torch

from scrd.detector import Detector
from scrd.evaluation.calibrate import calibrate
from scrd.inference.predict import predict
from scrd.runs.runtime import Runtime


def test_a_model_scores_in_fp32_by_default_and_its_threshold_says_so(tiny_run, copy_run, phantom_data, tmp_path):
    run = copy_run(tiny_run)
    detector = Detector.load(run, "cpu")  # precision auto
    assert detector.precision == "fp32"
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(detector.score(images).scores, Detector.load(run, "cpu", "fp32").score(images).scores)
    info = calibrate(run, target_specificity=0.75)
    assert info["precision"] == "fp32"
    assert Detector.load(run, "cpu").precision_warning() is None


def test_scoring_in_another_precision_than_the_calibration_warns(tiny_run, copy_run, phantom_data, tmp_path, recwarn):
    run = copy_run(tiny_run)
    calibrate(run, target_specificity=0.75)
    bf16 = Detector.load(run, "cpu", precision="bf16")
    assert "calibrated on fp32 scores" in bf16.precision_warning()
    files = [str(p) for p in sorted((phantom_data / "images").glob("test_*.png"))[:2]]
    predict(run, files, tmp_path / "p", Runtime(device="cpu", precision="bf16"), heatmaps=False, panels=False)
    assert any("calibrated on fp32 scores" in str(w.message) for w in recwarn.list)
