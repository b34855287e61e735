"""The training job: iteration-based SCRD training into a run directory, with exact resume.

``train`` starts a run, ``resume`` continues one from its checkpoint (or extends a finished one
with more iterations). Batches are a pure function of (seed, iteration) and every random
generator's state is checkpointed, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..anomalies.synthesis import AnomalySynthesizer
from ..config import Config
from ..data.dataset import ImageDataset, SkippedImages
from ..detector import Detector
from ..device import memory_format, resolve_precision
from ..errors import ConfigError, ResumeError, TrainingError
from ..evaluation.evaluate import normal_map_range
from ..evaluation.normal_reference import measure_on_normals, normal_batches
from ..filenames import (
    CALIBRATION_REQUEST,
    CONFIG_FILE,
    ENV_FILE,
    HOLDOUT_SAMPLES,
    MODEL_META,
    SKIPPED_FILE,
    STATE_FILE,
    TRAIN_SAMPLES,
)
from ..model import build_model
from ..runs.normal_scores import NORMAL_SCORES, normal_scores_record
from ..runs.output import check_writable
from ..runs.progress import phase
from ..runs.rundir import environment_report, prepare_process, seed_everything
from ..runs.sample_lists import write_sample_list
from ..storage import read_json, remove_stale_temporaries, write_json
from .cache import build_training_cache
from .data import TrainingImages, load_training_images
from .distributed import World, check_shardable, check_supported, joined, world_from_env, wrap_trained
from .global_batchnorm import use_global_batchnorm
from .interrupt import StopRequest, TrainingInterrupted
from .loop import Clock, TrainingLoop
from .monitors import Monitors
from .state import data_record, restore_state, save_state


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    final_loss: float
    images_per_s: float
    skipped_images: int = 0  # unreadable images skipped (data.on_bad_image = skip), listed in the run
    started_at: int = 0  # the iteration this call started from (0 for a new run)


def train(
    config: Config,
    train_source: str | Path,
    run_dir: str | Path,
    progress: bool = True,
    eval_source: str | Path | None = None,
    eval_split: str = "test",
    calibration_request: dict | None = None,
) -> TrainResult:
    """Train SCRD on the normal images of ``train_source`` into the new run directory ``run_dir``.

    With ``train.eval_every > 0`` the labelled ``eval_split`` of ``eval_source`` is scored during
    training and logged (``eval_log.csv``); with ``train.selection = best_on_test`` the best-AUROC
    model is also kept, marked as selected on test labels. The final model is always the last
    iteration's. A run that fails before its first iteration leaves the directory as it was, so
    the same command can simply be run again once the problem is fixed.

    ``calibration_request`` (:func:`calibration_request`: source, split, specificity) is what the
    command line calibrates once training ends; it is recorded in the run, so ``--resume`` does it too.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainingError(f"{run_dir}: --out is a file; give the run directory to create")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise TrainingError(
            f"{run_dir}: run directory is not empty; pass --resume to continue it or choose a new directory"
        )
    check_writable(run_dir)
    _check_eval_source(config, eval_source)
    world = world_from_env()
    if world.distributed:
        check_supported(config)
    existed = run_dir.exists()
    images = load_training_images(train_source, config)
    _check_held_out_for_statistics(config, images)
    started: list[int] = []  # _run records the iterations done here
    try:
        if config.model.method == "knn":
            if calibration_request is not None:
                record_calibration_request(run_dir, calibration_request)
            return _fit_knn(config, images, run_dir, progress)
        return _run(config, images, run_dir, False, progress, eval_source, eval_split, started, calibration_request)
    except BaseException:
        if world.main and not started and not (run_dir / MODEL_META).is_file():
            _clear_failed_start(run_dir, existed)  # nothing was trained: leave no half-made run behind
        raise


def _check_eval_source(config: Config, eval_source) -> None:
    if eval_source is not None and not config.train.eval_every:
        raise ConfigError(
            "--eval-data is scored every train.eval_every iterations, which is 0 (never): "
            "add e.g. --set train.eval_every=250, or drop --eval-data"
        )


