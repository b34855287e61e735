"""ONNX Runtime versus PyTorch on the CPU, and 1 versus 2 prediction processes.

1. An untrained detector (random weights: speed, not accuracy, is measured) is exported; the same
   batches are scored by PyTorch (fp32) and by ONNX Runtime, and the largest differences printed.
2. ``scrd predict`` over N images, once in one process and once as two shards under torchrun
   (merged), wall time including start-up.

    python benchmarks/deploy_speed.py --arch wide_resnet50_2 --image-size 256 --images 200
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from scrd.config import preset
from scrd.deploy.onnx_export import export_onnx
from scrd.deploy.ort_detector import OrtDetector
from scrd.detector import Detector
from scrd.lab.predict_memory import make_images
from scrd.model import SCRD


def speed(arch: str, size: int, batch: int, repeats: int, root: Path) -> None:
    config = preset("official").with_overrides({"model.arch": arch, "model.weights": "none", "model.image_size": size})
    Detector.from_network(SCRD(arch).eval(), config, torch.device("cpu")).save(root / "model")
    t0 = time.perf_counter()
    export_onnx(root / "model", root / "model.onnx")
    print(f"export {arch} at {size} px: {time.perf_counter() - t0:.1f} s")
    reference = Detector.load(root / "model", "cpu", "fp32")
    ort = OrtDetector.load(root / "model.onnx", "cpu")
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    seconds = {}
    for name, scorer in (("torch", reference), ("onnxruntime", ort)):
        scorer.score(images)  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            result = scorer.score(images)
        seconds[name] = (time.perf_counter() - t0) / repeats
        if name == "torch":
            expected = result
    map_diff = float((result.maps - expected.maps).abs().max())
    score_diff = float(((result.scores - expected.scores).abs() / expected.scores.abs()).max())
    print(
        f"batch {batch}: torch {seconds['torch']:.3f} s, onnxruntime {seconds['onnxruntime']:.3f} s, "
        f"ORT/torch time ratio {seconds['onnxruntime'] / seconds['torch']:.2f}"
    )
    print(f"largest differences: maps {map_diff:.2e} absolute, scores {score_diff:.2e} relative")


def processes(count: int, batch: int, root: Path) -> None:
    images = root / "images"
    make_images(images, count)
    config = preset("official").with_overrides(
        {"model.arch": "mobilenet_v2", "model.weights": "none", "model.image_size": 64, "noise.max_size": 24}
    )
    Detector.from_network(SCRD("mobilenet_v2").eval(), config, torch.device("cpu")).save(root / "small")
    predict = ["-m", "scrd.cli", "predict", str(images), "--model", str(root / "small"), "--batch-size", str(batch)]
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for label, launch in (("1 process", []), ("2 processes (torchrun)", torchrun)):
        out = root / label.split()[0]
        t0 = time.perf_counter()
        command = [sys.executable, *launch, *predict, "--out", str(out), "--device", "cpu"]
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - t0
        print(f"predict {count} images (mobilenet_v2, 64 px), {label}: {seconds:.1f} s, {count / seconds:.1f} images/s")
    same = (root / "1" / "predictions.csv").read_bytes() == (root / "2" / "predictions.csv").read_bytes()
    print(f"merged 2-process CSV identical to the 1-process CSV: {same}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="wide_resnet50_2")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=200, help="images for the 1- vs 2-process run (0: skip it)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        speed(args.arch, args.image_size, args.batch, args.repeats, Path(tmp))
        if args.images:
            processes(args.images, 16, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
