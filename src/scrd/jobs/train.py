"""The training job: iteration-based SCRD training into a run directory, with exact resume.

``train`` starts a run, ``resume`` continues one from its checkpoint (or extends a finished one
with more iterations). Batches are a pure function of (seed, iteration) and every random
generator's state is checkpointed, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..data.dataset import ImageDataset, SkippedImages, make_loader
from ..data.transforms import normalize
from ..detector import Detector
from ..device import choose_device, memory_format, resolve_precision
from ..errors import ResumeError, TrainingError
from ..filenames import (
    CONFIG_FILE,
    ENV_FILE,
    HOLDOUT_SAMPLES,
    MODEL_META,
    SKIPPED_FILE,
    STATE_FILE,
    TRAIN_LOG,
    TRAIN_SAMPLES,
)
from ..method.loss_step import scrd_loss
from ..method.synthesis import AnomalySynthesizer
from ..model import build_model
from ..storage import read_json, write_json
from .csv_log import CsvLog
from .evaluate import EvalMonitor, normal_map_range, normal_statistics
from .rundir import environment_report, prepare_process, seed_everything
from .selection import LabelFreeMonitor
from .train_cache import TrainingCache, build_training_cache
from .train_state import data_record, restore_state, save_state
from .training_data import IterationBatches, TrainingImages, load_training_images, write_sample_list

LOG_FIELDS = [
    "iteration",
    "loss",
    "d_uv_1",
    "d_uv_2",
    "d_uv_3",
    "d_zv_1",
    "d_zv_2",
    "d_zv_3",
    "alpha_1",
    "alpha_2",
    "alpha_3",
    "alpha_max",
    "images_per_s",
    "elapsed_s",
]


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
) -> TrainResult:
    """Train SCRD on the normal images of ``train_source`` into the new run directory ``run_dir``.

    With ``train.eval_every > 0`` the labelled ``eval_split`` of ``eval_source`` is scored during
    training and logged (``eval_log.csv``); with ``train.selection = best_on_test`` the best-AUROC
    model is also kept, marked as selected on test labels. The final model is always the last
    iteration's. Nothing is written before the data, the teacher weights and the evaluation set
    have been checked, so a failed start leaves the directory as it was.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise TrainingError(
            f"{run_dir}: run directory is not empty; pass --resume to continue it or choose a new directory"
        )
    images = load_training_images(train_source, config)
    if config.model.method == "knn":
        return _fit_knn(config, images, run_dir, progress)
    return _run(config, images, run_dir, False, progress, eval_source, eval_split)


def _fit_knn(config: Config, images: TrainingImages, run_dir: Path, progress: bool) -> TrainResult:
    """model.method = knn: no iterations; the memory bank is fitted and saved like a trained model."""
    from .fit_memory_bank import fit_memory_bank

    prepare_process()
    seed_everything(config.train.seed, config.train.deterministic)
    clock = _Clock()
    model, weights_note, device = fit_memory_bank(config, images.fit, progress)
    _write_run_files(run_dir, config, images, device)
    dataset = ImageDataset(images.fit, config.model.image_size, data=config.data)
    _finish(
        run_dir,
        model,
        config,
        device,
        weights_note,
        images,
        dataset,
        0,
        "no selection: nothing is trained",
        clock.elapsed,
    )
    return TrainResult(run_dir, 0, float("nan"), 0.0)


