"""The default detector on a GPU: CUDA against CPU scores, and scoring images/s with each bank search.

For a lent GPU machine, in one short run (issue 25, item 4): for each architecture, the default preset
with random weights and a bank of the size 1000 normal 256-px images fit (rows drawn from the scored
images' patches, as ``scrd benchmark --deploy`` draws them), moved to ``--device``:

* parity: the same 16 phantom images scored on the CPU and on the device, with the exact and with the
  ivf search (TF32 off, so both sides compute in float32): the largest score difference relative to
  the largest score, and whether any decision at the median score flips;
* speed: images/s of ``Detector.score`` on batches of 16 in memory on the device, with each search,
  beside the student alone.

    python benchmarks/cuda_check.py --device cuda --arch resnet18 wide_resnet50_2
    python benchmarks/cuda_check.py --device cpu --arch resnet18 --image-size 64   # the same code on a CPU

Training images/s on the device: ``scrd benchmark --device cuda --arch resnet18 wide_resnet50_2 --quick``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from scrd.data.phantom import make_phantom_dataset
from scrd.detector import Detector
from scrd.lab.deploy_benchmark import default_detector
from scrd.scoring.head import BankSearch


def _rate(fn, images: int, device: torch.device, repeats: int = 3) -> float:
    fn()  # warm-up (and the ivf index's build)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images * repeats / (time.perf_counter() - started)


def check(arch: str, image_size: int, device: torch.device) -> dict:
    work = tempfile.mkdtemp(prefix="scrd-cuda-check-")
    data = make_phantom_dataset(work, n_train=0, n_test_normal=8, n_test_abnormal=8, size=image_size, seed=5)
    files = sorted(str(p) for p in (data / "images").glob("*.png"))
    cpu = default_detector(arch, image_size, "none", 1000, files)
    images = torch.stack([cpu.load_image(f) for f in files])
    twin = default_detector(arch, image_size, "none", 1000, files)  # the same seeds: the same weights and bank
    on_device = Detector(twin.network, twin.head, twin.config, device, {}, "fp32")
    found = {"arch": arch, "image_size": image_size, "bank_rows": int(cpu.head.bank.shape[0])}
    batch = images.to(device)
    heads = {}
    for kind in ("exact", "ivf"):
        search = BankSearch(kind)
        cpu_head, device_head = cpu.head.with_bank_search(search), on_device.head.with_bank_search(search)
        a = cpu.score_heads(images, {"h": cpu_head})["h"].scores.double()
        b = on_device.score_heads(images.to(device), {"h": device_head})["h"].scores.double().cpu()
        threshold = a.median()
        found[f"{kind}_score_rel_diff"] = float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))
        found[f"{kind}_decisions_flipped"] = int(((a >= threshold) != (b >= threshold)).sum())
        heads[kind] = device_head
    heads["student"] = on_device.head.with_options(memory_bank_weight=0.0).copy_statistics_from(on_device.head)
    for name, head in heads.items():
        found[f"{name}_images_per_s"] = _rate(lambda h=head: on_device.score_heads(batch, {"h": h}), len(batch), device)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", nargs="+", default=["resnet18", "wide_resnet50_2"])
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 on both sides: parity, not TF32's rounding
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}")
    for arch in args.arch:
        r = check(arch, args.image_size, device)
        print(
            f"{arch} {r['image_size']} px, bank {r['bank_rows']} rows: "
            f"exact {r['exact_images_per_s']:.1f} img/s (scores vs CPU {r['exact_score_rel_diff']:.2e}, "
            f"{r['exact_decisions_flipped']} decisions flipped); ivf {r['ivf_images_per_s']:.1f} img/s "
            f"({r['ivf_score_rel_diff']:.2e}, {r['ivf_decisions_flipped']} flipped); "
            f"student alone {r['student_images_per_s']:.1f} img/s"
        )


if __name__ == "__main__":
    main()
