"""What a memory bank beside the student (``model.memory_bank``) costs at scoring time.

The same detector scores the same random batch with its bank and without it (the student alone),
alternating, and prints the time per batch and their ratio: the bank adds a nearest-neighbour search
of every patch (scale 2's grid) over the bank, no network pass. A trained run with a bank, or an
untrained student (mobilenet_v2 unless --arch) with a random bank of the size training would fit (speed, not accuracy).

    python benchmarks/memory_bank_cost.py --train-images 898
    python benchmarks/memory_bank_cost.py --run runs/bt/denoising_knn_cosine_4000/seed-111
"""

from __future__ import annotations

import argparse
import copy

import torch
from scale_fusion_cost import seconds_per_batch  # the same timing, run from benchmarks/

from scrd.config import preset
from scrd.detector import Detector
from scrd.model import SCRD
from scrd.scoring.bank import patch_vectors


def untrained_with_bank(arch: str, image_size: int, train_images: int) -> Detector:
    """An untrained student with a random bank as large as training on ``train_images``
    images would keep (``knn.fraction`` of the patches), and stand-in normal statistics."""
    config = preset("denoising_knn").with_overrides(
        {"model.arch": arch, "model.weights": "none", "model.image_size": image_size}
    )
    model = SCRD(config.model.arch).eval()
    with torch.no_grad():
        grid = patch_vectors(
            model.teacher(torch.zeros(1, 3, image_size, image_size)), config.knn.scales, config.knn.pool
        )
    patches = round(train_images * grid.shape[2] * grid.shape[3] * config.knn.fraction)
    bank = torch.randn(patches, grid.shape[1], generator=torch.Generator().manual_seed(0))
    return Detector.from_network(model, config, torch.device("cpu"), bank=bank)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a trained run directory with a memory bank (default: an untrained one)")
    parser.add_argument("--arch", default="mobilenet_v2", help="of the untrained detector")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--train-images", type=int, default=898, help="for the untrained bank's size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two detectors")
    args = parser.parse_args(argv)
    with_bank = (
        Detector.load(args.run) if args.run else untrained_with_bank(args.arch, args.image_size, args.train_images)
    )
    if not with_bank.has_memory_bank:
        parser.error(f"{args.run}: this model has no memory bank (train it with model.memory_bank: true)")
    size = with_bank.image_size
    images = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    if not args.run:  # statistics from the batch itself: the time, not the values, is measured
        with_bank.fit_statistics(iter([images]))
    alone = copy.copy(with_bank)  # the same network and scales, no bank map
    alone.head = with_bank.head.with_options(memory_bank_weight=0.0).copy_statistics_from(with_bank.head)
    bank = with_bank.head.bank
    print(
        f"{with_bank.config.model.arch}, {size} px, batch {args.batch}, bank {bank.shape[0]} x {bank.shape[1]}, "
        f"{torch.get_num_threads()} threads"
    )
    for _ in range(args.rounds):
        student = seconds_per_batch(alone, images, args.repeats)
        both = seconds_per_batch(with_bank, images, args.repeats)
        print(f"student alone {student:.3f} s, with the bank {both:.3f} s per batch: ratio {both / student:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