def resume(
    run_dir: str | Path,
    train_source: str | Path,
    iterations: int | None = None,
    progress: bool = True,
    eval_source: str | Path | None = None,
    eval_split: str = "test",
) -> TrainResult:
    """Continue the run in ``run_dir`` from its checkpoint, on the same data (checked by fingerprint).

    ``iterations`` extends the run to that many iterations. A finished run asked for no more
    iterations is left exactly as it is (its model and calibration included).
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise ResumeError(f"{run_dir}: nothing to resume (no {CONFIG_FILE}); start it without --resume")
    config = Config.load(run_dir / CONFIG_FILE)
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
    if not (run_dir / STATE_FILE).is_file():
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
) -> TrainResult:
    tc = config.train
    prepare_process()
    seed_everything(tc.seed, tc.deterministic)
    device = choose_device(tc.device)
    model, weights_note = build_model(config.model.arch, config.model.weights)
    model.to(device).to(memory_format=memory_format(tc.channels_last))
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=tc.lr, betas=tc.betas)
    synth = AnomalySynthesizer(config.noise, seed=tc.seed)
    monitors = _Monitors.create(config, images, run_dir, eval_source, eval_split)
    start, seconds = 0, 0.0
    if resuming and (run_dir / STATE_FILE).is_file():
        start, seconds = restore_state(run_dir, model, optimizer, synth, images.source, images.fingerprint)
    _write_run_files(run_dir, config, images, device)
    monitors.open(start, model)
    dataset = ImageDataset(images.fit, config.model.image_size, data=config.data)
    cache = build_training_cache(
        dataset, model, config, device, run_dir, _cache_identity(config, images, weights_note, device), progress
    )
    batches = IterationBatches(len(dataset), tc.batch_size, tc.seed, start, tc.iterations)
    log, skipped = CsvLog(run_dir / TRAIN_LOG, LOG_FIELDS, keep_through=start), SkippedImages(run_dir / SKIPPED_FILE)
    bar, clock, data = (
        _progress(progress, start, tc.iterations),
        _Clock(seconds),
        data_record(images.source, images.fingerprint),
    )
    loss, it = float("nan"), start
    model.train()
    for it, (images01, teacher, skipped_now) in enumerate(_batches(dataset, cache, batches, config, device), start + 1):
        if (it - 1) % batches.per_epoch == 0:
            model.train()  # the released loop re-enters train mode only at each epoch start
        skipped.add(skipped_now)
        count = len(images01) if images01 is not None else len(teacher[0]) if teacher is not None else 0
        if count == 0:  # every image of this batch was unreadable and skipped
            continue
        loss, terms, alpha = _train_step(model, optimizer, synth, images01, teacher, config, it, run_dir)
        clock.count(count)
        stop = _after_step(it, loss, terms, alpha, clock, config, log, bar, monitors, model, device)
        if it % tc.checkpoint_every == 0 or it == tc.iterations or stop:
            save_state(run_dir, model, optimizer, synth, it, data, clock.total)
        if stop:
            break
    for closing in (bar, log, monitors):
        if closing is not None:
            closing.close()
    selection = monitors.select(model)
    _finish(run_dir, model, config, device, weights_note, images, dataset, it, selection, clock.total)
    return TrainResult(run_dir, it, loss, clock.rate, skipped.count, started_at=start)


def _cache_identity(config: Config, images: TrainingImages, weights_note: str, device: torch.device) -> dict:
    """What a disk cache was built for: it is reused only when all of this is the same."""
    return {
        "data": data_record(images.source, images.fingerprint),
        "teacher": weights_note,
        "config": {k: config.to_dict()[k] for k in ("model", "data")},
        "n": len(images.fit),
        "precision": resolve_precision(config.train.precision, device),
    }


class _Monitors:
    """What watches training: evaluation on a labelled set (eval_every) and the label-free criterion
    (select_every), and which model the run keeps."""

    def __init__(self, config: Config, evaluation: EvalMonitor | None, label_free: LabelFreeMonitor | None) -> None:
        self.config, self.evaluation, self.label_free = config, evaluation, label_free

    @classmethod
    def create(cls, config: Config, images: TrainingImages, run_dir: Path, eval_source, eval_split: str) -> _Monitors:
        tc = config.train
        evaluation = EvalMonitor.create(config, eval_source, eval_split, run_dir) if tc.eval_every else None
        label_free = LabelFreeMonitor(config, images.holdout, run_dir) if tc.select_every else None
        return cls(config, evaluation, label_free)

    def open(self, start: int, model) -> None:
        if self.evaluation is not None:
            self.evaluation.open(start)
        if self.label_free is not None:
            self.label_free.open(start, model)

    def after(self, it: int, model, device: torch.device) -> bool:
        """Evaluate what is due at iteration ``it``; True when training should stop early."""
        tc, stop = self.config.train, False
        if self.label_free is not None and it % tc.select_every == 0:
            stop = self.label_free.evaluate(model, device, it)
        if self.evaluation is not None and it % tc.eval_every == 0:
            self.evaluation.evaluate(model, device, it)
        return stop

    def select(self, model) -> str:
        """Load the selected weights into ``model`` (train.selection = label_free); returns the note."""
        if self.config.train.selection == "label_free" and self.label_free.best_state is not None:
            model.load_state_dict(self.label_free.best_state)
            return self.label_free.selection_note()
        return "final checkpoint (never selected on test labels)"

    def close(self) -> None:
        for monitor in (self.evaluation, self.label_free):
            if monitor is not None:
                monitor.close()


def _batches(
    dataset: ImageDataset, cache: TrainingCache | None, batches: IterationBatches, config: Config, device: torch.device
):
    """(images01 or None, clean teacher features or None, skipped images) per iteration: from the
    training cache when it holds what a step needs, else decoded by a DataLoader."""
    tc = config.train
    if cache is not None and (cache.images is not None or config.loss.form == "rd4ad"):
        for indices in batches:
            images01, teacher = cache.batch(indices, device, tc.channels_last)
            yield images01, teacher, []
        return
    loader = make_loader(dataset, tc.batch_size, tc.num_workers, device.type == "cuda", batch_sampler=batches)
    for indices, batch in zip(batches, loader):
        teacher = None
        if cache is not None and batch["image"].shape[0] == len(indices):  # features cached, images not
            teacher = cache.batch(indices, device, tc.channels_last)[1]
        yield batch["image"].to(device, non_blocking=True), teacher, batch["skipped"]


def _train_step(
    model,
    optimizer,
    synth: AnomalySynthesizer,
    images01: torch.Tensor | None,
    teacher: list[torch.Tensor] | None,
    config: Config,
    it: int,
    run_dir: Path,
):
    """One optimiser step on a clean batch and its noisy twin; returns (loss, terms, α)."""
    tc = config.train
    fmt = memory_format(tc.channels_last)
    device = next(model.parameters()).device
    noisy = patches = None
    if config.loss.form != "rd4ad":
        noisy01, patches = synth(images01)
        noisy = normalize(noisy01).contiguous(memory_format=fmt)
    clean = normalize(images01).contiguous(memory_format=fmt) if teacher is None else None
    terms, out = scrd_loss(
        model,
        clean,
        noisy,
        config.loss,
        noisy_branch=tc.noisy_branch,
        teacher=teacher,
        precision=resolve_precision(tc.precision, device),
        patches=patches,
    )
    loss = terms.loss.float()
    if not torch.isfinite(loss):
        raise TrainingError(
            f"iteration {it}: the loss is {loss.item()}; training stopped. The last good "
            f"checkpoint is {run_dir / STATE_FILE} (if one was written)"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item(), terms, out.alpha.detach().float()


def _after_step(
    it: int,
    loss: float,
    terms,
    alpha: torch.Tensor,
    clock: _Clock,
    config: Config,
    log: CsvLog,
    bar,
    monitors: _Monitors,
    model,
    device: torch.device,
) -> bool:
    """Log, progress bar and evaluations after iteration ``it``; True when training should stop."""
    tc = config.train
    if it % tc.log_every == 0 or it == tc.iterations:
        log.write(_log_row(it, loss, terms, alpha, clock))
    if bar is not None:
        bar.set_postfix(
            loss=f"{loss:.4f}", alpha="/".join(f"{v:.2f}" for v in alpha.mean(0).tolist()), img_s=f"{clock.rate:.1f}"
        )
        bar.update(1)
    stop = monitors.after(it, model, device)
    evaluated = (tc.eval_every and it % tc.eval_every == 0) or (tc.select_every and it % tc.select_every == 0)
    if evaluated and not (tc.bn_eval_after_validation and tc.eval_every and it % tc.eval_every == 0):
        model.train()  # else: the released code's slip, eval-mode BatchNorm until the epoch ends
    return stop


class _Clock:
    """Images/s of this session, and the training time of the whole run (resumed sessions added)."""

    def __init__(self, earlier_seconds: float = 0.0) -> None:
        self.t0, self.seen, self.earlier = time.perf_counter(), 0, earlier_seconds

    @property
    def total(self) -> float:
        return self.earlier + self.elapsed

    def count(self, images: int) -> None:
        self.seen += images

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @property
    def rate(self) -> float:
        return self.seen / max(self.elapsed, 1e-9)


def _log_row(it: int, loss: float, terms, alpha: torch.Tensor, clock: _Clock) -> dict[str, Any]:
    row: dict[str, Any] = {
        "iteration": it,
        "loss": f"{loss:.6g}",
        "images_per_s": f"{clock.rate:.2f}",
        "elapsed_s": f"{clock.elapsed:.1f}",
    }
    d_uv = terms.d_uv.float().mean(0).tolist()
    d_zv = terms.d_zv.float().mean(0).tolist() if terms.d_zv is not None else [math.nan] * 3
    for k in range(3):
        row[f"d_uv_{k + 1}"] = f"{d_uv[k]:.6g}"
        row[f"d_zv_{k + 1}"] = f"{d_zv[k]:.6g}"
        row[f"alpha_{k + 1}"] = f"{alpha[:, k].mean().item():.4f}"
    row["alpha_max"] = f"{alpha.max(1).values.mean().item():.4f}"  # 1.0 means α has collapsed to one scale
    return row


def _progress(enabled: bool, start: int, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="it", dynamic_ncols=True)


def _write_run_files(run_dir: Path, config: Config, images: TrainingImages, device: torch.device) -> None:
    """Config, environment, the sample lists and the skipped images (everything checked by now)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / CONFIG_FILE)
    write_json(run_dir / ENV_FILE, environment_report(device))
    write_sample_list(run_dir / TRAIN_SAMPLES, images.fit)
    write_sample_list(run_dir / HOLDOUT_SAMPLES, images.holdout)
    if images.skipped:
        SkippedImages(run_dir / SKIPPED_FILE).add(images.skipped)


def _finish(
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
) -> None:
    """Save the final model; metadata of an earlier save is merged, except what the new weights void."""
    old = read_json(run_dir / MODEL_META) if (run_dir / MODEL_META).is_file() else {}
    old.pop("calibration", None)  # calibrated for other weights (a run extended with more iterations)
    detector = Detector.for_training(model.eval(), config, device, old)
    detector.save(
        run_dir,
        {
            "iterations": iterations,
            "train_seconds": round(train_seconds, 1),
            "teacher_weights": weights_note,
            "selection": selection,
            "data": {
                **data_record(images.source, images.fingerprint),
                "n_train": len(images.fit),
                "n_holdout": len(images.holdout),
            },
            "display_range": normal_map_range(detector, dataset),
            "normal_statistics": {
                **normal_statistics(detector, images.holdout or images.fit),
                "images": "held-out normal training images" if images.holdout else "normal training images",
            },
        },
    )
