"""`scrd benchmark` runs each configuration in a child process and reports its figures (tiny
settings here: what is checked is that the measurement works, not how fast this machine is)."""

from __future__ import annotations

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
