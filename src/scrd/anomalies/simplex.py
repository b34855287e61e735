"""Simplex noise textures: the released code's OpenSimplex field, bit-exact, and a batched torch
simplex noise for fresh textures.

The released code's ``Simplex_CLASS`` is seeded once and always samples from coordinate 0, so all
its patches are top-left crops of one OpenSimplex field (:func:`official_noise_field`);
``opensimplex==0.4.5.1`` reproduces that field bit for bit. Fresh textures use Gustavson's 3-D
simplex noise in torch (:func:`fractal_simplex`), vectorised over a batch and run on the images'
device.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..config import NoiseConfig


@functools.lru_cache(maxsize=16)
def _official_field_cached(
    seed: int, height: int, width: int, octaves: int, persistence: float, frequency: float
) -> np.ndarray:
    import opensimplex

    gen = opensimplex.OpenSimplex(seed)
    out = np.zeros((3, height, width))
    f, amp = float(frequency), 1.0
    for _ in range(octaves):
        out += amp * gen.noise3array(np.arange(width) / f, np.arange(height) / f, np.arange(3) / f)
        f /= 2
        amp *= persistence
    out.flags.writeable = False
    return out


def official_noise_field(
    seed: int = NoiseConfig.field_seed,
    height: int = NoiseConfig.max_size,
    width: int = NoiseConfig.max_size,
    octaves: int = NoiseConfig.octaves,
    persistence: float = NoiseConfig.persistence,
    frequency: float = NoiseConfig.frequency,
) -> np.ndarray:
    """The official simplex texture F_seed(h, w): float64 [3, h, w], bit-exact with ``models/noise.py``.

    F[c, i, j] = Σ_o persistence^o · N3(j/f_o, i/f_o, c/f_o) with f_o = frequency / 2^o (x = column,
    y = row, z = channel), computed with ``opensimplex==0.4.5.1``. Cached (≈ 0.7 s per field); the
    returned array is read-only.
    """
    return _official_field_cached(
        int(seed), int(height), int(width), int(octaves), float(persistence), float(frequency)
    )


_F3, _G3 = 1.0 / 3.0, 1.0 / 6.0
# Gustavson's 32 rescaled by 0.74 so the per-point std (0.314) matches OpenSimplex-2014's (measured on
# 125k points each: 0.425 unscaled vs 0.314), keeping λ comparable between fixed and fresh fields.
_SIMPLEX_SCALE = 32.0 * 0.74
_GRAD3 = (
    (1, 1, 0), (-1, 1, 0), (1, -1, 0), (-1, -1, 0),
    (1, 0, 1), (-1, 0, 1), (1, 0, -1), (-1, 0, -1),
    (0, 1, 1), (0, -1, 1), (0, 1, -1), (0, -1, -1),
)  # fmt: skip


def simplex_noise3(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Vectorised 3-D simplex noise (Gustavson's formulation), values in about [−0.75, 0.75].

    ``x, y, z`` broadcast together; ``perm`` is an int64 [512] table (a permutation of 0..255,
    repeated twice) on the same device. Not bit-identical to OpenSimplex-2014 (a different lattice),
    but smooth noise of the same kind, scaled to the same per-point std.
    """
    x, y, z = torch.broadcast_tensors(x, y, z)
    p = torch.stack((x.reshape(-1), y.reshape(-1), z.reshape(-1)))  # [3, N]
    cell = torch.floor(p + p.sum(0) * _F3)  # skewed lattice cell
    p0 = p - cell + cell.sum(0) * _G3  # offset from the cell origin, unskewed
    x0, y0, z0 = p0
    # Which of the 6 tetrahedra of the skewed cube holds the point: corner offsets 1 and 2.
    a, b, c = x0 >= y0, y0 >= z0, x0 >= z0
    off1 = torch.stack((a & c, ~a & b, ~b & ~c))
    off2 = torch.stack((a | c, ~a | b, ~b | ~c))
    corner = torch.stack((torch.zeros_like(off1), off1, off2, torch.ones_like(off1)))  # [4, 3, N]
    d = p0 - corner.to(p.dtype) + torch.arange(4, dtype=p.dtype, device=p.device).view(4, 1, 1) * _G3
    lat = cell.long().bitwise_and(255) + corner.long()
    grad = perm.take(lat[:, 0] + perm.take(lat[:, 1] + perm.take(lat[:, 2]))) % 12  # [4, N]
    g = torch.tensor(_GRAD3, dtype=p.dtype, device=p.device).T.contiguous()  # [3, 12]
    dot = g[0].take(grad) * d[:, 0] + g[1].take(grad) * d[:, 1] + g[2].take(grad) * d[:, 2]
    t = (0.6 - (d * d).sum(1)).clamp_min(0.0).square()
    return (_SIMPLEX_SCALE * (t * t * dot).sum(0)).view(x.shape)


def fractal_simplex(
    offsets: torch.Tensor,
    channels: int,
    height: int,
    width: int,
    perm: torch.Tensor,
    octaves: int = 6,
    persistence: float = 0.6,
    frequency: float = 32.0,
) -> torch.Tensor:
    """Octave sum like the official field, one texture per sample: [B, channels, height, width].

    Octave o samples N3(col/f_o + ox, row/f_o + oy, ch/f_o + oz) with f_o = frequency / 2^o and
    amplitude persistence^o; ``offsets`` [B, octaves, 3] (x, y, z) make each sample's noise new.
    """
    dtype, device = offsets.dtype, offsets.device
    col = torch.arange(width, dtype=dtype, device=device).view(1, 1, 1, width)
    row = torch.arange(height, dtype=dtype, device=device).view(1, 1, height, 1)
    ch = torch.arange(channels, dtype=dtype, device=device).view(1, channels, 1, 1)
    out = torch.zeros(offsets.shape[0], channels, height, width, dtype=dtype, device=device)
    f, amp = float(frequency), 1.0
    for o in range(octaves):
        off = offsets[:, o].view(-1, 3, 1, 1, 1)
        out += amp * simplex_noise3(col / f + off[:, 0], row / f + off[:, 1], ch / f + off[:, 2], perm)
        f /= 2
        amp *= persistence
    return out
