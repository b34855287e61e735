"""Peak memory of ``predict`` as the number of images grows (it should stay flat).

Used by ``benchmarks/predict_memory.py`` (1,000 vs 20,000 images) and by the test suite (a
CI-sized check). Each measurement runs ``predict`` in a fresh process and reads its peak RSS.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

_CHILD = """
import resource, sys, time
from scrd.inference.predict import predict
from scrd.runs.runtime import Runtime
t0 = time.perf_counter()
predict(sys.argv[1], [sys.argv[2]], sys.argv[3], Runtime(batch_size=32, device="cpu"), heatmaps=sys.argv[4] == "1")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t0)
"""


def make_images(folder: Path, count: int, size: int = 48) -> None:
    """``count`` small grey PNGs (shifted copies of one random image)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size, size), dtype=np.uint8)
    for i in range(count):
        Image.fromarray(np.roll(base, i, axis=1)).save(folder / f"img_{i:06d}.png")


def make_untrained_model(folder: Path) -> None:
    """An untrained 64-px mobilenet_v2 detector: memory, not accuracy, is measured."""
    import torch

    from ..config import preset
    from ..detector import Detector
    from ..model import SCRD

    config = preset("official").with_overrides(
        {"model.arch": "mobilenet_v2", "model.weights": "none", "model.image_size": 64, "noise.max_size": 24}
    )
    Detector.from_network(SCRD("mobilenet_v2").eval(), config, torch.device("cpu")).save(folder)


def peak_rss_mib(model: Path, images: Path, out: Path, heatmaps: bool) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of ``predict`` over the images in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(model), str(images), str(out), "1" if heatmaps else "0"],
        check=True,
        capture_output=True,
        text=True,
    )
    kib, seconds = result.stdout.split()[-2:]
    return int(kib) / 1024, float(seconds)
