"""`scrd benchmark` runs each configuration in a child process and reports its figures (tiny
settings here: what is checked is that the measurement works, not how fast this machine is)."""

from __future__ import annotations

import pytest
import torch
from helpers import load_benchmark

from scrd.lab.benchmark import _child, print_table

TINY = dict(arch="mobilenet_v2", size=64, batch=2, steps=1, device="cpu", weights="none")


def test_train_and_infer_children_report_flops_speed_and_memory(capsys):
    cached = _child(dict(kind="train", precision="fp32", channels_last=True, cache=True, tune_malloc=True, **TINY))
    plain = _child(dict(kind="train", precision="fp32", channels_last=False, cache=False, **TINY))
    infer = _child(dict(kind="infer", precision="bf16", channels_last=True, **TINY))
    for row in (cached, plain, infer):
        assert row["images_per_s"] > 0 and row["peak_memory_gb"] > 0.1
    # The cache removes one of the step's two teacher passes; inference is one forward pass.
    assert plain["flops"] > cached["flops"] > infer["flops"] > 0
    peaks = {p: {"matmul_gflops": 100.0, "conv_gflops": 100.0} for p in ("fp32", "bf16")}
    rows = [
        {**plain, "label": "reference", "reference": True},
        {**cached, "label": "cached"},
        {**infer, "label": "infer", "reference": True},
    ]
    print_table("mobilenet_v2", rows, peaks, dict(TINY))
    printed = capsys.readouterr().out
    assert "cached" in printed and "1.00" in printed  # the reference row's ratio to itself


def test_deploy_benchmark_measures_every_path_with_the_bank_size_asked_for(capsys):
    from scrd.config import preset
    from scrd.lab.deploy_benchmark import run_deploy_benchmark

    small = dict(arch="mobilenet_v2", image_size=64, images=4, batch_size=2, train_images=10, repeats=1, onnx=False)
    figures = run_deploy_benchmark(**small, bank_fraction=0.05)
    # mobilenet_v2's scale-2 grid at 64 px is 8 x 8 patches; 5 % of 10 images' patches, not the preset's share
    assert preset("denoising_knn").knn.fraction != 0.05
    assert figures["bank"]["rows"] == round(10 * 64 * 0.05)
    for path in ("reference", "predict", "predict_bf16", "student", "bank_search", "default_in_memory"):
        assert figures[path]["images_per_s"] > 0
    assert figures["reference"]["x_reference"] == 1.0
    assert "bank search / student pass" in capsys.readouterr().out


def test_deploy_benchmark_with_the_ivf_search_times_the_exact_search_beside_it(capsys):
    from scrd.lab.deploy_benchmark import run_deploy_benchmark

    small = dict(arch="mobilenet_v2", image_size=64, images=4, batch_size=2, train_images=40, repeats=1, onnx=False)
    figures = run_deploy_benchmark(**small, bank_search="ivf")
    assert figures["bank_search"]["what"].startswith("the memory-bank search alone (ivf)")
    assert figures["exact_bank_search"]["images_per_s"] > 0 and 0 < figures["recall_at_1"] <= 1
    assert "recall@1" in capsys.readouterr().out


def _cuda_check():
    return load_benchmark("cuda_check")


def test_the_prepared_gpu_check_runs_its_code_path_on_the_cpu():
    """benchmarks/cuda_check.py, what a lent GPU runs: on the CPU both sides are one device, so the
    scores agree exactly with either search, and every rate is measured."""
    found = _cuda_check().check("resnet18", 64, torch.device("cpu"))
    for kind in ("exact", "ivf"):
        assert found[f"{kind}_score_rel_diff"] == 0.0 and found[f"{kind}_decisions_flipped"] == 0
    assert all(found[f"{k}_images_per_s"] > 0 for k in ("exact", "ivf", "student"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_the_default_detector_scores_on_cuda_as_on_the_cpu():
    """The exact search; the ivf index is rebuilt on each device, whose k-means may round its lists
    apart, so its CUDA scores are the script's to report, not equal by construction."""
    torch.backends.cudnn.allow_tf32 = False
    found = _cuda_check().check("resnet18", 64, torch.device("cuda"))
    assert found["exact_score_rel_diff"] <= 1e-4 and found["exact_decisions_flipped"] == 0