def needs_normal_statistics(config: Config) -> str | None:
    """What of the config reads statistics of normal images (None: nothing does)."""
    s = config.scoring
    student = config.model.method == "scrd"
    if student and s.scale_fusion in ("standardized", "normal_sum", "normal_softmax"):
        return f"scoring.scale_fusion {s.scale_fusion}"
    if student and config.model.memory_bank and s.memory_bank_weight > 0:
        return "the memory bank beside the student (model.memory_bank)"
    if s.choose == "label_free":
        return "scoring.choose label_free"
    return None


def _check_held_out_for_statistics(config: Config, images: TrainingImages) -> None:
    """A scoring that reads normal statistics measures them on held-out normal images, never on the
    images it trains on (in-sample they come out too small): refuse before training without them."""
    reader = needs_normal_statistics(config)
    if reader is not None and len(images.holdout) < 2:
        raise TrainingError(
            f"{reader} measures statistics of normal images on held-out ones, and this run holds out "
            f"{len(images.holdout)} readable normal image(s) of {len(images.fit) + len(images.holdout)}: "
            "set train.holdout_fraction > 0 (the default, 0.1, holds out at least train.holdout_min = 50 "
            "where the data allow), or choose a scoring without them (--preset official, or "
            "scoring.scale_fusion: sum with model.memory_bank: false)"
        )


def _clear_failed_start(run_dir: Path, existed: bool) -> None:
    if not run_dir.is_dir():
        return
    for child in run_dir.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    if not existed:
        run_dir.rmdir()


def _fit_knn(config: Config, images: TrainingImages, run_dir: Path, progress: bool) -> TrainResult:
    """model.method = knn: no iterations; the memory bank is fitted and saved like a trained model."""
    from .fit_bank import fit_memory_bank

    prepare_process()
    seed_everything(config.train.seed, config.train.deterministic)
    clock = Clock()
    network, bank, weights_note, device = fit_memory_bank(config, images.fit, progress)
    write_run_files(run_dir, config, images, device)
    dataset = ImageDataset(images.fit, config.model.image_size, data=config.data)
    save_trained(
        run_dir,
        network,
        config,
        device,
        weights_note,
        images,
        dataset,
        0,
        "no selection: nothing is trained",
        clock.elapsed,
        bank,
        progress,
    )
    return TrainResult(run_dir, 0, float("nan"), 0.0)


