"""The training job: iteration-based SCRD training with exact resume.

Batches are a pure function of (seed, iteration) (see ``IterationBatches``) and every random
generator's state is checkpointed, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from .checkpoint import CheckpointError, atomic_write, load_tensors, save_tensors, write_json
from .config import Config
from .data import ImageDataset, SkippedImages, load_samples, normalize, unreadable_items
from .detector import Detector
from .model import build_model
from .noise import AnomalySynthesizer
from .runs import (
    CONFIG_FILE,
    ENV_FILE,
    LOG_FILE,
    SKIPPED_FILE,
    STATE_FILE,
    STATE_META,
    choose_device,
    environment_report,
    seed_everything,
)
from .step import scrd_loss

LOG_FIELDS = ["iteration", "loss", "d_uv_1", "d_uv_2", "d_uv_3", "d_zv_1", "d_zv_2", "d_zv_3",
              "alpha_1", "alpha_2", "alpha_3", "alpha_max", "images_per_s", "elapsed_s"]


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on (bad data, non-finite loss, bad run directory)."""


class IterationBatches(torch.utils.data.Sampler):
    """Index batches for iterations [start, stop): epoch e is a permutation seeded by (seed, e).

    Like the released code, an epoch's last batch may be smaller (no drop_last).
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int) -> None:
        self.n, self.batch_size, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self.per_epoch = math.ceil(n / batch_size)

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[list[int]]:
        epoch, perm = -1, None
        for it in range(self.start, self.stop):
            e, pos = divmod(it, self.per_epoch)
            if e != epoch:
                g = torch.Generator().manual_seed(self.seed * 100_003 + e)
                perm, epoch = torch.randperm(self.n, generator=g).tolist(), e
            yield perm[pos * self.batch_size:(pos + 1) * self.batch_size]


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    final_loss: float
    images_per_s: float
    skipped_images: int = 0  # unreadable images skipped (data.on_bad_image = skip), listed in the run


def _synthesizer(config: Config) -> AnomalySynthesizer:
    n = config.noise
    return AnomalySynthesizer(kind=n.kind, field=n.field, strength=n.strength, octaves=n.octaves,
                              persistence=n.persistence, frequency=n.frequency, min_size=n.min_size,
                              max_size=n.max_size, seed=config.train.seed, field_seed=n.field_seed,
                              rng=n.patch_rng, gaussian_std=n.gaussian_std)


def _prepare_run_dir(run_dir: Path, config: Config, resume: bool) -> Config:
    if resume:
        if not (run_dir / CONFIG_FILE).is_file():
            raise TrainingError(f"{run_dir}: nothing to resume (no {CONFIG_FILE})")
        return Config.load(run_dir / CONFIG_FILE)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise TrainingError(f"{run_dir}: run directory is not empty; pass --resume to continue it "
                            "or choose a new directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / CONFIG_FILE)
    return config


def _check_training_samples(samples: list, source: str) -> None:
    abnormal = [s for s in samples if s.label == 1]
    if abnormal:
        raise TrainingError(f"{source}: the training split must hold normal images only; "
                            f"{len(abnormal)} are labelled abnormal, e.g. {abnormal[0].path}")


def train(config: Config, train_source: str | Path, run_dir: str | Path, resume: bool = False,
          progress: bool = True, eval_source: str | Path | None = None, eval_split: str = "test",
          ) -> TrainResult:
    """Train SCRD on the normal images of ``train_source``; write everything into ``run_dir``.

    With ``train.eval_every > 0`` the labelled ``eval_split`` of ``eval_source`` is scored during
    training (as the released code does with its test set) and logged to ``eval_log.csv``; with
    ``train.selection = best_on_test`` the best-AUROC model is also kept in ``best_on_test/``,
    marked as selected on test labels. The final model is always the last iteration's.
    """
    run_dir = Path(run_dir)
    config = _prepare_run_dir(run_dir, config, resume)
    tc = config.train
    seed_everything(tc.seed, tc.deterministic)
    device = choose_device(tc.device)
    write_json(run_dir / ENV_FILE, environment_report(device))

    samples = load_samples(str(train_source), "train", config.data)
    _check_training_samples(samples, str(train_source))
    monitor = _EvalMonitor.create(config, eval_source, eval_split, run_dir) if tc.eval_every else None
    dataset = ImageDataset(samples, config.model.image_size, data=config.data)
    skipped = SkippedImages(run_dir / SKIPPED_FILE)
    bad = unreadable_items(dataset, tc.num_workers)  # fail (or skip) now, not hours into training
    if bad:
        skipped.add([(path, reason) for _, path, reason in bad])
        drop = {index for index, _, _ in bad}
        samples = [s for i, s in enumerate(samples) if i not in drop]
        if not samples:
            raise TrainingError(f"{train_source}: no readable training image; see {run_dir / SKIPPED_FILE}")
        dataset = ImageDataset(samples, config.model.image_size, data=config.data)

    model, weights_note = build_model(config.model.arch, config.model.weights)
    model.to(device)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=tc.lr, betas=tc.betas)
    synth = _synthesizer(config)
    start = 0
    if resume and (run_dir / STATE_FILE).is_file():
        start = _restore(run_dir, model, optimizer, synth, device)
    if start >= tc.iterations:
        return _finish(run_dir, model, config, device, weights_note, start, float("nan"), 0.0, dataset)

    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=IterationBatches(len(dataset), tc.batch_size, tc.seed, start, tc.iterations),
        num_workers=tc.num_workers, pin_memory=device.type == "cuda", collate_fn=dataset.collate)
    use_bf16 = tc.bf16 and device.type == "cuda"
    needs_noise = config.loss.form != "rd4ad"
    log = _Log(run_dir / LOG_FILE, start)
    bar = _progress(progress, start, tc.iterations)
    model.train()
    seen, t0, loss_value, rate = 0, time.perf_counter(), float("nan"), 0.0
    per_epoch = math.ceil(len(dataset) / tc.batch_size)
    for it, batch in enumerate(loader, start=start + 1):
        if (it - 1) % per_epoch == 0:
            model.train()  # the released loop re-enters train mode only at each epoch start
        skipped.add(batch["skipped"])
        if batch["image"].shape[0] == 0:  # every image of this batch was unreadable and skipped
            continue
        images01 = batch["image"].to(device, non_blocking=True)
        noisy = normalize(synth(images01)[0]) if needs_noise else None
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            terms, out = scrd_loss(model, normalize(images01), noisy, config.loss, tc.noisy_branch)
        loss = terms.loss.float()
        if not torch.isfinite(loss):
            raise TrainingError(f"iteration {it}: the loss is {loss.item()}; training stopped. The last "
                                f"good checkpoint is {run_dir / STATE_FILE} (if one was written)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        seen += images01.shape[0]
        loss_value = loss.item()
        rate = seen / max(time.perf_counter() - t0, 1e-9)
        if it % tc.log_every == 0 or it == tc.iterations:
            _log_row(log, it, loss_value, terms, out.alpha.detach(), rate, time.perf_counter() - t0)
        if bar is not None:
            a = out.alpha.detach().float().mean(0).tolist()
            bar.set_postfix(loss=f"{loss_value:.4f}", alpha="/".join(f"{v:.2f}" for v in a),
                            img_s=f"{rate:.1f}")
            bar.update(1)
        if monitor is not None and it % tc.eval_every == 0:
            monitor.evaluate(model, device, it)
            if not tc.bn_eval_after_validation:
                model.train()  # else: the released code's slip, eval-mode BatchNorm until the epoch ends
        if it % tc.checkpoint_every == 0 and it < tc.iterations:
            _save_state(run_dir, model, optimizer, synth, it)
    if bar is not None:
        bar.close()
    log.close()
    result = _finish(run_dir, model, config, device, weights_note, tc.iterations, loss_value, rate, dataset)
    result.skipped_images = skipped.count
    return result


# --------------------------------------------------------------------------- helpers

class _EvalMonitor:
    """Scores a labelled set during training; keeps the best-AUROC model when asked to."""

    FIELDS = ["iteration", "auroc", "ap", "oracle_f1", "oracle_acc"]

    def __init__(self, config: Config, samples: list, run_dir: Path) -> None:
        self.config, self.samples, self.run_dir = config, samples, run_dir
        self.path = run_dir / "eval_log.csv"
        self.best = -1.0
        if self.path.is_file():  # resuming: the best so far is in the log
            with open(self.path, newline="") as f:
                self.best = max((float(r["auroc"]) for r in csv.DictReader(f)), default=-1.0)

    @classmethod
    def create(cls, config: Config, source: str | Path | None, split: str, run_dir: Path) -> "_EvalMonitor":
        if source is None:
            raise TrainingError("train.eval_every > 0 needs an evaluation set (--eval-data)")
        samples = load_samples(str(source), split, config.data)
        if {s.label for s in samples} != {0, 1}:
            raise TrainingError(f"{source} ({split}): evaluation during training needs normal and abnormal labels")
        return cls(config, samples, run_dir)

    def evaluate(self, model, device: torch.device, iteration: int) -> float:
        from .evaluation import score_samples
        from .metrics import oracle_metrics

        detector = Detector(model, self.config, device)
        scored = score_samples(detector, self.samples, self.config.train.batch_size)
        m = oracle_metrics(scored.labels, scored.scores)
        new = not self.path.is_file()
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(self.FIELDS)
            writer.writerow([iteration, f"{m['auroc']:.6f}", f"{m['ap']:.6f}", f"{m['f1']:.6f}", f"{m['acc']:.6f}"])
        if self.config.train.selection == "best_on_test" and m["auroc"] >= self.best:
            self.best = m["auroc"]
            detector.save(self.run_dir / "best_on_test", {
                "iterations": iteration,
                "selection": f"best test AUROC ({m['auroc']:.4f}) at iteration {iteration}: SELECTED ON "
                             "TEST LABELS, so its test metrics are optimistic"})
        return m["auroc"]


def _progress(enabled: bool, start: int, total: int):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=start, desc="train", unit="it", dynamic_ncols=True)


class _Log:
    """The CSV training log. On resume, rows past the checkpoint (written after it, before the
    kill) are dropped by an atomic rewrite, so no iteration is ever listed twice."""

    def __init__(self, path: Path, start: int) -> None:
        rows = []
        if path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= start]

        def rewrite(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(path, rewrite)
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=LOG_FIELDS)

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _log_row(log: _Log, it: int, loss: float, terms, alpha: torch.Tensor, rate: float, elapsed: float) -> None:
    row: dict[str, Any] = {"iteration": it, "loss": f"{loss:.6g}", "images_per_s": f"{rate:.2f}",
                           "elapsed_s": f"{elapsed:.1f}"}
    d_uv = terms.d_uv.float().mean(0).tolist()
    d_zv = terms.d_zv.float().mean(0).tolist() if terms.d_zv is not None else [float("nan")] * 3
    a = alpha.float()
    for k in range(3):
        row[f"d_uv_{k + 1}"] = f"{d_uv[k]:.6g}"
        row[f"d_zv_{k + 1}"] = f"{d_zv[k]:.6g}"
        row[f"alpha_{k + 1}"] = f"{a[:, k].mean().item():.4f}"
    row["alpha_max"] = f"{a.max(1).values.mean().item():.4f}"  # 1.0 means α has collapsed to one scale
    log.write(row)


def _save_state(run_dir: Path, model, optimizer, synth: AnomalySynthesizer, iteration: int) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "iteration": iteration,
        "torch_rng": torch.get_rng_state(),
        "noise_rng": json.dumps(synth.state_dict()),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    save_tensors(run_dir / STATE_FILE, state)
    write_json(run_dir / STATE_META, {"iteration": iteration})


def _restore(run_dir: Path, model, optimizer, synth: AnomalySynthesizer, device: torch.device) -> int:
    state = load_tensors(run_dir / STATE_FILE)
    try:
        model.load_state_dict(state["model"], strict=True)
        optimizer.load_state_dict(state["optimizer"])
        synth.load_state_dict(json.loads(state["noise_rng"]))
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{run_dir / STATE_FILE}: cannot resume from it: {exc}") from exc
    return int(state["iteration"])


def _finish(run_dir: Path, model, config: Config, device: torch.device, weights_note: str,
            iterations: int, loss: float, rate: float, dataset: ImageDataset) -> TrainResult:
    detector = Detector(model.eval(), config, device)
    detector.save(run_dir, {"iterations": iterations, "teacher_weights": weights_note,
                            "selection": "final checkpoint (never selected on test labels)",
                            "display_range": _normal_map_range(detector, dataset)})
    return TrainResult(run_dir, iterations, loss, rate)


def _normal_map_range(detector: Detector, dataset: ImageDataset, count: int = 32) -> list[float]:
    """Map values on training (normal) images: a fixed colour scale for heat-map overlays, so a
    normal image does not look alarming just because its own maximum fills the scale."""
    items = (dataset[i] for i in range(len(dataset)))
    images = [item["image"] for item in itertools.islice((i for i in items if not i.get("skipped")), count)]
    if not images:
        return [0.0, 1.0]
    images = torch.stack(images)
    maps = torch.cat([detector.score(images[i:i + 8]).maps for i in range(0, len(images), 8)])
    return [float(maps.min()), float(torch.quantile(maps.flatten()[::7], 0.999))]
