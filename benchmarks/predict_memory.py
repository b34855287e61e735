"""Peak memory of ``scrd predict`` as the number of images grows (it should stay flat).

Writes N small grey PNGs, saves an untrained mobilenet_v2 detector (64 px; memory, not accuracy,
is measured), then runs ``predict`` in a fresh process per N and prints its peak RSS.

    python benchmarks/predict_memory.py --counts 1000 20000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = """
import resource, sys, time
from scrd.prediction import predict
t0 = time.perf_counter()
predict(sys.argv[1], [sys.argv[2]], sys.argv[3], batch_size=32, heatmaps=sys.argv[4] == "1", device="cpu")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t0)
"""


def make_images(folder: Path, count: int, size: int = 48) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size, size), dtype=np.uint8)
    for i in range(count):
        Image.fromarray(np.roll(base, i, axis=1)).save(folder / f"img_{i:06d}.png")


def make_model(folder: Path) -> None:
    import torch

    from scrd.config import preset
    from scrd.detector import Detector
    from scrd.model import SCRD

    config = preset("official").with_overrides({"model.arch": "mobilenet_v2", "model.weights": "none",
                                                "model.image_size": 64, "noise.max_size": 24})
    Detector(SCRD("mobilenet_v2").eval(), config, torch.device("cpu")).save(folder)


def peak_rss_mib(model: Path, images: Path, out: Path, heatmaps: bool) -> tuple[float, float]:
    result = subprocess.run([sys.executable, "-c", CHILD, str(model), str(images), str(out), "1" if heatmaps else "0"],
                            check=True, capture_output=True, text=True)
    kib, seconds = result.stdout.split()[-2:]
    return int(kib) / 1024, float(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--no-heatmaps", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_model(root / "model")
        print(f"{'images':>8} {'peak RSS (MiB)':>15} {'seconds':>9} {'images/s':>9}")
        for count in args.counts:
            images = root / f"images_{count}"
            t0 = time.perf_counter()
            make_images(images, count)
            rss, seconds = peak_rss_mib(root / "model", images, root / f"out_{count}", not args.no_heatmaps)
            print(f"{count:>8} {rss:>15.1f} {seconds:>9.1f} {count / seconds:>9.1f}   "
                  f"(writing the images took {time.perf_counter() - t0 - seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