def resume(
    run_dir: str | Path,
    train_source: str | Path,
    iterations: int | None = None,
    progress: bool = True,
    eval_source: str | Path | None = None,
    eval_split: str = "test",
    calibration_request: dict | None = None,
) -> TrainResult:
    """Continue the run in ``run_dir`` from its checkpoint, on the same data (checked by fingerprint).

    ``iterations`` extends the run to that many iterations. A finished run asked for no more
    iterations is left exactly as it is (its model and calibration included). A new
    ``calibration_request`` replaces the recorded one (see :func:`train`).
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise ResumeError(f"{run_dir}: nothing to resume (no {CONFIG_FILE}); start it without --resume")
    check_writable(run_dir)
    world = world_from_env()
    if world.main and calibration_request is not None:
        record_calibration_request(run_dir, calibration_request)
    if world.main:
        remove_stale_temporaries(run_dir)  # what a kill in the middle of an atomic write left
    config = Config.load(run_dir / CONFIG_FILE)
    _check_eval_source(config, eval_source)
    if world.distributed:
        check_supported(config)
    if iterations is not None:
        config = config.with_overrides({"train.iterations": iterations})
    if config.model.method == "knn":  # fitted in one go: finished, or fitted again
        if (run_dir / MODEL_META).is_file():
            return TrainResult(run_dir, 0, float("nan"), 0.0)
        return _fit_knn(config, load_training_images(train_source, config), run_dir, progress)
    done = read_json(run_dir / MODEL_META)["iterations"] if (run_dir / MODEL_META).is_file() else None
    if done is not None and done >= config.train.iterations:
        return TrainResult(run_dir, done, float("nan"), 0.0, started_at=done)  # finished: nothing to do
    if done is not None and not (run_dir / STATE_FILE).is_file():
        raise ResumeError(f"{run_dir}: finished at {done} iterations without a checkpoint to extend from")
    if not (run_dir / STATE_FILE).is_file() and world.main:
        warnings.warn(
            f"{run_dir}: no checkpoint was written before the run stopped (train.checkpoint_every = "
            f"{config.train.checkpoint_every}); training starts again from iteration 0",
            stacklevel=2,
        )
    images = load_training_images(train_source, config)
    return _run(config, images, run_dir, True, progress, eval_source, eval_split)


def _run(
    config: Config,
    images: TrainingImages,
    run_dir: Path,
    resuming: bool,
    progress: bool,
    eval_source: str | Path | None,
    eval_split: str,
    started: list[int] | None = None,
    calibration_request: dict | None = None,
) -> TrainResult:
    """Train (or continue) the run: build, restore, cache, iterate with checkpoints, select, save.
    Each finished iteration is appended to ``started``; a new run records ``calibration_request``.
    Under torchrun every rank runs this; rank 0 alone writes (see :mod:`.distributed`)."""
    tc = config.train
    prepare_process()
    seed_everything(tc.seed, tc.deterministic)
    with joined(tc.device) as (world, device):
        check_shardable(len(images.fit), tc.batch_size, world)
        world.barrier()  # every rank has checked the run directory before rank 0 writes into it
        if calibration_request is not None and world.main:
            record_calibration_request(run_dir, calibration_request)
        model, weights_note = build_model(config.model.arch, config.model.weights, config.model.scale_head)
        model.to(device).to(memory_format=memory_format(tc.channels_last))
        if world.distributed:
            use_global_batchnorm(model.bottleneck, world)
            use_global_batchnorm(model.decoder, world)
        optimizer = torch.optim.Adam(model.trainable_parameters(), lr=tc.lr, betas=tc.betas)
        synth = AnomalySynthesizer(config.noise, seed=tc.seed)
        monitors = Monitors.create(config, images, run_dir, eval_source, eval_split)
        start, seconds = 0, 0.0
        if resuming and (run_dir / STATE_FILE).is_file():
            start, seconds = restore_state(
                run_dir, model, optimizer, synth, images.source, images.fingerprint, world.size
            )
        if world.main:
            write_run_files(run_dir, config, images, device)
        monitors.open(start, model)
        dataset = ImageDataset(images.fit, config.model.image_size, data=config.data)
        cache = _build_cache(config, images, weights_note, device, run_dir, dataset, model, progress, world)
        ddp = wrap_trained(model, config.loss, world, device)
        loop = TrainingLoop(
            config,
            model,
            optimizer,
            synth,
            monitors,
            dataset,
            cache,
            run_dir,
            device,
            start,
            seconds,
            progress,
            world=world,
            ddp=ddp,
        )
        it = _iterate(loop, run_dir, images, model, optimizer, synth, world, started)
        loop.close()
        monitors.close()
        selection = monitors.select(model)
        if world.main:
            save_trained(
                run_dir,
                model,
                config,
                device,
                weights_note,
                images,
                dataset,
                it,
                selection,
                loop.clock.total,
                None,
                progress,
            )
        world.barrier()  # the model is saved when any rank returns
    return TrainResult(run_dir, it, loop.clock.loss, loop.clock.rate, loop.skipped.count, started_at=start)


def _build_cache(config, images, weights_note, device, run_dir, dataset, model, progress, world: World):
    """The training cache; with several ranks rank 0 builds (and writes) it first, the others then
    read its files and fill their own memory stores."""
    identity = _cache_identity(config, images, weights_note, device)
    cache = None
    if world.main:
        cache = build_training_cache(dataset, model, config, device, run_dir, identity, progress)
    world.barrier()
    if not world.main:
        cache = build_training_cache(dataset, model, config, device, run_dir, identity, False, writer=False)
    return cache


def _iterate(loop: TrainingLoop, run_dir: Path, images: TrainingImages, model, optimizer, synth, world: World, started):
    """The iterations, with checkpoints (rank 0) and a clean stop on SIGINT/SIGTERM; the last iteration."""
    tc = loop.config.train
    data, it = data_record(images.source, images.fingerprint), loop.batches.start
    with StopRequest() as stop_request:
        for it, stop in loop:
            if started is not None:
                started.append(it)
            interrupted = world.any(bool(stop_request.signum))  # every rank stops after the same iteration
            if world.main and (it % tc.checkpoint_every == 0 or it == tc.iterations or stop or interrupted):
                save_state(run_dir, model, optimizer, synth, it, data, loop.clock.total, world.size)
            if interrupted:
                request = calibration_request(run_dir)
                raise TrainingInterrupted(
                    f"interrupted at iteration {it}; a checkpoint was written: continue with "
                    f"scrd train --resume --out {run_dir} --data {images.source}"
                    + (calibration_flags(request) if request else "")
                )
            if stop:
                break
    return it


def record_calibration_request(run_dir: Path, request: dict) -> None:
    """Keep what ``--calibration`` asked for in the run (a relative data path made absolute)."""
    source = request["source"]
    source = source if source == "holdout" else str(Path(source).absolute())
    write_json(Path(run_dir) / CALIBRATION_REQUEST, {**request, "source": source})


def calibration_request(run_dir: str | Path) -> dict | None:
    """The calibration ``scrd train --calibration`` asked for in this run ({source, split,
    specificity}), or None."""
    path = Path(run_dir) / CALIBRATION_REQUEST
    return read_json(path) if path.is_file() else None


def calibration_flags(request: dict) -> str:
    """The command-line flags that ask for ``request`` (the defaults left out)."""
    flags = " --calibration" + ("" if request["source"] == "holdout" else f" {request['source']}")
    if request.get("split", "train") != "train":
        flags += f" --calibration-split {request['split']}"
    if request.get("specificity", 0.95) != 0.95:
        flags += f" --specificity {request['specificity']}"
    return flags


def _cache_identity(config: Config, images: TrainingImages, weights_note: str, device: torch.device) -> dict:
    """What a disk cache was built for: it is reused only when all of this is the same."""
    return {
        "data": data_record(images.source, images.fingerprint),
        "teacher": weights_note,
        "config": {k: config.to_dict()[k] for k in ("model", "data")},
        "n": len(images.fit),
        "precision": resolve_precision(config.train.precision, device),
    }


def write_run_files(run_dir: Path, config: Config, images: TrainingImages, device: torch.device) -> None:
    """Config, environment, the sample lists and the skipped images (everything checked by now)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / CONFIG_FILE)
    write_json(run_dir / ENV_FILE, environment_report(device))
    write_sample_list(run_dir / TRAIN_SAMPLES, images.fit)
    write_sample_list(run_dir / HOLDOUT_SAMPLES, images.holdout)
    if images.skipped:
        SkippedImages(run_dir / SKIPPED_FILE).add(images.skipped)


