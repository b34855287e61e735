"""The scoring head: everything between the networks' features and an image's score, as one module.

From the teacher's features u_k and the student's v_k (a trained model) or the teacher's alone (the
knn method), it computes the per-scale distance maps, combines the scales (``scoring.scale_fusion``),
adds a memory bank's nearest-patch map (``model.memory_bank``), smooths and reduces the map to a
score. The state that needs, the normal-image statistics and the bank, is held as buffers, so a
model's ``model.pt`` carries it and the ONNX export takes the head whole. A statistic not measured
yet is NaN; scoring with it is a clear error (:meth:`ScoringHead.require_statistics`).

Statistics are float64 buffers used as Python numbers, exactly as scrd 0.2 used the values it stored
in model.json, so models of either version score the same images to the same digits.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import KnnConfig, ScoringConfig
from ..errors import CheckpointError
from .bank import bank_distances, patch_vectors
from .bank_fusion import add_bank_map
from .bank_index import IvfIndex, recall_at_1
from .maps import combine_scales, gaussian_smooth, image_score, standardize_scales, upsampled_scale_maps
from .scale_fusion import fuse_on_normal_scale

log = logging.getLogger(__name__)
NORMAL_FUSIONS = ("normal_sum", "normal_softmax")
STATISTICS = ("map_mean", "map_std", "score_mean", "score_std", "pair_mean", "pair_std")


class BankSearch(NamedTuple):
    """How a head searches its bank (``knn.search``, ``knn.ivf_lists``, ``knn.ivf_probe``)."""

    kind: str = "exact"
    lists: int = 0
    probe: int = 16


class HeadOutput(NamedTuple):
    maps: torch.Tensor  # [B, S, S] float32: the smoothed anomaly map
    scores: torch.Tensor  # [B] float32: the configured image score of the map
    fusion_weights: torch.Tensor | None  # [B, K] per-image scale weights of a normal_softmax fusion


class ScoringHead(nn.Module):
    """``forward(teacher, student, alpha) -> HeadOutput``; ``student`` and ``alpha`` are None for a
    head over the teacher alone (the knn method), whose map is the memory bank's."""

    def __init__(
        self,
        scoring: ScoringConfig,
        image_size: int,
        num_scales: int,
        bank: KnnConfig | None = None,
        bank_shape: Sequence[int] = (0, 0),
    ) -> None:
        super().__init__()
        self.scoring, self.image_size, self.num_scales = scoring, int(image_size), int(num_scales)
        self.bank_patches = None if bank is None else (tuple(bank.scales), int(bank.pool))
        self.bank_search = BankSearch() if bank is None else BankSearch(bank.search, bank.ivf_lists, bank.ivf_probe)
        self._indexes: dict[tuple, IvfIndex] = {}  # built from the bank on first use; shared with variants
        nan = torch.full((self.num_scales,), float("nan"), dtype=torch.float64)
        # pixel mean and std of each unsmoothed scale map over normal images (scale_fusion standardized)
        self.register_buffer("map_mean", nan.clone())
        self.register_buffer("map_std", nan.clone())
        # mean and std of each scale's image score over normal images (the normal_* fusions)
        self.register_buffer("score_mean", nan.clone())
        self.register_buffer("score_std", nan.clone())
        # (student, bank) image-score mean and std over normal images: the two maps' common units
        self.register_buffer("pair_mean", torch.full((2,), float("nan"), dtype=torch.float64))
        self.register_buffer("pair_std", torch.full((2,), float("nan"), dtype=torch.float64))
        self.register_buffer("bank", torch.zeros(tuple(bank_shape)) if bank is not None else None)

    # ------------------------------------------------------------------ what this head needs
    @property
    def has_bank(self) -> bool:
        return self.bank is not None

    @property
    def has_student(self) -> bool:
        return self.num_scales > 0

    def needs(self) -> dict[str, bool]:
        """Which normal-image statistics this head's scoring reads."""
        s, multi = self.scoring, self.num_scales > 1
        return {
            "map_moments": multi and s.scale_fusion == "standardized",
            "scale_scores": multi and s.scale_fusion in NORMAL_FUSIONS,
            "pair": self.has_bank and self.has_student and s.memory_bank_weight > 0,
        }

    def require_statistics(self) -> None:
        """A clear error when the statistics this head reads were never measured."""
        buffers = {"map_moments": "map_mean", "scale_scores": "score_mean", "pair": "pair_mean"}
        missing = [
            kind for kind, needed in self.needs().items() if needed and torch.isnan(getattr(self, buffers[kind])).any()
        ]
        if missing:
            raise CheckpointError(
                f"this scoring (scale_fusion {self.scoring.scale_fusion}, memory bank "
                f"{'yes' if self.has_bank else 'no'}) needs normal-image statistics ({', '.join(missing)}) that "
                "were never measured; training measures them on the run's held-out normal images"
            )

    def variant(self, scoring: ScoringConfig) -> ScoringHead:
        """A head of the same shape for other scoring options, sharing this one's bank; its statistics
        start unmeasured (a scoring's statistics depend on the scoring)."""
        head = ScoringHead(scoring, self.image_size, self.num_scales, None)
        head.bank_patches, head.bank_search, head._indexes = self.bank_patches, self.bank_search, self._indexes
        head.bank = self.bank
        return head.to(self.map_mean.device)

    def with_bank_search(self, search: BankSearch) -> ScoringHead:
        """This head searching its bank another way; its statistics are kept (they were measured with
        the exact search or close to it: an approximate distance is never below the exact one)."""
        head = self.variant(self.scoring).copy_statistics_from(self)
        head.bank_search = BankSearch(*search)
        return head

    def with_search_of(self, knn: KnnConfig) -> ScoringHead:
        """:meth:`with_bank_search` as a knn config says (``knn.search``, ``knn.ivf_lists``, ``knn.ivf_probe``)."""
        return self.with_bank_search(BankSearch(knn.search, knn.ivf_lists, knn.ivf_probe))

    def recall_against_exact(self, teacher: Sequence[torch.Tensor]) -> float:
        """recall@1 of this head's bank search against the exact search, on the patches of ``teacher``."""
        exact = self.with_bank_search(BankSearch("exact"))
        return recall_at_1(self.unsmoothed_bank_map(teacher), exact.unsmoothed_bank_map(teacher))

    def search_key(self) -> tuple:
        """Heads with equal keys compute equal bank maps (:meth:`Detector.score_heads` searches once)."""
        return (id(self.bank), self.bank_search)

    def copy_statistics_from(self, other: ScoringHead) -> ScoringHead:
        """Take ``other``'s measured statistics: valid only where the two scorings differ in nothing the
        statistics depend on (e.g. the bank's weight, the fusion temperature for the per-scale ones)."""
        for name in STATISTICS:
            getattr(self, name).copy_(getattr(other, name))
        return self

    def with_options(self, **options) -> ScoringHead:
        """:meth:`variant` for ``options`` over this head's scoring (validated like a config)."""
        return self.variant(dataclasses.replace(self.scoring, **options))

    # ------------------------------------------------------------------ the computation
    @property
    def uses_bank_map(self) -> bool:
        """Whether this head's map includes the bank's (a bank weighted 0 is not searched)."""
        return self.has_bank and (not self.has_student or self.scoring.memory_bank_weight > 0)

    def forward(
        self,
        teacher: Sequence[torch.Tensor],
        student: Sequence[torch.Tensor] | None = None,
        alpha: torch.Tensor | None = None,
        unsmoothed_bank_map: torch.Tensor | None = None,
    ) -> HeadOutput:
        """``unsmoothed_bank_map``: the bank's distances for these features when already searched
        (heads that share a bank score from one search, :meth:`Detector.score_heads`)."""
        self.require_statistics()
        with torch.autocast(teacher[0].device.type, enabled=False):  # distances cancel badly in bf16
            teacher = [t.float() for t in teacher]
            student_map, weights = None, None
            if self.has_student:
                stack = self.scale_stack(teacher, [v.float() for v in student], alpha)
                student_map, weights = self.fuse_scales(stack, alpha)
            bank_map = None
            if self.uses_bank_map:
                found = self.unsmoothed_bank_map(teacher) if unsmoothed_bank_map is None else unsmoothed_bank_map
                bank_map = gaussian_smooth(found, self.scoring.sigma)[:, 0]
            maps = self.combine(student_map, bank_map).float()
            return HeadOutput(maps, image_score(maps, self.scoring.score, self.scoring.top_k_percent), weights)

    def scale_stack(
        self, teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], alpha: torch.Tensor | None
    ) -> torch.Tensor:
        """Unsmoothed per-scale distance maps at image size: [B, K, S, S]."""
        inside = alpha if self.scoring.alpha_weighting == "inside_cosine" else None
        return upsampled_scale_maps(teacher, student, self.image_size, inside, self.scoring.feature_pool)

    def unsmoothed_bank_map(self, teacher: Sequence[torch.Tensor]) -> torch.Tensor:
        """The nearest-bank-patch distance of every location, at image size: [B, 1, S, S]."""
        scales, pool = self.bank_patches
        distances = bank_distances(patch_vectors(teacher, scales, pool), self.bank, **self._search_options())
        size = (self.image_size, self.image_size)
        return F.interpolate(distances[:, None], size=size, mode="bilinear", align_corners=False)

    def _search_options(self) -> dict:
        index = self.bank_index()
        return {} if index is None else {"index": index, "probe": self.bank_search.probe}

    def bank_index(self) -> IvfIndex | None:
        """The ivf index of this head's bank (built on first use, then cached; shared with the head's
        variants), or None for the exact search."""
        if self.bank_search.kind != "ivf":
            return None
        bank, lists = self.bank, self.bank_search.lists
        key = (bank.data_ptr(), tuple(bank.shape), str(bank.device), lists)
        if key not in self._indexes:
            if len(self._indexes) >= 4:  # heads sharing this cache with other banks (the grids' bank analysis)
                self._indexes.pop(next(iter(self._indexes)))  # the oldest
            index = self._indexes[key] = IvfIndex(bank, lists)
            log.info(
                "built the ivf index of the memory bank (%d rows, %d lists) in %.1f s",
                len(bank),
                index.lists,
                index.build_seconds,
            )
        return self._indexes[key]

    def bank_map(self, teacher: Sequence[torch.Tensor]) -> torch.Tensor:
        """The smoothed bank map [B, S, S]."""
        return gaussian_smooth(self.unsmoothed_bank_map(teacher), self.scoring.sigma)[:, 0]

    def fuse_scales(self, stack: torch.Tensor, alpha: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the student's smoothed map [B, S, S], the per-image weights of a normal_softmax fusion)."""
        s = self.scoring
        if s.scale_fusion in NORMAL_FUSIONS and stack.shape[1] > 1:
            smoothed = gaussian_smooth(stack, s.sigma)
            maps, weights = fuse_on_normal_scale(smoothed, self.score_mean.tolist(), self.score_std.tolist(), s)
            return maps, weights if s.scale_fusion == "normal_softmax" else None
        if s.scale_fusion == "standardized" and stack.shape[1] > 1:
            stack = standardize_scales(stack, self.map_mean.tolist(), self.map_std.tolist())
        weights = alpha if s.alpha_weighting == "weighted" else None
        if stack.shape[1] > 1 and tuple(s.scale_weights) != (1.0, 1.0, 1.0):
            fixed = torch.tensor(s.scale_weights, device=stack.device).expand(stack.shape[0], -1)  # traceable
            if weights is not None and weights.dim() == 4:  # a spatial α
                fixed = fixed[:, :, None, None]
            weights = fixed if weights is None else weights * fixed
        return gaussian_smooth(combine_scales(stack, weights), s.sigma), None

    def combine(self, student_map: torch.Tensor | None, bank_map: torch.Tensor | None) -> torch.Tensor:
        """The anomaly map from the student's and the bank's maps (either may be absent)."""
        if bank_map is None:
            return student_map
        if student_map is None:
            return bank_map
        if self.scoring.memory_bank_weight == 0:
            return student_map
        return add_bank_map(
            student_map, bank_map, self.pair_mean.tolist(), self.pair_std.tolist(), self.scoring.memory_bank_weight
        )

    def extra_repr(self) -> str:
        bank = f", bank={tuple(self.bank.shape)}" if self.has_bank else ""
        return f"scales={self.num_scales}, image_size={self.image_size}{bank}, scoring={self.scoring}"
