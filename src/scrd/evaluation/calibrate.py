"""Decision thresholds from normal images only, never (silently) from images the model learnt.

A threshold is the score above which an image is called abnormal, set so that a target fraction
of normal images stays below it (the specificity). The rule is split-conformal
(:func:`~scrd.evaluation.metrics.conformal_threshold`): for new normal images like the calibration
images the specificity is at least the target in expectation, and its spread over calibration sets
(Beta-distributed, recorded with the threshold) shrinks as more normals are held out.

Calibrating on images the model was trained on gives a threshold that is too low for new normals;
so images listed in the run's ``train_samples.csv`` are left out, and when nothing else is available
(a run without held-out images, calibrated on its own training split) the calibration is labelled
in-sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.layouts import load_samples
from ..detector import Detector, resolve_model_path
from ..errors import InputError
from ..filenames import HOLDOUT_SAMPLES, TRAIN_SAMPLES
from ..runs.output import apply_job_options, refuse_onnx
from ..runs.rundir import prepare_process
from ..runs.runtime import DEFAULT_RUNTIME, Runtime
from ..runs.sample_lists import read_sample_list, sample_key
from .metrics import conformal_threshold
from .scored_set import score_samples

HOLDOUT = "holdout"  # as a calibration source: the run's held-out normal training images


def calibration(
    detector: Detector,
    model: str | Path,
    source: str | Path | None = None,
    split: str = "train",
    target_specificity: float = 0.95,
    runtime: Runtime = DEFAULT_RUNTIME,
    show_progress: bool = False,
) -> dict[str, Any]:
    """A threshold from the normal images of ``split`` of ``source`` (abnormal labels are refused).

    ``source=None`` or ``"holdout"`` uses the run's held-out normal training images
    (``train.holdout_fraction``).
    """
    run_dir = resolve_model_path(model).parent
    if source is None or str(source) == HOLDOUT:
        held = read_sample_list(run_dir / HOLDOUT_SAMPLES) if (run_dir / HOLDOUT_SAMPLES).is_file() else []
        if not held:
            raise InputError(
                f"{run_dir}: the run holds out no training images (train.holdout_fraction = 0); "
                "pass normal images to calibrate on (--data)"
            )
        samples, where = held, f"{run_dir / HOLDOUT_SAMPLES}"
    else:
        samples, where = load_samples(str(source), split, detector.config.data), f"{source} ({split})"
    abnormal = [s for s in samples if s.label == 1]
    if abnormal:
        raise InputError(
            f"{where}: calibration needs normal images only; {len(abnormal)} are labelled abnormal, "
            f"e.g. {abnormal[0].path}"
        )
    trained = (
        {sample_key(s) for s in read_sample_list(run_dir / TRAIN_SAMPLES)}
        if (run_dir / TRAIN_SAMPLES).is_file()
        else set()
    )
    unseen = [s for s in samples if sample_key(s) not in trained]
    in_sample = not unseen
    used = samples if in_sample else unseen
    scored = score_samples(detector, used, runtime, show_progress=show_progress, desc="calibrate")
    if len(scored.scores) == 0:
        raise InputError(f"{where}: every calibration image was unreadable and skipped")
    rule = conformal_threshold(scored.scores, target_specificity)
    threshold = rule["threshold"]
    if in_sample:
        note = (
            "IN-SAMPLE: every calibration image was also a training image, so specificity on new normal "
            "images will be lower than the target; set train.holdout_fraction to calibrate on held-out images"
        )
    elif len(used) < len(samples):
        note = f"{len(samples) - len(used)} of the {len(samples)} images were training images and were left out"
    else:
        note = "none of the calibration images was a training image"
    return {
        "threshold": float(threshold),
        "target_specificity": target_specificity,
        "source": where,
        "requested": {"source": None if source is None else str(source), "split": split},
        "split": split,
        "n_images": int(len(scored.scores)),
        "in_sample": in_sample,
        "note": note,
        "specificity_on_calibration_set": float(np.mean(scored.scores < threshold)),
        "skipped_images": len(scored.skipped),
        "rule": "conformal",
        "precision": detector.precision,  # the scores were of this precision: decisions compare like with like
        "guarantee": (
            f"a new normal image, exchangeable with these {len(scored.scores)} (same source, not trained on), "
            f"passes with probability >= {rule['expected_specificity']:.4f} (>= the target)"
            if rule["guaranteed"] and not in_sample
            else f"none: {len(scored.scores)} images are too few for the target (at least "
            f"{rule['min_images_for_target']} needed)"
            if not rule["guaranteed"]
            else "none: the calibration images were trained on"
        ),
        "expected_specificity": rule["expected_specificity"],
        "specificity_std": rule["specificity_std"],
        "specificity_p5": rule["specificity_p5"],
    }


def calibrate(
    model: str | Path,
    source: str | Path | None = None,
    split: str = "train",
    target_specificity: float = 0.95,
    runtime: Runtime = DEFAULT_RUNTIME,
    show_progress: bool = False,
    data_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store a threshold from normal images (see :func:`calibration`) in the model's ``model.json``.
    ``data_options`` ({"data.KEY": value}) override how the model reads files; ``show_progress``: a
    bar on stderr."""
    refuse_onnx(model, "calibrate")
    prepare_process()
    detector = Detector.load(model, runtime.device, runtime.precision)
    apply_job_options(detector, data_options)
    info = calibration(detector, model, source, split, target_specificity, runtime, show_progress)
    detector.metadata["calibration"] = info
    detector.save_metadata(resolve_model_path(model).parent)
    return info


def stored_calibration(
    detector: Detector,
    model: str | Path,
    source: str | Path | None,
    split: str,
    target_specificity: float,
    runtime: Runtime = DEFAULT_RUNTIME,
    show_progress: bool = False,
) -> dict[str, Any]:
    """The model's stored calibration when it was made from the same images and target (nothing is
    scored again), else a new one, which is stored in the model's ``model.json``. The result says
    which (``reused``)."""
    stored = detector.metadata.get("calibration")
    wanted = {"source": None if source is None else str(source), "split": split}
    if stored and stored.get("requested") == wanted and stored.get("target_specificity") == target_specificity:
        return {**stored, "reused": True}
    info = calibration(detector, model, source, split, target_specificity, runtime, show_progress)
    detector.metadata["calibration"] = info
    detector.save_metadata(resolve_model_path(model).parent)
    return {**info, "reused": False}
