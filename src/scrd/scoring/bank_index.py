"""An approximate search of the memory bank: an inverted-file (IVF) index in plain torch.

The exact search compares every patch with every bank row: with the paper's teacher (a 102,400 ×
1,536 bank) that is ~1.3 TFLOP per 256-px image, 6.5 times the student's own pass. The IVF index
(Jégou et al., the layout of faiss's IndexIVFFlat) clusters the bank rows with k-means into
``lists`` lists; a query is compared with the centroids, then exactly with the rows of its
``probe`` nearest lists only. The distances it returns are true distances to real bank rows, so they
are never below the exact ones, and equal them whenever the nearest row lies in a probed list
(recall@1).

Written in torch rather than taken from faiss: the same code runs on CUDA, the index is rebuilt
deterministically from the bank (seeded k-means, float32), so nothing but the bank is saved, and the
per-list products are large matrix multiplies when a batch's patches are grouped by list. The
exact search stays the reference and is what ``scrd export`` puts in the ONNX graph.
"""

from __future__ import annotations

import math
import time

import torch


def default_lists(rows: int) -> int:
    """The number of lists for a bank of ``rows``: about 2·√rows (so a list holds ~√rows/2 rows and
    the centroid and list comparisons cost about the same at a probe of 8), at least 1."""
    return max(1, min(rows, round(2 * math.sqrt(rows))))


def _nearest(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Index of each row's nearest centroid (squared Euclidean), in float32 blocks."""
    c_sq = (centroids * centroids).sum(1)
    return torch.cat(
        [torch.addmm(c_sq[None], x[i : i + chunk], centroids.T, alpha=-2.0).argmin(1) for i in range(0, len(x), chunk)]
    )


def kmeans(x: torch.Tensor, k: int, seed: int, iterations: int = 10, max_train: int = 256) -> torch.Tensor:
    """Centroids [k, C] of Lloyd's k-means on at most ``max_train`` × k rows of ``x`` (a seeded random
    subset; faiss trains on the same share), started from k distinct random rows. An emptied cluster
    keeps its centroid."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator).to(x.device)
    train = x[order[: max_train * k]]
    centroids = train[:k].clone()
    for _ in range(iterations):
        assigned = _nearest(train, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assigned, train)
        counts = torch.bincount(assigned, minlength=k).to(train.dtype)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


class IvfIndex:
    """An inverted-file index over a bank [N, C]: :meth:`distances` of query rows to their nearest
    row among the ``probe`` nearest lists."""

    def __init__(self, bank: torch.Tensor, lists: int = 0, seed: int = 0) -> None:
        started = time.perf_counter()
        bank = bank.float()
        self.rows, self.lists = len(bank), min(len(bank), lists or default_lists(len(bank)))
        self.centroids = kmeans(bank, self.lists, seed)
        assigned = _nearest(bank, self.centroids)
        order = torch.argsort(assigned, stable=True)
        self.sorted_bank = bank[order].contiguous()  # rows grouped by list
        self.sorted_sq = (self.sorted_bank * self.sorted_bank).sum(1)
        counts = torch.bincount(assigned, minlength=self.lists)
        self.offsets = [0] + torch.cumsum(counts, 0).tolist()
        self.centroid_sq = (self.centroids * self.centroids).sum(1)
        self.build_seconds = time.perf_counter() - started

    def distances(self, queries: torch.Tensor, probe: int, chunk: int = 16384) -> torch.Tensor:
        """Euclidean distance [Q] of each query row to its nearest bank row in its ``probe`` nearest
        lists (float32), ``chunk`` queries at a time."""
        return torch.cat([self._chunk(queries[i : i + chunk].float(), probe) for i in range(0, len(queries), chunk)])

    def _chunk(self, q: torch.Tensor, probe: int) -> torch.Tensor:
        probe = min(probe, self.lists)
        to_centroids = torch.addmm(self.centroid_sq[None], q, self.centroids.T, alpha=-2.0)
        probed = to_centroids.topk(probe, dim=1, largest=False).indices.reshape(-1)
        query_of = torch.arange(len(q), device=q.device).repeat_interleave(probe)
        order = torch.argsort(probed, stable=True)
        counts = torch.bincount(probed, minlength=self.lists).tolist()
        best = torch.full((len(q),), float("inf"), device=q.device)
        start = 0
        for lst, n in enumerate(counts):  # each list once, against all the queries that probe it
            if n == 0:
                continue
            who = query_of[order[start : start + n]]  # distinct: a query probes a list at most once
            start += n
            lo, hi = self.offsets[lst], self.offsets[lst + 1]
            if hi == lo:
                continue
            d2 = torch.addmm(self.sorted_sq[lo:hi][None], q[who], self.sorted_bank[lo:hi].T, alpha=-2.0)
            best[who] = torch.minimum(best[who], d2.amin(1))
        return (best + (q * q).sum(1)).clamp_min_(0).sqrt_()


def recall_at_1(found: torch.Tensor, exact: torch.Tensor) -> float:
    """The share of patches whose approximate distance equals the exact one (to float rounding): the
    ones whose nearest bank row the approximate search found."""
    return float((found <= exact * (1 + 1e-5) + 1e-6).float().mean())
