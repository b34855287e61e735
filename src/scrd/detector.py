"""A trained detector ready to score images, and its saved format.

A saved model is two files in one folder: ``model.pt``, a state dict loaded with
``weights_only=True`` (it cannot run code), and ``model.json``, its config, teacher weights,
calibration, normal-image statistics and provenance. The model is SCRD (``model.method = scrd``)
or the memory-bank reference (``knn``); both give a map per image and a score from it. An SCRD model
fitted with ``model.memory_bank`` also holds a bank of teacher patches (``memory_bank`` in model.pt),
whose map is added to the student's (:mod:`scrd.scoring.bank_fusion`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from . import __version__
from .config import Config, ScoringConfig
from .data.dataset import ImageDataset, load_image, make_loader
from .data.layouts import collect_samples
from .data.readers import is_image_file
from .data.transforms import normalize
from .device import autocast, choose_device, memory_format, resolve_precision
from .errors import CheckpointError
from .filenames import CHECKPOINT_FORMAT, MODEL_FILE, MODEL_META, STATE_FILE
from .model import SCRD
from .scoring.bank import PatchMemoryBank, bank_distances, patch_vectors
from .scoring.bank_fusion import add_bank_map, bank_statistics_key
from .scoring.maps import combine_scales, gaussian_smooth, image_score, standardize_scales, upsampled_scale_maps
from .scoring.scale_fusion import fuse_on_normal_scale, per_scale_scores, scale_score_statistics, statistics_key
from .storage import load_tensors, read_json, save_tensors, write_json

REDUCTIONS = ("mean", "max", "top_k")


def decision_of(score: float, threshold: float | None) -> str | None:
    """The decision rule everywhere: 'abnormal' at or above the threshold, else 'normal'; None for an
    uncalibrated model."""
    if threshold is None:
        return None
    return "abnormal" if score >= threshold else "normal"


def resolve_model_path(path: str | Path) -> Path:
    """A run directory or a ``model.pt`` file -> the model's state-dict file (with its model.json)."""
    path = Path(path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file() and (path / STATE_FILE).is_file():
            raise CheckpointError(
                f"{path}: the run has not finished (no {MODEL_FILE}, only {STATE_FILE}); "
                f"finish it with scrd train --resume --out {path} --data DATA"
            )
        path = path / MODEL_FILE
    elif path.is_file() and path.name != MODEL_FILE:
        if path.parent.name == Path(STATE_FILE).parent.name:
            raise CheckpointError(
                f"{path}: is a training checkpoint, not a model; pass the run directory "
                f"{path.parent.parent} (resume the run first if it has not finished)"
            )
        if is_image_file(path):
            raise CheckpointError(f"{path}: is an image; --model expects a run directory or its {MODEL_FILE}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no trained model here (expected a run directory or a {MODEL_FILE} file)")
    if not (path.parent / MODEL_META).is_file():
        raise CheckpointError(
            f"{path}: its {MODEL_META} is not beside it in {path.parent}; a model is the two "
            f"files {MODEL_FILE} and {MODEL_META} of one folder"
        )
    return path


def build_detector_model(config: Config, metadata: dict[str, Any] | None = None) -> torch.nn.Module:
    """An empty network of the config's method (weights come from a state dict or training)."""
    if config.model.method == "knn":
        bank = (metadata or {}).get("bank_shape", [0, 0])
        return PatchMemoryBank(config.model.arch, config.knn.scales, config.knn.pool, bank[0], bank[1])
    return SCRD(config.model.arch, config.model.scale_head)


@dataclass
class Scored:
    scores: torch.Tensor  # [B] float64, on CPU: the configured image score
    maps: torch.Tensor  # [B, H, W] float32, on CPU: the smoothed anomaly maps
    alpha: torch.Tensor  # [B, 3] scale weights, on CPU (NaN for the knn method)
    by_reduction: dict[str, torch.Tensor]  # the same maps reduced by mean, max and top_k
    # [B] the largest of the K weights, averaged over the image's locations (a global α: its largest weight)
    alpha_peak: torch.Tensor | None = None
    # [B, K] per scoring variant whose scale fusion weighs each image (normal_softmax)
    variant_alpha: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class FileScore:
    path: str  # the file (plus #slice=K for one slice of a volume)
    score: float
    decision: str | None  # "abnormal" / "normal" at the model's threshold, None without one
    map: torch.Tensor  # [S, S] smoothed anomaly map


@dataclass
class Detector:
    """A model with its config and metadata. ``precision`` (auto, fp32, bf16) and ``channels_last``
    are how this process runs it, chosen when it is loaded, not read from the training config."""

    model: torch.nn.Module
    config: Config
    device: torch.device
    metadata: dict[str, Any] = field(default_factory=dict)
    precision: str = "auto"
    channels_last: bool = True
    # [N, C] normal teacher patches beside an SCRD student (model.memory_bank); None without
    memory_bank: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.precision = resolve_precision(self.precision, self.device)
        self.model.to(memory_format=memory_format(self.channels_last))
        if self.memory_bank is not None:
            self.memory_bank = self.memory_bank.to(self.device)

    @classmethod
    def for_training(
        cls,
        model: torch.nn.Module,
        config: Config,
        device: torch.device,
        metadata: dict[str, Any] | None = None,
        memory_bank: torch.Tensor | None = None,
    ) -> Detector:
        """A detector over a model being trained: it runs as training does (precision, memory format)."""
        return cls(
            model, config, device, metadata or {}, config.train.precision, config.train.channels_last, memory_bank
        )

    @property
    def image_size(self) -> int:
        return self.config.model.image_size

    @property
    def is_memory_bank(self) -> bool:
        return isinstance(self.model, PatchMemoryBank)

    @property
    def threshold(self) -> float | None:
        calibration = self.metadata.get("calibration")
        return None if calibration is None else float(calibration["threshold"])

    @property
    def has_memory_bank(self) -> bool:
        """An SCRD student with a bank of teacher patches beside it (model.memory_bank)."""
        return self.memory_bank is not None

    @torch.no_grad()
    def scale_stack(self, images01: torch.Tensor, scoring: ScoringConfig | None = None):
        """(unsmoothed per-scale maps [B, K, S, S] at image size, α) of [0, 1] images; α is [B, 3], or
        [B, 3, h, w] for a spatial scale head. With a memory bank beside the student its distance map
        is one more channel, the last (:meth:`split_stack`)."""
        scoring = scoring or self.config.scoring
        self.model.eval()
        x = normalize(images01.to(self.device, non_blocking=True))
        x = x.contiguous(memory_format=memory_format(self.channels_last))
        size = (self.image_size, self.image_size)
        with autocast(self.device, self.precision):
            if self.is_memory_bank:
                distances = self.model.distances(x)
                stack = F.interpolate(distances[:, None], size=size, mode="bilinear", align_corners=False)
                return stack, torch.full((len(x), 3), float("nan"), device=self.device)
            out = self.model(x)
        alpha = (out.alpha if out.alpha_map is None else out.alpha_map).float()
        inside = alpha if scoring.alpha_weighting == "inside_cosine" else None
        teacher, student = [f.float() for f in out.teacher], [f.float() for f in out.student]
        stack = upsampled_scale_maps(teacher, student, size, inside, scoring.feature_pool)
        if self.memory_bank is not None:
            knn = self.config.knn
            distances = bank_distances(patch_vectors(teacher, knn.scales, knn.pool), self.memory_bank)
            bank = F.interpolate(distances[:, None], size=size, mode="bilinear", align_corners=False)
            stack = torch.cat([stack, bank.to(stack.dtype)], dim=1)
        return stack, alpha

    def split_stack(self, stack: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the student's per-scale maps [B, K, S, S], the memory bank's map [B, 1, S, S] or None)."""
        return (stack[:, :-1], stack[:, -1:]) if self.memory_bank is not None else (stack, None)

    def combine(self, stack: torch.Tensor, alpha: torch.Tensor, scoring: ScoringConfig | None = None) -> torch.Tensor:
        """Smoothed anomaly maps [B, S, S] from a scale stack, as ``scoring`` says."""
        return self.fuse(stack, alpha, scoring)[0]

    def fuse(
        self, stack: torch.Tensor, alpha: torch.Tensor, scoring: ScoringConfig | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(smoothed anomaly maps [B, S, S], the per-image scale weights [B, K] of a ``normal_softmax``
        fusion, else None) from a scale stack, as ``scoring`` says; a memory bank's map is added to the
        student's with ``scoring.memory_bank_weight``."""
        scoring = scoring or self.config.scoring
        stack, bank = self.split_stack(stack)
        maps, weights = self._fuse_scales(stack, alpha, scoring)
        if bank is None or scoring.memory_bank_weight == 0:
            return maps, weights
        mean, std = self.bank_score_statistics(scoring)
        bank_map = gaussian_smooth(bank, scoring.sigma)[:, 0]
        return add_bank_map(maps, bank_map, mean, std, scoring.memory_bank_weight), weights

    def _fuse_scales(
        self, stack: torch.Tensor, alpha: torch.Tensor, scoring: ScoringConfig
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`fuse` of the student's (or the knn reference's) maps alone."""
        if scoring.scale_fusion in ("normal_sum", "normal_softmax") and stack.shape[1] > 1:  # knn: one map
            mean, std = self.scale_score_statistics(scoring)
            maps, weights = fuse_on_normal_scale(gaussian_smooth(stack, scoring.sigma), mean, std, scoring)
            return maps, weights if scoring.scale_fusion == "normal_softmax" else None
        if scoring.scale_fusion == "standardized" and stack.shape[1] > 1:
            stats = self.metadata.get("normal_statistics")
            if stats is None:
                raise CheckpointError(
                    "scoring.scale_fusion = standardized needs the normal-image statistics that training "
                    "stores in model.json (normal_statistics); this model has none"
                )
            stack = standardize_scales(stack, stats["scale_mean"], stats["scale_std"])
        weights = alpha if scoring.alpha_weighting == "weighted" else None
        if stack.shape[1] > 1 and tuple(scoring.scale_weights) != (1.0, 1.0, 1.0):  # knn has one map: n/a
            fixed = torch.tensor(scoring.scale_weights, device=stack.device).expand(stack.shape[0], -1)  # traceable
            if weights is not None and weights.dim() == 4:  # a spatial α
                fixed = fixed[:, :, None, None]
            weights = fixed if weights is None else weights * fixed
        return gaussian_smooth(combine_scales(stack, weights), scoring.sigma), None

    def scale_score_statistics(self, scoring: ScoringConfig | None = None) -> tuple[list[float], list[float]]:
        """(mean, std) of each scale's image score over normal images, for ``scoring``'s reduction,
        as stored by :meth:`measure_scale_scores` (training stores them for its own scoring)."""
        scoring = scoring or self.config.scoring
        needs = f"scoring.scale_fusion = {scoring.scale_fusion} needs each scale's image-score statistics"
        return self._stored_statistics("scale_scores", statistics_key(scoring), needs)

    def bank_score_statistics(self, scoring: ScoringConfig | None = None) -> tuple[list[float], list[float]]:
        """(mean, std) of the (student's, memory bank's) image score over normal images, for ``scoring``,
        as stored by :meth:`measure_bank_statistics` (training stores them for its own scoring)."""
        scoring = scoring or self.config.scoring
        needs = "a memory bank beside the student needs both maps' image-score statistics"
        return self._stored_statistics("memory_bank", bank_statistics_key(scoring), needs)

    def _stored_statistics(self, kind: str, key: str, needs: str) -> tuple[list[float], list[float]]:
        """(mean, std) stored under ``normal_statistics.<kind>.<key>``; a clear error without them."""
        found = self.metadata.get("normal_statistics", {}).get(kind, {}).get(key)
        if found is None:
            raise CheckpointError(
                f"{needs} on normal images for this scoring ({key}); model.json has none. Training stores "
                "them for the model's own scoring; scrd evaluate computes them from the run's held-out normal images"
            )
        return found["mean"], found["std"]

    @torch.no_grad()
    def measure_bank_statistics(self, batches: Iterator[torch.Tensor], scorings: list[ScoringConfig]) -> dict:
        """For each of ``scorings``: the (student's, memory bank's) image-score mean and std over normal
        images, kept in the metadata (``normal_statistics.memory_bank``) for :meth:`fuse`. The student's
        scale fusion must be measurable already (its own statistics stored)."""
        per_image: dict[str, list[torch.Tensor]] = {bank_statistics_key(s): [] for s in scorings}
        for images01 in batches:
            passes = self._passes(images01, scorings)
            for scoring in scorings:
                stack, alpha = passes[self._pass_key(scoring)]
                student, bank = self.split_stack(stack)
                maps = torch.stack(
                    [self._fuse_scales(student, alpha, scoring)[0], gaussian_smooth(bank, scoring.sigma)[:, 0]], 1
                )
                per_image[bank_statistics_key(scoring)].append(per_scale_scores(maps, scoring).cpu())
        measured = {key: scale_score_statistics(torch.cat(v)) for key, v in per_image.items()}
        self.metadata.setdefault("normal_statistics", {}).setdefault("memory_bank", {}).update(measured)
        return measured

    def measure_scale_scores(self, batches: Iterator[torch.Tensor], scoring: ScoringConfig | None = None) -> dict:
        """Per-scale image-score statistics of ``scoring`` over normal images, kept in the metadata
        (``normal_statistics.scale_scores``) for :meth:`fuse`."""
        scoring = scoring or self.config.scoring
        measured = self.measure_normal_statistics(batches, [scoring], map_moments=False)
        return measured["scale_scores"][statistics_key(scoring)]

    @torch.no_grad()
    def score(self, images01: torch.Tensor, variants: dict[str, dict[str, Any]] | None = None) -> Scored:
        """Scores and smoothed anomaly maps for a batch of [0, 1] images [B, 3, S, S]; ``variants``
        ({name: scoring options}) adds the image scores of other scoring options to ``by_reduction``,
        sharing the network pass wherever the options allow."""
        scoring = self.config.scoring
        stack, alpha = self.scale_stack(images01)
        maps, fusion = self.fuse(stack, alpha)
        by_reduction = {r: image_score(maps, r, scoring.top_k_percent).double().cpu() for r in REDUCTIONS}
        variant_alpha: dict[str, torch.Tensor] = {}
        if variants:
            passes = {self._pass_key(scoring): (stack, alpha)}
            variant_scores, variant_alpha = self._variant_scores(images01, variants, passes)
            by_reduction.update(variant_scores)
        if fusion is not None:
            alpha = fusion  # the weights that made the map are this image's α
        per_image = alpha.mean((2, 3)) if alpha.dim() == 4 else alpha  # a spatial α: its mean over the image
        peak = alpha.amax(1).mean((1, 2)) if alpha.dim() == 4 else alpha.amax(1)
        return Scored(
            by_reduction[scoring.score], maps.float().cpu(), per_image.cpu(), by_reduction, peak.cpu(), variant_alpha
        )

    def _pass_key(self, scoring: ScoringConfig) -> str:
        """What of ``scoring`` changes the network pass (the memory bank's distances depend on none of it)."""
        return "" if self.is_memory_bank else f"{scoring.alpha_weighting == 'inside_cosine'}-{scoring.feature_pool}"

    def _passes(
        self, images01: torch.Tensor, scorings: list[ScoringConfig], passes: dict[str, tuple] | None = None
    ) -> dict[str, tuple]:
        """``passes`` with a network pass (scale stack, α) added for each :meth:`_pass_key` that
        ``scorings`` need and it lacks: scorings that differ only after the network share one."""
        passes = {} if passes is None else passes
        for scoring in scorings:
            if (key := self._pass_key(scoring)) not in passes:
                passes[key] = self.scale_stack(images01, scoring)
        return passes

    def _variant_scores(
        self, images01: torch.Tensor, variants: dict[str, dict[str, Any]], passes: dict[str, tuple]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(image scores, the per-image weights of the variants whose fusion sets its own) by name."""
        scores, alphas = {}, {}
        scorings = {name: dataclasses.replace(self.config.scoring, **options) for name, options in variants.items()}
        passes = self._passes(images01, list(scorings.values()), passes)
        for name, scoring in scorings.items():
            maps, fusion = self.fuse(*passes[self._pass_key(scoring)], scoring)
            scores[name] = image_score(maps, scoring.score, scoring.top_k_percent).double().cpu()
            if fusion is not None:
                alphas[name] = fusion.float().cpu()
        return scores, alphas

    def load_image(self, path: str | Path, frame: int | None = None) -> torch.Tensor:
        """An image file read exactly as ``scrd predict`` reads it for this model: [3, S, S] in [0, 1]."""
        return load_image(path, self.image_size, self.config.data, frame)

    def score_files(self, inputs: list[str | Path], batch_size: int = 16) -> list[FileScore]:
        """Score image files, folders, globs or a CSV manifest as ``scrd predict`` does (same reading,
        same scores, same decisions); volumes give one row per slice."""
        samples = collect_samples([str(i) for i in inputs], self.config.data)
        loader = make_loader(ImageDataset(samples, self.image_size, data=self.config.data), batch_size)
        rows = []
        for batch, scored in self.iterate(loader):
            for i, path in enumerate(batch["path"]):
                score = float(scored.scores[i])
                decision = decision_of(score, self.threshold)
                rows.append(FileScore(path, score, decision, scored.maps[i]))
        return rows

    def iterate(
        self, loader: Any, variants: dict[str, dict[str, Any]] | None = None
    ) -> Iterator[tuple[dict[str, Any], Scored | None]]:
        """(batch, scores) per batch; None when every image of the batch was skipped."""
        for batch in loader:
            yield batch, self.score(batch["image"], variants) if len(batch["image"]) else None

    def normal_statistics(self, batches: Iterator[torch.Tensor]) -> dict[str, list[float]]:
        """Mean and std of each unsmoothed scale map over normal images (for scoring.scale_fusion standardized)."""
        stats = self.measure_normal_statistics(batches, [])
        return {"scale_mean": stats["scale_mean"], "scale_std": stats["scale_std"]}

    @torch.no_grad()
    def measure_normal_statistics(
        self, batches: Iterator[torch.Tensor], scorings: list[ScoringConfig], map_moments: bool = True
    ) -> dict[str, Any]:
        """Statistics of normal images, from one network pass per batch and feature pooling: with
        ``map_moments``, each unsmoothed scale map's mean and std under the detector's own scoring
        (``scale_mean``, ``scale_std``: scoring.scale_fusion standardized); for each of ``scorings``, each scale's
        image-score mean and std (``scale_scores`` by :func:`statistics_key`: scoring.scale_fusion),
        also kept in the metadata for :meth:`fuse`."""
        own = [self.config.scoring] if map_moments else []
        total, total_sq, pixels, images = 0.0, 0.0, 0, 0
        per_image: dict[str, list[torch.Tensor]] = {statistics_key(s): [] for s in scorings}
        for images01 in batches:
            passes = self._passes(images01, own + scorings)
            images += len(images01)
            if map_moments:
                stack = self.split_stack(passes[self._pass_key(self.config.scoring)][0])[0].double()
                total = total + stack.sum((0, 2, 3))
                total_sq = total_sq + (stack * stack).sum((0, 2, 3))
                pixels += stack.shape[0] * stack.shape[2] * stack.shape[3]
            for scoring in scorings:
                smoothed = gaussian_smooth(self.split_stack(passes[self._pass_key(scoring)][0])[0], scoring.sigma)
                per_image[statistics_key(scoring)].append(per_scale_scores(smoothed, scoring).cpu())
        if not images:
            raise ValueError("no normal images to measure statistics on")
        stats: dict[str, Any] = {}
        if map_moments:
            mean = total / pixels
            std = (total_sq / pixels - mean * mean).clamp_min(0).sqrt()
            stats.update(scale_mean=mean.tolist(), scale_std=std.tolist())
        scale_scores = {key: scale_score_statistics(torch.cat(v)) for key, v in per_image.items()}
        if scale_scores:
            self.metadata.setdefault("normal_statistics", {}).setdefault("scale_scores", {}).update(scale_scores)
        return {**stats, "scale_scores": scale_scores}

    # ---------------------------------------------------------------------- persistence
    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        directory = Path(directory)
        path = directory / MODEL_FILE
        tensors = {
            "state_dict": self.model.state_dict(),
            "method": self.config.model.method,
            "arch": self.config.model.arch,
        }
        if self.memory_bank is not None:
            tensors["memory_bank"] = self.memory_bank.cpu()
        save_tensors(path, tensors)
        self.metadata.update(extra or {})
        if isinstance(self.model, PatchMemoryBank):
            self.metadata["bank_shape"] = list(self.model.bank.shape)
        if self.memory_bank is not None:
            self.metadata["memory_bank_shape"] = list(self.memory_bank.shape)
        self.metadata.update(
            {
                "format": CHECKPOINT_FORMAT,
                "method": self.config.model.method,
                "arch": self.config.model.arch,
                "scrd_version": __version__,
                "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "config": self.config.to_dict(),
            }
        )
        write_json(directory / MODEL_META, self.metadata)
        return path

    def save_metadata(self, directory: str | Path) -> None:
        write_json(Path(directory) / MODEL_META, self.metadata)

    @classmethod
    def load(
        cls, path: str | Path, device: str = "auto", precision: str = "auto", channels_last: bool = True
    ) -> Detector:
        """Load from a run directory or a ``model.pt`` (with its ``model.json`` beside it)."""
        model_path = resolve_model_path(path)
        metadata = read_json(model_path.parent / MODEL_META)
        if metadata.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{model_path.parent / MODEL_META}: not a {CHECKPOINT_FORMAT} file")
        config = Config.from_dict(metadata["config"])
        model = build_detector_model(config, metadata)
        state = load_tensors(model_path)
        held = (state.get("method", config.model.method), state.get("arch", config.model.arch))
        if held != (config.model.method, config.model.arch):
            raise CheckpointError(
                f"{model_path}: holds a {held[0]} {held[1]} model, but {MODEL_META} says "
                f"{config.model.method} {config.model.arch}: the two files come from different "
                "runs; keep a run's model.pt and model.json together"
            )
        try:
            model.load_state_dict(state["state_dict"], strict=True)
        except (KeyError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0][:300]
            raise CheckpointError(
                f"{model_path}: does not fit a {config.model.method} {config.model.arch} model ({first})"
            ) from exc
        bank = state.get("memory_bank")
        if config.model.memory_bank and bank is None:
            raise CheckpointError(
                f"{model_path}: {MODEL_META} says model.memory_bank, but the file holds no memory bank; "
                "keep a run's model.pt and model.json together"
            )
        target = choose_device(device)
        return cls(model.to(target).eval(), config, target, metadata, precision, channels_last, bank)
