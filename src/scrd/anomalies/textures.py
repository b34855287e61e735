"""What synthetic anomalies look like: the noise texture inside each patch (already scaled by λ).

Three sources, chosen by ``noise.kind`` and ``noise.field``:

* :class:`FixedSimplex` — the released code's behaviour, bit-exact: every patch is the top-left
  crop ``λ·F[:, :h, :w]`` of one OpenSimplex field F (see :mod:`.simplex`).
* :class:`FreshSimplex` — a new simplex texture for every patch (the paper's text): the same
  octave structure, shifted by a random per-octave offset.
* :class:`GaussianNoise` — i.i.d. Gaussian values (the paper's Table 3 ablation), std
  ``noise.gaussian_std`` before λ.

A source returns ``[N, C, max h, max w]``; patch n uses its top-left ``[h_n, w_n]`` crop. Random
values come from the generator passed in, the one that drew the patches, so one generator state
resumes both.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from ..config import NoiseConfig
from .patches import Rng
from .simplex import fractal_simplex, official_noise_field


class TextureSource(Protocol):
    def __call__(
        self, sizes: np.ndarray, channels: int, dtype: torch.dtype, device: torch.device, rng: Rng
    ) -> torch.Tensor: ...


def _max_size(sizes: np.ndarray) -> tuple[int, int]:
    return (int(sizes[:, 0].max()), int(sizes[:, 1].max())) if len(sizes) else (0, 0)


class FixedSimplex:
    def __init__(self, noise: NoiseConfig) -> None:
        field = official_noise_field(
            noise.field_seed, noise.max_size, noise.max_size, noise.octaves, noise.persistence, noise.frequency
        )
        self.scaled = noise.strength * field  # float64, λ·F as the released code computes it

    def __call__(self, sizes, channels, dtype, device, rng) -> torch.Tensor:
        if channels not in (1, 3):
            raise ValueError(f"fixed simplex noise needs 1 or 3 channels, got {channels}")
        hmax, wmax = _max_size(sizes)
        if hmax > self.scaled.shape[1] or wmax > self.scaled.shape[2]:
            raise ValueError(f"patch larger than the fixed field ({self.scaled.shape[1]}x{self.scaled.shape[2]})")
        crop = np.ascontiguousarray((self.scaled[:1] if channels == 1 else self.scaled)[:, :hmax, :wmax])
        return torch.as_tensor(crop).to(device=device, dtype=dtype).expand(len(sizes), -1, -1, -1)


class FreshSimplex:
    def __init__(self, noise: NoiseConfig) -> None:
        self.noise = noise
        table = np.random.default_rng(np.random.SeedSequence(noise.field_seed % 2**64)).permutation(256)
        self.perm = np.concatenate([table, table]).astype(np.int64)

    def __call__(self, sizes, channels, dtype, device, rng) -> torch.Tensor:
        n = self.noise
        hmax, wmax = _max_size(sizes)
        work = torch.float64 if dtype == torch.float64 else torch.float32
        # Offsets in lattice units: the permutation repeats every 256, so [0, 256) covers all noise.
        offsets = rng.uniform(0.0, 256.0, size=(len(sizes), n.octaves, 3))
        texture = fractal_simplex(
            torch.as_tensor(offsets).to(device=device, dtype=work),
            channels,
            hmax,
            wmax,
            torch.as_tensor(self.perm, device=device),
            n.octaves,
            n.persistence,
            n.frequency,
        )
        return (n.strength * texture).to(dtype)


class GaussianNoise:
    def __init__(self, noise: NoiseConfig) -> None:
        self.scale = noise.strength * noise.gaussian_std

    def __call__(self, sizes, channels, dtype, device, rng) -> torch.Tensor:
        hmax, wmax = _max_size(sizes)
        values = self.scale * rng.standard_normal((len(sizes), channels, hmax, wmax))
        return torch.as_tensor(values).to(device=device, dtype=dtype)


def texture_source(noise: NoiseConfig) -> TextureSource:
    """The texture source that ``noise.kind`` and ``noise.field`` name."""
    if noise.kind == "gaussian":
        return GaussianNoise(noise)
    return FixedSimplex(noise) if noise.field == "fixed" else FreshSimplex(noise)
