"""A new run from a trained one: the same student, everything fitted after training anew.

The memory bank (``knn.*``: which patches, how many, how it is searched) and the scoring (``scoring.*``:
the normal statistics, the image score, the fusion) are fitted after the student has trained and do
not change it. So a smaller or differently searched bank, or another scoring, needs no new training:
the trained network is taken as it is and the bank, the statistics, the held-out scores and the
scoring choice are fitted anew on the source run's own training and held-out images, exactly as
training ends (``train.save_trained``). ``scrd refit`` and the experiment grids' ``student_from`` use it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..config import Config
from ..data.dataset import ImageDataset
from ..detector import Detector
from ..errors import ConfigError, TrainingError
from ..filenames import CONFIG_FILE, HOLDOUT_SAMPLES, MODEL_META, TRAIN_LOG, TRAIN_SAMPLES
from ..runs.output import check_writable
from ..runs.sample_lists import read_sample_list
from ..storage import read_json
from .data import TrainingImages

FITTED_AFTER_TRAINING = ("knn.", "scoring.")  # option prefixes that leave the trained student as it is


def after_training_changes(trained: Config, wanted: Config) -> list[str]:
    """The options ``wanted`` changes from ``trained``; ConfigError if one of them would change what
    was trained (anything but ``knn.*`` and ``scoring.*``)."""
    old, new = trained.dotted(), wanted.dotted()
    changed = Config.differing(old, new)
    training = [k for k in changed if not k.startswith(FITTED_AFTER_TRAINING)]
    if training:
        shown = ", ".join(f"{k}: trained {old.get(k)!r}, asked {new.get(k)!r}" for k in training)
        raise ConfigError(f"these options change the training itself, so the student must be trained anew: {shown}")
    return changed


def refit_after_training(source: str | Path, run_dir: str | Path, config: Config, progress: bool = False) -> list[str]:
    """Write the run ``run_dir``: ``source``'s trained network with the bank and scoring of ``config``
    fitted anew on ``source``'s training and held-out images. Returns the options changed."""
    from .train import save_trained, write_run_files

    source, run_dir = Path(source), Path(run_dir)
    if not (source / MODEL_META).is_file():
        raise TrainingError(f"{source}: not a finished run (no {MODEL_META}); train it first")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise TrainingError(f"{run_dir}: run directory is not empty; choose a new directory")
    trained = Config.load(source / CONFIG_FILE)
    if trained.model.method == "knn":
        raise ConfigError(f"{source}: a knn model has no student to keep; train it anew (it takes seconds)")
    changed = after_training_changes(trained, config)
    meta = read_json(source / MODEL_META)
    images = TrainingImages(
        meta["data"]["source"],
        meta["data"]["fingerprint"],
        read_sample_list(source / TRAIN_SAMPLES),
        read_sample_list(source / HOLDOUT_SAMPLES) if (source / HOLDOUT_SAMPLES).is_file() else [],
    )
    loaded = Detector.load(source, device=config.train.device)
    network, device = loaded.network, loaded.device
    check_writable(run_dir)
    write_run_files(run_dir, config, images, device)
    if (source / TRAIN_LOG).is_file():  # the training curves are the source's: the report shows them
        shutil.copyfile(source / TRAIN_LOG, run_dir / TRAIN_LOG)
    bank_seconds = float(meta.get("memory_bank_seconds", 0.0))
    save_trained(
        run_dir,
        network,
        config,
        device,
        meta["teacher_weights"],
        images,
        ImageDataset(images.fit, config.model.image_size, data=config.data),
        int(meta["iterations"]),
        meta["selection"],
        float(meta["train_seconds"]) - bank_seconds,
        progress=progress,
        record={"student_from": {"run": str(source), "changed": changed}},
    )
    return changed
