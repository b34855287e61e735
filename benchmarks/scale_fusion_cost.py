"""What the normal-statistics scale fusion costs at scoring time, against the plain sum.

The same detector scores the same random batch with ``scoring.scale_fusion`` ``sum`` and
``normal_softmax`` (network pass included), alternating, and prints the time per batch and their
ratio. The fusion smooths each scale's map and reduces each one, where the sum smooths one map.
An untrained mobilenet_v2 unless a run directory is given (speed, not accuracy, is measured).

    python benchmarks/scale_fusion_cost.py --image-size 256 --batch 16
    python benchmarks/scale_fusion_cost.py --run runs/bts/denoising_cosine_4000/seed-111
"""

from __future__ import annotations

import argparse
import time

import torch

from scrd.config import preset
from scrd.detector import Detector
from scrd.model import SCRD


def seconds_per_batch(detector: Detector, images: torch.Tensor, repeats: int) -> float:
    detector.score(images)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        detector.score(images)
    return (time.perf_counter() - started) / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a trained run directory (default: an untrained mobilenet_v2)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two scorings")
    args = parser.parse_args(argv)
    if args.run:
        detector = Detector.load(args.run)
    else:
        config = preset("denoising").with_overrides({"model.weights": "none", "model.image_size": args.image_size})
        detector = Detector.from_network(SCRD(config.model.arch).eval(), config, torch.device("cpu"))
    size = detector.image_size
    images = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    heads = {name: detector.head.with_options(scale_fusion=name) for name in ("sum", "normal_softmax")}
    detector.fit_statistics(iter([images]), list(heads.values()))  # from the batch: only the time is measured
    print(f"{detector.config.model.arch}, {size} px, batch {args.batch}, {torch.get_num_threads()} threads")
    for _ in range(args.rounds):
        times = {}
        for name, head in heads.items():
            detector.head = head
            times[name] = seconds_per_batch(detector, images, args.repeats)
        print(
            f"sum {times['sum']:.3f} s, normal_softmax {times['normal_softmax']:.3f} s per batch: "
            f"ratio {times['normal_softmax'] / times['sum']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
