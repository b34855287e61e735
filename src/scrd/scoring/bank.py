"""A training-free reference detector: nearest neighbours in a memory bank of teacher patches.

PatchCore-style (Roth et al., CVPR 2022), on the same frozen teacher SCRD distils: the features
of two teacher scales are averaged over a 3×3 neighbourhood (local context), the coarser scale is
upsampled to the finer one and the two are concatenated, so every position of the finer grid is a
patch vector. A random (or greedy-coreset) subset of the normal training patches is the memory
bank; a test patch's anomaly value is its Euclidean distance to the nearest bank patch, and an
image's score is the largest of them. It needs no training, which makes it the bar SCRD must
clear on equal features.
"""

from __future__ import annotations

from typing import Iterable, Literal

import torch
import torch.nn.functional as F

from .bank_index import IvfIndex


def fit_bank(
    embeddings: Iterable[torch.Tensor],
    fraction: float,
    sampling: Literal["random", "coreset"],
    seed: int,
    presample: int = 10,
) -> torch.Tensor:
    """A bank [N, C] of a ``fraction`` of all normal patch vectors (``embeddings``: [B, C, H, W] per
    batch): a random subset, or a greedy coreset chosen among a random ``presample`` × larger subset.
    Patches are subsampled batch by batch, so memory holds the bank (or the pre-sample), never all."""
    generator = torch.Generator().manual_seed(seed)
    keep = min(1.0, fraction * (presample if sampling == "coreset" else 1))
    kept, total = [], 0
    for e in embeddings:
        patches = e.float().permute(0, 2, 3, 1).reshape(-1, e.shape[1])
        total += len(patches)
        count = max(1, int(round(len(patches) * keep)))
        kept.append(patches[torch.randperm(len(patches), generator=generator)[:count]])
    pool = torch.cat(kept)
    if sampling == "coreset":
        pool = pool[greedy_coreset(pool, max(1, int(round(total * fraction))), generator)]
    return pool.contiguous()


def patch_vectors(features: list[torch.Tensor], scales: tuple[int, ...], pool: int) -> torch.Tensor:
    """Patch vectors [B, C, H, W] from the teacher's features (highest resolution first): the selected
    scales, each averaged over a pool × pool neighbourhood, at the finer one's grid, concatenated."""
    picked = [features[k - 1].float() for k in scales]
    if pool > 1:
        picked = [F.avg_pool2d(f, pool, stride=1, padding=pool // 2) for f in picked]
    size = picked[0].shape[-2:]
    picked = [
        f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in picked
    ]
    return torch.cat(picked, dim=1)


def bank_distances(
    vectors: torch.Tensor, bank: torch.Tensor, chunk: int = 1024, index: IvfIndex | None = None, probe: int = 16
) -> torch.Tensor:
    """Distance of each patch vector [B, C, H, W] to its nearest bank row: [B, H, W] (float32); through
    ``index`` (approximate, :mod:`scrd.scoring.bank_index`) when given, except in an exported graph,
    which always holds the exact search."""
    b, c, h, w = vectors.shape
    queries = vectors.permute(0, 2, 3, 1).reshape(-1, c)
    with torch.autocast(vectors.device.type, enabled=False):  # in float32: ‖q‖² − 2q·b + ‖b‖² cancels
        if _in_export():
            return nearest_distance_graph(queries, bank).view(b, h, w)
        if index is not None:
            return index.distances(queries, probe).view(b, h, w)
        return nearest_distance(queries, bank, chunk).view(b, h, w)


def _in_export() -> bool:
    """Whether this call is being traced into an exported graph (ONNX, torch.export)."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling()


def nearest_distance_graph(queries: torch.Tensor, bank: torch.Tensor, bank_chunk: int = 4096) -> torch.Tensor:
    """:func:`nearest_distance` as plain graph operations, what ``scrd export`` traces: for each fixed
    chunk of the bank (the bank is an initializer of the graph), MatMul and ReduceMin of
    ‖b‖² − 2 q·b over all queries at once (a dynamic batch), then + ‖q‖², clamped, square root."""
    bank = bank.float()
    best = None
    for b0 in range(0, len(bank), bank_chunk):  # unrolled when traced: the bank's size is fixed
        b = bank[b0 : b0 + bank_chunk]
        d2 = (b * b).sum(1)[None] - 2.0 * (queries @ b.T)
        chunk_best = d2.amin(1)
        best = chunk_best if best is None else torch.minimum(best, chunk_best)
    return (best + (queries * queries).sum(1)).clamp_min(0).sqrt()


def nearest_distance(
    queries: torch.Tensor, bank: torch.Tensor, chunk: int = 1024, bank_chunk: int = 8192
) -> torch.Tensor:
    """Euclidean distance of each query row to its nearest bank row, in float32 blocks
    (min over the bank of ‖b‖² − 2 q·b, then + ‖q‖², clamped at 0 against rounding). One reused
    block buffer of chunk × bank_chunk: a fresh multi-GB product per chunk spends more time in
    page faults than in the matrix multiply."""
    bank = bank.float()
    bank_sq = (bank * bank).sum(1)
    out = torch.empty(len(queries), dtype=torch.float32, device=queries.device)
    block = torch.empty(chunk * min(bank_chunk, max(1, len(bank))), dtype=torch.float32, device=queries.device)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk].float()
        best = torch.full((len(q),), float("inf"), device=q.device)
        for b0 in range(0, len(bank), bank_chunk):
            b = bank[b0 : b0 + bank_chunk]
            d2 = block[: len(q) * len(b)].view(len(q), len(b))
            torch.addmm(bank_sq[b0 : b0 + len(b)][None], q, b.T, alpha=-2.0, out=d2)
            torch.minimum(best, d2.amin(1), out=best)
        out[start : start + len(q)] = (best + (q * q).sum(1)).clamp_min_(0).sqrt_()
    return out


def greedy_coreset(patches: torch.Tensor, count: int, generator: torch.Generator, dim: int = 128) -> torch.Tensor:
    """Indices of a greedy k-center coreset (PatchCore) of ``patches``: each new centre is the patch
    farthest from all chosen ones, distances taken in a random projection to ``dim`` dimensions."""
    x = patches.float()
    if x.shape[1] > dim:
        x = x @ (torch.randn(x.shape[1], dim, generator=generator) / dim**0.5)
    chosen = [int(torch.randint(len(x), (1,), generator=generator))]
    nearest = ((x - x[chosen[0]]) ** 2).sum(1)
    for _ in range(1, min(count, len(x))):
        index = int(nearest.argmax())
        chosen.append(index)
        nearest = torch.minimum(nearest, ((x - x[index]) ** 2).sum(1))
    return torch.tensor(chosen)
