"""How many held-out normal images the statistics and the threshold need: a bootstrap over a run's
held-out normals, against the validation normals it never saw.

For each size n, many random subsets of the run's held-out normal images stand in for a run that held
out n: the relative error of the image score's spread measured on them (the unit the scoring
standardises with) against the spread over all validation normals, and the specificity the conformal
95 % threshold from them reaches on the validation normals (mean, std, 5th percentile).

    python benchmarks/holdout_size.py RUN --data ../shared/data/brain_tumor
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from scrd.data.layouts import load_samples
from scrd.detector import Detector
from scrd.evaluation.metrics import conformal_threshold
from scrd.evaluation.normal_reference import reference_samples
from scrd.evaluation.scored_set import score_samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run directory with held-out normal images")
    parser.add_argument("--data", required=True, help="the labelled dataset whose normal test images are the truth")
    parser.add_argument("--split", default="test")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 30, 50, 75, 100])
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    detector = Detector.load(args.run)
    held = score_samples(detector, reference_samples(args.run)).scores
    truth = score_samples(detector, [s for s in load_samples(args.data, args.split) if s.label == 0]).scores
    rng = np.random.default_rng(0)
    print(f"{args.run}: {len(held)} held-out normals; {len(truth)} validation normals (std {truth.std():.4g})")
    print(
        "| held out | spread: relative error (median, 90th pct) "
        "| specificity of the 95 % threshold: mean, std, 5th pct |"
    )
    print("|---|---|---|")
    for n in [s for s in args.sizes if s <= len(held)]:
        errors, reached = [], []
        for _ in range(args.draws):
            subset = rng.choice(held, n, replace=False)
            errors.append(abs(subset.std() / truth.std() - 1))
            reached.append(np.mean(truth < conformal_threshold(subset, 0.95)["threshold"]))
        errors, reached = np.array(errors), np.array(reached)
        print(
            f"| {n} | {np.median(errors):.3f}, {np.quantile(errors, 0.9):.3f} | "
            f"{reached.mean():.3f}, {reached.std():.3f}, {np.quantile(reached, 0.05):.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