def save_trained(
    run_dir: Path,
    model,
    config: Config,
    device: torch.device,
    weights_note: str,
    images: TrainingImages,
    dataset: ImageDataset,
    iterations: int,
    selection: str,
    train_seconds: float,
    bank: torch.Tensor | None = None,
    progress: bool = False,
    record: dict | None = None,
) -> None:
    """Save the final model with its scoring head: the memory bank (the knn method's ``bank``, or the
    one model.memory_bank fits beside the student now) and the normal-image statistics its scoring
    reads; metadata of an earlier save is merged, except what the new weights void; ``record`` is
    added to the metadata."""
    old = read_json(run_dir / MODEL_META) if (run_dir / MODEL_META).is_file() else {}
    old.pop("calibration", None)  # calibrated for other weights (a run extended with more iterations)
    for voided in ("normal_statistics", "scoring_statistics", NORMAL_SCORES):  # of other weights
        old.pop(voided, None)
    bank_seconds = 0.0
    if config.model.memory_bank:
        from .fit_bank import fit_memory_bank

        started = time.perf_counter()
        bank = fit_memory_bank(config, images.fit, progress=progress)[1]
        bank_seconds = time.perf_counter() - started
    # in the scoring precision, as every later scoring of this model: its statistics, held-out scores and
    # threshold are then what predict, evaluate and the exported graph compare with
    detector = Detector.from_network(model.eval(), config, device, old, "auto", config.train.channels_last, bank)
    choice = {}
    if config.scoring.choose == "label_free":
        with phase("choosing the image score without labels (20 candidates, held-out normals)", progress):
            detector, choice = _choose_scoring(detector, images)
    # first: the scoring reads these statistics, and the display range scores images
    reference = images.holdout or images.fit
    with phase(f"measuring the scoring's normal statistics on {min(len(reference), 200)} normal images", progress):
        measured = measure_on_normals(detector, reference)
    # after the statistics (the scoring reads them): what a score's percentile among normals compares with
    with phase(f"scoring the {len(images.holdout)} held-out normal images", progress and bool(images.holdout)):
        held_out_scores = _held_out_scores(detector, images.holdout)
    detector.save(
        run_dir,
        {
            "iterations": iterations,
            "train_seconds": round(train_seconds + bank_seconds, 1),  # a memory bank is part of training
            **({"memory_bank_seconds": round(bank_seconds, 1)} if config.model.memory_bank else {}),
            "teacher_weights": weights_note,
            "selection": selection,
            "data": {
                **data_record(images.source, images.fingerprint),
                "n_train": len(images.fit),
                "n_holdout": len(images.holdout),
            },
            "provenance": environment_report(device),
            # the colour scale's anchors, from the held-out normals (images the model was not trained on)
            "display_range": normal_map_range(
                detector,
                ImageDataset(images.holdout, detector.image_size, data=config.data) if images.holdout else dataset,
            ),
            "scoring_statistics": {
                "images": "held-out normal training images" if images.holdout else "normal training images",
                "count": measured,
            },
            **held_out_scores,
            **choice,
            **(record or {}),
        },
    )


