"""The threshold's part of the seed-to-seed swing in sensitivity, from runs already evaluated.

For each run: the sensitivity and specificity its own calibrated threshold reached on the validation
split, the sensitivity at exactly the target specificity there (the model's, free of threshold noise),
and the spread over 2000 conformal thresholds from random draws of n validation normals (the
threshold's noise at the run's calibration size n, and at 2n). Reads each run's
``evaluation/scores.csv`` and the calibration in its model.json; scores nothing again.

    python benchmarks/threshold_noise.py runs/default-brain/denoising_knn_cosine_4000/seed-*
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from scrd.evaluation.metrics import metrics_at_threshold
from scrd.evaluation.threshold_noise import MIN_LEFT_OVER, can_draw, threshold_noise
from scrd.filenames import MODEL_META, SCORES_FILE
from scrd.runs.run_logs import read_scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories with evaluation/scores.csv and a calibration")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args(argv)
    print(
        "| run | n | at its threshold: sensitivity / specificity | sensitivity at exactly the target "
        "specificity | threshold noise at n: sensitivity ± std (specificity ± std) | at 2n |"
    )
    print("|---|---|---|---|---|---|")
    for run in map(Path, args.runs):
        calibration = json.loads((run / MODEL_META).read_text())["calibration"]
        scored = read_scores(run / "evaluation" / SCORES_FILE)
        labels, scores = np.asarray(scored.labels), np.asarray(scored.scores)
        normal, abnormal = scores[labels == 0], scores[labels == 1]
        n, target = int(calibration["n_images"]), float(calibration["target_specificity"])
        at = metrics_at_threshold(labels, scores, calibration["threshold"])
        exact = float(np.mean(abnormal > np.quantile(normal, target)))
        cells = []
        for size in (n, 2 * n):
            if not can_draw(size, normal.size):
                cells.append(f"– (needs {size + MIN_LEFT_OVER} normals, the set has {normal.size})")
                continue
            noise = threshold_noise(normal, abnormal, size, target, args.draws)
            sens, spec = noise["sensitivity"], noise["specificity"]
            cells.append(f"{sens['mean']:.3f} ± {sens['std']:.3f} ({spec['mean']:.3f} ± {spec['std']:.3f})")
        print(
            f"| {run} | {n} | {at['sensitivity']:.3f} / {at['specificity']:.3f} | {exact:.3f} | "
            + " | ".join(cells)
            + " |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
