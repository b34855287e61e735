"""Which scales should the map combine? The label-free criterion's answer beside the real labels'.

For each trained run, every subset of the three scales (weights 0/1) is scored two ways on the same
network passes: the label-free criterion (the run's held-out normal images against copies with
cut-paste patches and intensity blobs; no label is read) and the real AUROC on the labelled split.
Where the two disagree, a scale adaptation learnt from synthetic anomalies cannot be expected to
choose the scales that real lesions need.

    python benchmarks/scale_choice.py runs/bts/denoising_cosine_4000/seed-111 --data ../shared/data/brain_tumor
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from scrd.anomalies.label_free import validation_set
from scrd.data.dataset import ImageDataset, make_loader
from scrd.data.layouts import load_samples
from scrd.detector import Detector
from scrd.evaluation.metrics import oracle_metrics
from scrd.filenames import HOLDOUT_SAMPLES
from scrd.lab.scoring_variants import variant_heads
from scrd.runs.sample_lists import read_sample_list

SUBSETS = {
    "1+2+3": (1, 1, 1),
    "1+2": (1, 1, 0),
    "2+3": (0, 1, 1),
    "1+3": (1, 0, 1),
    "1": (1, 0, 0),
    "2": (0, 1, 0),
    "3": (0, 0, 1),
}


def features_of(detector: Detector, images: torch.Tensor, batch_size: int = 16) -> list:
    return [detector.features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]


def aurocs(heads: dict, features: list, labels: np.ndarray) -> dict[str, float]:
    """AUROC of each scale subset's head, from the same network features."""
    return {
        name: oracle_metrics(labels, torch.cat([head(*f).scores for f in features]).double().numpy())["auroc"]
        for name, head in heads.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "runs", nargs="+", type=Path, help="run directories written by scrd train (with held-out normals)"
    )
    parser.add_argument("--data", required=True, help="the labelled dataset")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    print("| run | scales | label-free AUROC | real AUROC |\n|---|---|---|---|")
    for run in args.runs:
        detector = Detector.load(run)
        held = read_sample_list(run / HOLDOUT_SAMPLES)
        normals = ImageDataset(held, detector.image_size, data=detector.config.data)
        images, labels = validation_set(
            torch.stack([normals[i]["image"] for i in range(len(normals))]), detector.config.train.seed
        )
        heads = variant_heads(detector, run, {name: {"scale_weights": list(w)} for name, w in SUBSETS.items()})
        label_free = aurocs(heads, features_of(detector, images), labels)
        real_labels, real_features = [], []
        samples = load_samples(args.data, args.split, detector.config.data)
        for batch in make_loader(ImageDataset(samples, detector.image_size, data=detector.config.data), 16):
            real_features.append(detector.features(batch["image"]))
            real_labels.append(batch["label"].numpy())
        real = aurocs(heads, real_features, np.concatenate(real_labels))
        for name in SUBSETS:
            print(f"| {run} | {name} | {label_free[name]:.4f} | {real[name]:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
