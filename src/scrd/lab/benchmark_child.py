"""One measurement of ``scrd benchmark``, run in a process of its own.

Each configuration gets a fresh process, so that its allocator setting (tuned glibc, the system
allocator, a preloaded tcmalloc) and its peak memory are its own. The process prints one JSON
line: ``python -m scrd.lab.benchmark_child '{"kind": "train", ...}'``.

* ``train``: images/s of the training step (the same ``scrd_loss`` + backward + Adam step as
  ``scrd train``, official preset), its FLOPs (torch's flop counter) and the process's peak memory.
* ``infer``: images/s of ``Detector.score`` (network, maps, smoothing, score) at a batch size.
* ``peak``: this machine's measured matmul and 3×3-convolution rates in a precision.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any, Callable

import torch


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs, after one warm-up run."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _flops(fn: Callable[[], object]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _setup(spec: dict[str, Any]):
    from ..config import preset
    from ..device import choose_device, memory_format
    from ..model import build_model

    device = choose_device(spec["device"])
    config = preset("official").with_overrides({"model.arch": spec["arch"], "model.image_size": spec["size"]})
    model, _ = build_model(spec["arch"], spec["weights"])
    model.to(device).to(memory_format=memory_format(spec["channels_last"]))
    images = torch.rand(spec["batch"], 3, spec["size"], spec["size"], generator=torch.Generator().manual_seed(0))
    return config, model, images.to(device), device


def measure_train(spec: dict[str, Any]) -> dict[str, Any]:
    from ..anomalies.synthesis import AnomalySynthesizer
    from ..data.transforms import normalize
    from ..device import autocast, memory_format
    from ..losses.step import scrd_loss

    config, model, images, device = _setup(spec)
    fmt = memory_format(spec["channels_last"])
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=config.train.lr, betas=config.train.betas)
    synth = AnomalySynthesizer(config.noise, seed=config.train.seed)
    teacher = None
    if spec["cache"]:  # the clean features, as the feature cache serves them
        with torch.no_grad(), autocast(device, spec["precision"]):
            teacher = [
                f.contiguous(memory_format=fmt) for f in model.encode(normalize(images).contiguous(memory_format=fmt))
            ]
    model.train()

    def step() -> None:
        noisy = normalize(synth(images)[0]).contiguous(memory_format=fmt)
        clean = None if teacher is not None else normalize(images).contiguous(memory_format=fmt)
        terms, _ = scrd_loss(
            model,
            clean,
            noisy,
            config.loss,
            noisy_branch=config.train.noisy_branch,
            teacher=teacher,
            precision=spec["precision"],
        )
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()

    seconds = _timed(step, device, spec["steps"])
    return {
        "images_per_s": spec["batch"] / seconds,
        "step_s": seconds,
        "flops": _flops(step),
        "peak_memory_gb": _peak_memory_gb(device),
    }


def measure_infer(spec: dict[str, Any]) -> dict[str, Any]:
    from ..detector import Detector

    config, model, images, device = _setup(spec)
    detector = Detector.from_network(
        model.eval(), config, device, precision=spec["precision"], channels_last=spec["channels_last"]
    )
    seconds = _timed(lambda: detector.score(images), device, spec["steps"])
    return {
        "images_per_s": spec["batch"] / seconds,
        "flops": _flops(lambda: detector.score(images)),
        "peak_memory_gb": _peak_memory_gb(device),
    }


def measure_peak(spec: dict[str, Any]) -> dict[str, Any]:
    """Matmul (4096²) and 3×3 convolution (256 → 256 channels, 64², batch 16) rates, in GFLOP/s."""
    from ..device import autocast, choose_device

    device = choose_device(spec["device"])
    fmt = torch.channels_last
    a, b = torch.randn(4096, 4096, device=device), torch.randn(4096, 4096, device=device)
    x = torch.randn(16, 256, 64, 64, device=device).contiguous(memory_format=fmt)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(device).to(memory_format=fmt)
    out = {}
    with torch.no_grad(), autocast(device, spec["precision"]):
        if spec["precision"] == "bf16":  # measure the bf16 kernels themselves, not the casts
            a, b = a.bfloat16(), b.bfloat16()
        out["matmul_gflops"] = 2 * 4096**3 / _timed(lambda: a @ b, device, spec["steps"]) / 1e9
        conv_flops = 2 * 16 * 64 * 64 * 256 * 256 * 9
        out["conv_gflops"] = conv_flops / _timed(lambda: conv(x), device, spec["steps"]) / 1e9
    return out


MEASURES = {"train": measure_train, "infer": measure_infer, "peak": measure_peak}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    if spec.get("tune_malloc"):
        from ..allocator import tune_malloc

        tune_malloc()
    torch.manual_seed(0)
    print(json.dumps({**spec, **MEASURES[spec["kind"]](spec)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
