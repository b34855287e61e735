"""One training iteration and its bookkeeping: the batches (from the training cache or a
DataLoader), the optimiser step, the training log, the progress bar and the monitors."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from ..anomalies.synthesis import AnomalySynthesizer
from ..config import Config, uses_synthetic_anomalies
from ..data.dataset import ImageDataset, SkippedImages, make_loader
from ..data.transforms import normalize
from ..device import memory_format, resolve_precision
from ..errors import TrainingError
from ..filenames import SKIPPED_FILE, STATE_FILE, TRAIN_LOG
from ..losses.step import scrd_loss
from ..runs.csv_log import CsvLog
from ..runs.run_logs import LOG_FIELDS
from .cache import TrainingCache
from .data import IterationBatches, ShardBatches
from .distributed import SINGLE, World, check_gradients
from .lr_schedule import learning_rate
from .monitors import Monitors


def batches_of(
    dataset: ImageDataset,
    cache: TrainingCache | None,
    batches: IterationBatches | ShardBatches,
    config: Config,
    device: torch.device,
):
    """(images01 or None, clean teacher features or None, skipped images) per iteration: from the
    training cache when it holds what a step needs, else decoded by a DataLoader."""
    tc = config.train
    if cache is not None and (cache.images is not None or not uses_synthetic_anomalies(config.loss)):
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


def train_step(
    model,
    optimizer,
    synth: AnomalySynthesizer,
    images01: torch.Tensor | None,
    teacher: list[torch.Tensor] | None,
    config: Config,
    it: int,
    run_dir: Path,
    world: World = SINGLE,
    total: int = 0,
    ddp=None,
):
    """One optimiser step on a clean batch and its noisy twin; returns (loss, terms, α).

    In a multi-process run the batch is this rank's shard of a global batch of ``total``; the
    loss, its terms and α are those of the global batch, and ``ddp`` (the DDP wrapper of the
    trained parameters) runs the step so that it averages the gradients.
    """
    tc = config.train
    fmt = memory_format(tc.channels_last)
    device = next(model.parameters()).device
    start = world.span(total)[0] if world.distributed else 0
    noisy = patches = None
    if uses_synthetic_anomalies(config.loss):
        noisy01, patches = synth(images01, (start, total)) if world.distributed else synth(images01)
        noisy = normalize(noisy01).contiguous(memory_format=fmt)
    clean = normalize(images01).contiguous(memory_format=fmt) if teacher is None else None

    def step():
        return scrd_loss(
            model,
            clean,
            noisy,
            config.loss,
            noisy_branch=tc.noisy_branch,
            teacher=teacher,
            precision=resolve_precision(tc.precision, device),
            patches=patches,
            gather=(lambda rows: world.gather(rows, total)) if world.distributed else None,
        )

    terms, out = ddp(step) if ddp is not None else step()
    loss = terms.loss.float()
    if not torch.isfinite(loss):
        raise TrainingError(
            f"iteration {it}: the loss is {loss.item()}; training stopped. The last good "
            f"checkpoint is {run_dir / STATE_FILE} (if one was written)"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(tc.lr, tc.lr_schedule, it, tc.iterations, tc.lr_warmup)
    optimizer.step()
    alpha = out.alpha.detach().float()
    return loss.item(), terms, world.gather(alpha, total) if world.distributed else alpha


def after_step(
    it: int,
    loss: float,
    terms,
    alpha: torch.Tensor,
    clock: Clock,
    config: Config,
    log: CsvLog,
    bar,
    monitors: Monitors,
    model,
    device: torch.device,
) -> bool:
    """Log, progress bar and evaluations after iteration ``it``; True when training should stop."""
    tc = config.train
    if log is not None and (it % tc.log_every == 0 or it == tc.iterations):
        log.write(log_row(it, loss, terms, alpha, clock))
    if bar is not None:
        head_alpha = "/".join(f"{v:.2f}" for v in alpha.mean(0).tolist())  # the learned scale head's α
        bar.set_postfix({"loss": f"{loss:.4f}", "scale-head α": head_alpha, "img/s": f"{clock.rate:.1f}"})
        bar.update(1)
    stop = monitors.after(it, model, device)
    evaluated = (tc.eval_every and it % tc.eval_every == 0) or (tc.select_every and it % tc.select_every == 0)
    if evaluated and not (tc.bn_eval_after_validation and tc.eval_every and it % tc.eval_every == 0):
        model.train()  # else: the released code's slip, eval-mode BatchNorm until the epoch ends
    return stop


class Clock:
    """Images/s of this session, and the training time of the whole run (resumed sessions added)."""

    def __init__(self, earlier_seconds: float = 0.0) -> None:
        self.t0, self.seen, self.earlier = time.perf_counter(), 0, earlier_seconds
        self.loss = float("nan")  # of the last iteration

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


def log_row(it: int, loss: float, terms, alpha: torch.Tensor, clock: Clock) -> dict[str, Any]:
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


def progress_bar(enabled: bool, start: int, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="it", dynamic_ncols=True)


class TrainingLoop:
    """Iterations [start, train.iterations) of a run: ``for it, stop in loop`` yields after each
    iteration's step and bookkeeping; ``stop`` is the monitors' early-stopping verdict."""

    def __init__(
        self,
        config: Config,
        model,
        optimizer,
        synth: AnomalySynthesizer,
        monitors: Monitors,
        dataset: ImageDataset,
        cache: TrainingCache | None,
        run_dir: Path,
        device: torch.device,
        start: int,
        earlier_seconds: float,
        progress: bool,
        world: World = SINGLE,
        ddp=None,
    ) -> None:
        tc = config.train
        self.config, self.model, self.optimizer, self.synth, self.monitors = config, model, optimizer, synth, monitors
        self.dataset, self.cache, self.run_dir, self.device = dataset, cache, run_dir, device
        self.world, self.ddp = world, ddp
        self.batches = IterationBatches(len(dataset), tc.batch_size, tc.seed, start, tc.iterations)
        # Rank 0 alone writes: the log, the progress bar (the skipped list only grows in one process).
        self.log = CsvLog(run_dir / TRAIN_LOG, LOG_FIELDS, keep_through=start) if world.main else None
        self.skipped = SkippedImages(run_dir / SKIPPED_FILE)
        self.bar = progress_bar(progress and world.main, start, tc.iterations)
        self.clock = Clock(earlier_seconds)

    def __iter__(self):
        mine = ShardBatches(self.batches, self.world.span) if self.world.distributed else self.batches
        batches = batches_of(self.dataset, self.cache, mine, self.config, self.device)
        self.model.train()
        for it, (images01, teacher, skipped_now) in enumerate(batches, self.batches.start + 1):
            if (it - 1) % self.batches.per_epoch == 0:
                self.model.train()  # the released loop re-enters train mode only at each epoch start
            if skipped_now and self.world.distributed:  # the shards would no longer tile the batch
                raise TrainingError(
                    f"{skipped_now[0][0]}: became unreadable during a multi-process run: {skipped_now[0][1]}; "
                    f"fix or remove it and resume"
                )
            self.skipped.add(skipped_now)
            count = len(images01) if images01 is not None else len(teacher[0]) if teacher is not None else 0
            if count == 0:  # every image of this batch was unreadable and skipped
                continue
            total = self.batches.size(it) if self.world.distributed else count
            loss, terms, alpha = train_step(
                self.model,
                self.optimizer,
                self.synth,
                images01,
                teacher,
                self.config,
                it,
                self.run_dir,
                self.world,
                total,
                self.ddp,
            )
            if self.ddp is not None and it == self.batches.start + 1:
                check_gradients(self.model, self.ddp)  # once: DDP must know every parameter trained
            self.clock.count(total)
            self.clock.loss = loss
            yield (
                it,
                after_step(
                    it,
                    loss,
                    terms,
                    alpha,
                    self.clock,
                    self.config,
                    self.log,
                    self.bar,
                    self.monitors,
                    self.model,
                    self.device,
                ),
            )

    def close(self) -> None:
        for closing in (self.bar, self.log):
            if closing is not None:
                closing.close()
