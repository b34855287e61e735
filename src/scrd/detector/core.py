"""A trained detector: its network, its scoring head, its config and metadata; it scores images.

The network gives features (the SCRD model: the teacher's, the student's and α; the knn method: the
teacher's alone); the :class:`~scrd.scoring.head.ScoringHead` turns them into a map and a score. The
saved format (model.pt + model.json) is :mod:`.files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from ..config import Config
from ..data.dataset import ImageDataset, load_image, make_loader
from ..data.layouts import collect_samples
from ..data.transforms import normalize
from ..device import autocast, memory_format, resolve_precision, scoring_precision
from ..scoring.head import HeadOutput, ScoringHead
from ..scoring.maps import image_score
from ..scoring.statistics import NormalFeatures, measure_statistics
from .files import read_model, write_metadata, write_model
from .parts import build_head

REDUCTIONS = ("mean", "max", "top_k")


def decision_of(score: float, threshold: float | None) -> str | None:
    """The decision rule everywhere: 'abnormal' at or above the threshold, else 'normal'; None for an
    uncalibrated model."""
    if threshold is None:
        return None
    return "abnormal" if score >= threshold else "normal"


@dataclass
class Scored:
    scores: torch.Tensor  # [B] float64, on CPU: the configured image score
    maps: torch.Tensor  # [B, H, W] float32, on CPU: the smoothed anomaly maps
    alpha: torch.Tensor  # [B, K] the weights that combined the scales, on CPU (NaN for the knn method)
    by_reduction: dict[str, torch.Tensor]  # the same maps reduced by mean, max and top_k
    # [B] the largest of the K weights, averaged over the image's locations (a global α: its largest weight)
    alpha_peak: torch.Tensor | None = None


@dataclass
class FileScore:
    path: str  # the file (plus #slice=K for one slice of a volume)
    score: float
    decision: str | None  # "abnormal" / "normal" at the model's threshold, None without one
    map: torch.Tensor  # [S, S] smoothed anomaly map


class Detector:
    """A network and its scoring head. ``precision`` (auto = fp32, or bf16) and ``channels_last`` are how
    this process runs it, chosen when it is loaded, not read from the training config
    (:func:`~scrd.device.scoring_precision`)."""

    def __init__(
        self,
        network: nn.Module,
        head: ScoringHead,
        config: Config,
        device: torch.device,
        metadata: dict[str, Any] | None = None,
        precision: str = "auto",
        channels_last: bool = True,
    ) -> None:
        self.config, self.device, self.metadata = config, device, metadata if metadata is not None else {}
        self.precision = scoring_precision(precision, device)
        self.channels_last = channels_last
        self.network = network.to(device).to(memory_format=memory_format(channels_last))
        self.head = head.to(device)

    @classmethod
    def from_network(
        cls,
        network: nn.Module,
        config: Config,
        device: torch.device,
        metadata: dict[str, Any] | None = None,
        precision: str = "auto",
        channels_last: bool = True,
        bank: torch.Tensor | None = None,
    ) -> Detector:
        """A detector over ``network`` with an unmeasured head for ``config`` holding ``bank`` (a
        memory bank [N, C]); measure its statistics with :meth:`fit_statistics` if its scoring needs any."""
        head = build_head(config, None if bank is None else tuple(bank.shape))
        if bank is not None:
            head.bank = bank.to(device)
        return cls(network, head, config, device, metadata, precision, channels_last)

    @classmethod
    def for_training(
        cls,
        network: nn.Module,
        config: Config,
        device: torch.device,
        metadata: dict[str, Any] | None = None,
        bank: torch.Tensor | None = None,
    ) -> Detector:
        """:meth:`from_network` as training runs the network (its precision and memory format): what the
        monitors score during training with; the finished model is scored in the scoring precision."""
        train = config.train
        precision = resolve_precision(train.precision, device)
        return cls.from_network(network, config, device, metadata, precision, train.channels_last, bank)

    @classmethod
    def load(
        cls, path: str | Path, device: str = "auto", precision: str = "auto", channels_last: bool = True
    ) -> Detector:
        """Load from a run directory or a ``model.pt`` (with its ``model.json`` beside it)."""
        network, head, config, metadata, target = read_model(path, device)
        return cls(network, head, config, target, metadata, precision, channels_last)

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write model.pt (network and head state dicts) and model.json into ``directory``."""
        self.metadata.update(extra or {})
        return write_model(self.network, self.head, self.config, self.metadata, directory)

    def save_metadata(self, directory: str | Path) -> None:
        write_metadata(self.metadata, directory)

    # ------------------------------------------------------------------ properties
    @property
    def image_size(self) -> int:
        return self.config.model.image_size

    @property
    def threshold(self) -> float | None:
        calibration = self.metadata.get("calibration")
        return None if calibration is None else float(calibration["threshold"])

    def precision_warning(self) -> str | None:
        """A warning when this detector scores in another precision than its threshold was calibrated in
        (its decisions near the threshold may then differ from the calibrated ones); None otherwise."""
        calibrated = (self.metadata.get("calibration") or {}).get("precision")
        if calibrated is None or calibrated == self.precision:
            return None
        return (
            f"the threshold was calibrated on {calibrated} scores and this run scores in {self.precision}: "
            f"images near the threshold may be decided otherwise; score with --precision {calibrated} "
            "(or calibrate again in this precision)"
        )

    @property
    def is_knn(self) -> bool:
        """The training-free memory-bank method: a teacher and a bank, no student."""
        return not self.head.has_student

    @property
    def has_memory_bank(self) -> bool:
        """A student with a bank of teacher patches beside it (model.memory_bank)."""
        return self.head.has_bank and self.head.has_student

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def features(self, images01: torch.Tensor) -> NormalFeatures:
        """The network's features of [0, 1] images [B, 3, S, S], in float32: the teacher's, the
        student's and α ([B, 3], or [B, 3, h, w] for a spatial scale head); the knn method: the teacher's."""
        self.network.eval()
        x = normalize(images01.to(self.device, non_blocking=True))
        x = x.contiguous(memory_format=memory_format(self.channels_last))
        with autocast(self.device, self.precision):
            out = self.network(x)
        if self.is_knn:
            return NormalFeatures([f.float() for f in out], None, None)
        alpha = (out.alpha if out.alpha_map is None else out.alpha_map).float()
        return NormalFeatures([f.float() for f in out.teacher], [f.float() for f in out.student], alpha)

    @torch.no_grad()
    def score(self, images01: torch.Tensor) -> Scored:
        """Scores and smoothed anomaly maps for a batch of [0, 1] images [B, 3, S, S]."""
        features = self.features(images01)
        maps, scores, fusion = self.head(*features)
        top_k = self.config.scoring.top_k_percent
        by_reduction = {r: image_score(maps, r, top_k).double().cpu() for r in REDUCTIONS}
        if fusion is not None:
            alpha = fusion  # the weights that made the map are this image's weights
        elif features.alpha is not None:
            alpha = features.alpha
        else:
            alpha = torch.full((len(maps), 3), float("nan"))
        per_image = alpha.mean((2, 3)) if alpha.dim() == 4 else alpha  # a spatial α: its mean over the image
        peak = alpha.amax(1).mean((1, 2)) if alpha.dim() == 4 else alpha.amax(1)
        return Scored(scores.double().cpu(), maps.cpu(), per_image.cpu(), by_reduction, peak.cpu())

    @torch.no_grad()
    def score_heads(self, images01: torch.Tensor, heads: dict[str, ScoringHead]) -> dict[str, HeadOutput]:
        """Each of ``heads`` (variants of this detector's, :meth:`ScoringHead.variant`) on one network
        pass over [0, 1] images [B, 3, S, S]."""
        features = self.features(images01)
        searched: dict[tuple, torch.Tensor] = {}  # one bank search per bank and way of searching it

        def bank_map(head: ScoringHead) -> torch.Tensor | None:
            if not head.uses_bank_map:
                return None
            if head.search_key() not in searched:
                searched[head.search_key()] = head.unsmoothed_bank_map(features.teacher)
            return searched[head.search_key()]

        return {name: head(*features, unsmoothed_bank_map=bank_map(head)) for name, head in heads.items()}

    def iterate(self, loader: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], Scored | None]]:
        """(batch, scores) per batch; None when every image of the batch was skipped."""
        for batch in loader:
            yield batch, self.score(batch["image"]) if len(batch["image"]) else None

    def loader(
        self, samples: Iterable[Any], batch_size: int = 16, num_workers: int = 0, on_bad_image: str | None = None
    ) -> Iterable[dict[str, Any]]:
        """Batches of ``samples`` read as this model reads images (its size and data options): the one
        way every scoring job turns files into batches."""
        dataset = ImageDataset(list(samples), self.image_size, data=self.config.data, on_bad_image=on_bad_image)
        return make_loader(dataset, batch_size, num_workers, self.device.type == "cuda")

    def load_image(self, path: str | Path, frame: int | None = None) -> torch.Tensor:
        """An image file read exactly as ``scrd predict`` reads it for this model: [3, S, S] in [0, 1]."""
        return load_image(path, self.image_size, self.config.data, frame)

    def score_files(self, inputs: list[str | Path], batch_size: int = 16) -> Iterator[FileScore]:
        """Score image files, folders, globs or a CSV manifest as ``scrd predict`` does (same reading,
        same scores, same decisions), one batch in memory at a time; volumes give one row per slice."""
        samples = collect_samples([str(i) for i in inputs], self.config.data)
        for batch, scored in self.iterate(self.loader(samples, batch_size)):
            for i, path in enumerate(batch["path"]):
                score = float(scored.scores[i])
                yield FileScore(path, score, decision_of(score, self.threshold), scored.maps[i])

    def fit_statistics(self, batches: Iterable[torch.Tensor], heads: list[ScoringHead] | None = None) -> int:
        """Measure the normal-image statistics of this detector's head (and of ``heads``, variants of
        it) from batches of normal [0, 1] images, one network pass; returns the number of images."""
        return measure_statistics([self.head, *(heads or [])], (self.features(b) for b in batches))
