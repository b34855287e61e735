"""``scrd benchmark``: training and inference throughput of each speed option, in one run.

For every architecture it measures, each in a fresh process (``benchmark_child``):

* the training step (official preset, batch 16 by default) for precision fp32 / bf16 × channels_last
  off / on × feature cache off / on, with the tuned allocator; and the *reference*: the strict
  configuration scrd had before its fast path (fp32, contiguous tensors, two teacher passes,
  the system allocator; commit 81bc44b), also with tcmalloc preloaded when it is installed;
* inference (``Detector.score``: network, maps, smoothing, score) at batch 1 and 16;
* the FLOPs of a step (torch's flop counter) and so the achieved GFLOP/s, next to this machine's
  measured matmul and 3×3-convolution rates in the same precision;
* the peak memory of the process (CPU: peak RSS; CUDA: peak allocated).

Ratios are to the reference measured in the same run; absolute figures drift between runs.
"""

from __future__ import annotations

import ctypes.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

TRAIN_OPTIONS = [
    dict(precision=p, channels_last=cl, cache=c)
    for p, cl, c in itertools.product(("fp32", "bf16"), (False, True), (False, True))
]


def tcmalloc_path() -> str | None:
    """A tcmalloc shared library on this machine (Debian: libtcmalloc-minimal4), or None."""
    for name in ("tcmalloc_minimal", "tcmalloc"):
        found = ctypes.util.find_library(name)
        if found:
            for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/local/lib"):
                if Path(folder, found).is_file():
                    return str(Path(folder, found))
            return found
    return None


def _child(spec: dict[str, Any], preload: str | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    if preload:
        env["LD_PRELOAD"] = preload
    result = subprocess.run(
        [sys.executable, "-m", "scrd.lab.benchmark_child", json.dumps(spec)], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({spec}):\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_arch(arch: str, common: dict[str, Any], options: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every training and inference row of one architecture (the reference first)."""
    rows = []
    reference = dict(kind="train", arch=arch, precision="fp32", channels_last=False, cache=False, **common)
    rows.append({**_child(reference), "label": "reference (strict, system malloc)", "reference": True})
    tcmalloc = tcmalloc_path()
    if tcmalloc:
        rows.append({**_child(reference, preload=tcmalloc), "label": "reference (strict, tcmalloc)"})
    for option in options:
        spec = dict(kind="train", arch=arch, tune_malloc=True, **option, **common)
        label = (
            f"{option['precision']}, {'NHWC' if option['channels_last'] else 'NCHW'}, "
            f"{'feature cache' if option['cache'] else 'no cache'}"
        )
        rows.append({**_child(spec), "label": label})
    for batch in (1, common["batch"]):
        infer = {**common, "batch": batch}
        rows.append(
            {
                **_child(dict(kind="infer", arch=arch, precision="fp32", channels_last=False, **infer)),
                "label": f"reference (strict, system malloc), batch {batch}",
                "reference": batch == 1,
            }
        )
        for precision, cl in itertools.product(("fp32", "bf16"), (False, True)):
            spec = dict(kind="infer", arch=arch, precision=precision, channels_last=cl, tune_malloc=True, **infer)
            rows.append({**_child(spec), "label": f"{precision}, {'NHWC' if cl else 'NCHW'}, batch {batch}"})
    return rows


def run_benchmark(
    archs: Sequence[str],
    image_size: int = 256,
    batch_size: int = 16,
    steps: int = 3,
    device: str = "auto",
    weights: str = "none",
    quick: bool = False,
    json_out: str | Path | None = None,
) -> dict[str, Any]:
    """Measure, print the tables and return (and optionally save) every figure."""
    common = dict(size=image_size, batch=batch_size, steps=steps, device=device, weights=weights)
    options = [o for o in TRAIN_OPTIONS if not quick or o["precision"] == "fp32" or (o["channels_last"] and o["cache"])]
    peaks = {
        p: _child(dict(kind="peak", precision=p, steps=steps, device=device, tune_malloc=True))
        for p in ("fp32", "bf16")
    }
    report: dict[str, Any] = {"settings": common, "peaks": peaks, "archs": {}}
    print(
        "machine peak (measured): "
        + "; ".join(
            f"{p} matmul {v['matmul_gflops']:.0f} GFLOP/s, 3x3 conv {v['conv_gflops']:.0f} GFLOP/s"
            for p, v in peaks.items()
        )
    )
    for arch in archs:
        rows = measure_arch(arch, common, options)
        report["archs"][arch] = rows
        print_table(arch, rows, peaks, common)
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=1))
    return report


def print_table(arch: str, rows: list[dict[str, Any]], peaks: dict[str, Any], common: dict[str, Any]) -> None:
    train = [r for r in rows if r["kind"] == "train"]
    infer = [r for r in rows if r["kind"] == "infer"]
    ref_train = next(r for r in train if r.get("reference"))["images_per_s"]
    ref_infer = next(r for r in infer if r.get("reference"))["images_per_s"]
    print(f"\n{arch}: training step, batch {common['batch']}, {common['size']} px (median of {common['steps']})")
    print(
        f"  {'configuration':<46}{'img/s':>8}{'x ref':>7}{'GFLOP/step':>11}{'GFLOP/s':>9}{'% conv pk':>10}"
        f"{'% mm pk':>9}{'peak GB':>9}"
    )
    for r in train:
        _print_row(r, ref_train, peaks)
    print(f"{arch}: inference (Detector.score: network + maps + smoothing + score), {common['size']} px")
    print(
        f"  {'configuration':<46}{'img/s':>8}{'x ref':>7}{'GFLOP/img':>11}{'GFLOP/s':>9}{'% conv pk':>10}"
        f"{'% mm pk':>9}{'peak GB':>9}"
    )
    for r in infer:
        _print_row(r, ref_infer, peaks, flops_per=r["batch"])


def _print_row(r: dict[str, Any], reference: float, peaks: dict[str, Any], flops_per: int = 1) -> None:
    gflops_shown = r["flops"] / 1e9 / flops_per
    achieved = r["flops"] / 1e9 * r["images_per_s"] / r["batch"]
    peak = peaks[r["precision"]]
    print(
        f"  {r['label']:<46}{r['images_per_s']:>8.2f}{r['images_per_s'] / reference:>7.2f}{gflops_shown:>11.1f}"
        f"{achieved:>9.0f}{achieved / peak['conv_gflops']:>10.0%}{achieved / peak['matmul_gflops']:>9.0%}"
        f"{r['peak_memory_gb']:>9.2f}"
    )