def _choose_scoring(detector: Detector, images: TrainingImages) -> tuple[Detector, dict]:
    """scoring.choose = label_free: the detector with the scoring chosen on the held-out normal images
    (:mod:`.scoring_choice`), and the record of the choice for model.json."""
    from .scoring_choice import choose_scoring

    if len(images.holdout) < 4:
        raise TrainingError(
            f"scoring.choose = label_free chooses the image score on held-out normal images, and this run holds "
            f"out {len(images.holdout)} (at least 4 are needed): raise train.holdout_fraction, or set "
            "scoring.choose: fixed"
        )
    dataset = ImageDataset(images.holdout, detector.image_size, data=detector.config.data)
    normals = torch.stack(
        [item["image"] for item in (dataset[i] for i in range(len(dataset))) if not item.get("skipped")]
    )
    scoring, record = choose_scoring(detector, normals, detector.config.train.seed)
    config = dataclasses.replace(detector.config, scoring=scoring)
    bank = detector.head.bank if detector.head.has_bank else None
    chosen = Detector.from_network(
        detector.network, config, detector.device, detector.metadata, detector.precision, detector.channels_last, bank
    )
    return chosen, {"scoring_choice": record}


def _held_out_scores(detector: Detector, holdout: list) -> dict:
    """``{normal_scores: ...}``: the image score of every readable held-out normal image (never trained
    on), sorted, for model.json; empty for a run without held-out images."""
    scores = [s for batch in normal_batches(detector, holdout, len(holdout)) for s in detector.score(batch).scores]
    return {NORMAL_SCORES: normal_scores_record([float(s) for s in scores])} if scores else {}
