"""Does a decision depend on how a model is run? The largest score difference and the decisions that
flip at the model's threshold between torch's default precision (fp32), torch bf16 and ONNX Runtime,
on a dataset's images, for a trained run (the student alone too, when the run has a memory bank).

    python benchmarks/precision_flips.py runs/default-brain/denoising_knn_cosine_4000/seed-111 \
        --data ../shared/data/brain_tumor
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np

from scrd.data.dataset import ImageDataset, make_loader
from scrd.data.layouts import load_samples
from scrd.deploy.onnx_export import export_onnx
from scrd.deploy.ort_detector import OrtDetector
from scrd.detector import Detector


def scores(scorer, samples, batch_size: int = 16) -> np.ndarray:
    loader = make_loader(ImageDataset(samples, scorer.image_size, data=scorer.config.data), batch_size)
    return np.concatenate([scorer.score(batch["image"]).scores.numpy() for batch in loader])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    fp32 = Detector.load(args.run, "cpu")
    bf16 = Detector.load(args.run, "cpu", precision="bf16")
    samples = load_samples(args.data, args.split, fp32.config.data)
    threshold = fp32.threshold
    with tempfile.TemporaryDirectory() as folder:
        export_onnx(args.run, Path(folder) / "m.onnx")
        ort = OrtDetector.load(Path(folder) / "m.onnx", "cpu")
        found = {"torch fp32 (default)": scores(fp32, samples), "torch bf16": scores(bf16, samples)}
        found["onnxruntime"] = scores(ort, samples)
    kinds = {"the model": found}
    if fp32.has_memory_bank:  # the student alone: the same network, the bank's weight 0
        student = {}
        for name, det in (("torch fp32 (default)", fp32), ("torch bf16", bf16)):
            alone = copy.copy(det)
            alone.head = det.head.with_options(memory_bank_weight=0.0).copy_statistics_from(det.head)
            student[name] = scores(alone, samples)
        kinds["its student alone"] = student
    print(f"{args.run}: {len(samples)} images of {args.data} ({args.split}); threshold {threshold}")
    for kind, by in kinds.items():
        reference = by["torch fp32 (default)"]
        scale = np.abs(reference).max()
        for name, values in by.items():
            if name == "torch fp32 (default)":
                continue
            flips = int(np.sum((values >= threshold) != (reference >= threshold))) if threshold is not None else None
            if kind != "the model":
                flips = None  # the student alone has no threshold of its own
            largest = np.abs(values - reference).max()
            print(
                f"  {kind}: {name} against torch fp32: largest |score difference| {largest:.3g} "
                f"({largest / scale:.2g} of the largest score)"
                + ("" if flips is None else f", decisions flipped at the threshold: {flips}")
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
