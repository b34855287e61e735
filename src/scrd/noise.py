"""Synthetic-anomaly generation for the noisy teacher (paper §2.2.2, Algorithm 1).

One rectangular patch of structured (simplex) or i.i.d. Gaussian noise is added to each image in
[0, 1] pixel space, *before* normalisation and *without* clipping, as the official code does.

* ``field="fixed"`` reproduces the official behaviour bit-exactly: the official ``Simplex_CLASS``
  is seeded once and always samples from coordinate 0, so every patch is the top-left crop
  ``F[:, :h, :w]`` of one 3×31×31 OpenSimplex field (``official_noise_field``).
* ``field="fresh"`` draws a new texture for every sample: a vectorised 3-D simplex noise in torch
  with the same octave structure, shifted by a random per-sample offset.
* Patch sizes and positions follow the official bounds: h, w ∈ [10, 31], start ∈ [1, S − size − 1].

All randomness comes from the synthesizer's own numpy generator, so a run is reproducible from its
seed and resumable from ``state_dict()``; the textures are identical on every device.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np
import torch

OFFICIAL_NOISE_SEED = 7698519916
"""Seed of the official training noise: ``np.random.randint(-1e10, 1e10)`` after ``np.random.seed(111)``."""

# Per-pixel std of the official 6-octave, persistence-0.6 OpenSimplex sum pooled over seeds (0.40 over
# 60 seeds at 31×31; the fresh torch noise gives 0.39). Default Gaussian std: equal energy at one λ.
SIMPLEX_FRACTAL_STD = 0.4

RngMode = Literal["generator", "legacy", "official"]
Rng = np.random.Generator | np.random.RandomState


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
    seed: int = OFFICIAL_NOISE_SEED,
    height: int = 31,
    width: int = 31,
    octaves: int = 6,
    persistence: float = 0.6,
    frequency: float = 32.0,
) -> np.ndarray:
    """The official simplex texture F_seed(h, w): float64 [3, h, w], bit-exact with ``models/noise.py``.

    F[c, i, j] = Σ_o persistence^o · N3(j/f_o, i/f_o, c/f_o) with f_o = frequency / 2^o (x = column,
    y = row, z = channel), computed with ``opensimplex==0.4.5.1``. Cached (≈ 0.7 s per field); the
    returned array is read-only.
    """
    return _official_field_cached(
        int(seed), int(height), int(width), int(octaves), float(persistence), float(frequency)
    )


def _randint(rng: Rng, low: int, high: int) -> int:
    """Uniform integer in [low, high) with the draw method native to each generator type."""
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(low, high))
    return int(rng.integers(low, high))


def sample_patches(
    rng: Rng,
    batch_size: int,
    image_size: tuple[int, int],
    min_size: int = 10,
    max_size: int = 31,
) -> np.ndarray:
    """Draw one patch per sample: int64 [B, 4] rows (h, w, start_h, start_w).

    Per sample, in the official order: h, w uniform in [min_size, max_size], then
    start_h = randint(1, H − h), start_w = randint(1, W − w) (upper bound exclusive, start never 0).
    With a ``RandomState`` the draws are ``randint`` calls, identical to the official dataset.
    """
    height, width = image_size
    if not 1 <= min_size <= max_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
    if height < max_size + 2 or width < max_size + 2:
        raise ValueError(
            f"image {height}x{width} is too small for noise patches up to {max_size} pixels: "
            f"each side must be at least max_size + 2 = {max_size + 2}"
        )
    out = np.empty((batch_size, 4), dtype=np.int64)
    for b in range(batch_size):
        h = _randint(rng, min_size, max_size + 1)
        w = _randint(rng, min_size, max_size + 1)
        out[b] = (h, w, _randint(rng, 1, height - h), _randint(rng, 1, width - w))
    return out


def make_rng(mode: RngMode, seed: int) -> Rng:
    """Build the synthesizer's generator.

    ``generator``: ``np.random.default_rng(seed)``. ``legacy``: ``np.random.RandomState(seed)``.
    ``official``: ``RandomState(seed)`` advanced by the two ``randint(-1e10, 1e10)`` dataset-seed draws
    that ``train_rsna.py`` makes first, so ``seed=111`` replays the official run's patch sequence.
    """
    if mode == "generator":
        return np.random.default_rng(seed)
    if mode not in ("legacy", "official"):
        raise ValueError(f"rng mode must be 'generator', 'legacy' or 'official', got {mode!r}")
    rng = np.random.RandomState(seed)
    if mode == "official":
        for _ in range(2):  # train and test dataset Simplex_CLASS seeds
            rng.randint(-10000000000, 10000000000)
    return rng


# --------------------------------------------------------------------------- torch simplex noise
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


# --------------------------------------------------------------------------- synthesizer
class AnomalySynthesizer:
    """Add one λ-scaled noise patch per image: ``noisy, patches = synth(images01)``.

    Args:
        kind: ``"simplex"`` (paper default) or ``"gaussian"`` (paper Table 3 ablation).
        field: simplex only. ``"fixed"``: the official crop of one OpenSimplex field (bit-exact);
            ``"fresh"``: new torch simplex noise per sample (random coordinate offset per octave;
            any channel count, channel c is the z = c slice).
        strength: λ (paper: 0.2).
        octaves, persistence, frequency: simplex octave structure (official 6, 0.6, 32).
        min_size, max_size: patch side bounds, inclusive (official 10, 31).
        seed: seed of the generator that draws patches, offsets and Gaussian values.
        field_seed: OpenSimplex seed of the fixed field and the fresh-noise permutation table.
        rng: ``"generator"`` (numpy Generator), ``"legacy"`` (RandomState, official draw order) or
            ``"official"`` (RandomState after the official script's two seed draws; see ``make_rng``).
        gaussian_std: std of the Gaussian noise before λ. Default ``SIMPLEX_FRACTAL_STD`` (0.4), the
            per-pixel std of the 6-octave simplex sum, so at equal λ the two kinds differ in texture,
            not energy (the paper does not state its Gaussian scale).
    """

    def __init__(
        self,
        kind: Literal["simplex", "gaussian"] = "simplex",
        field: Literal["fixed", "fresh"] = "fixed",
        strength: float = 0.2,
        octaves: int = 6,
        persistence: float = 0.6,
        frequency: float = 32.0,
        min_size: int = 10,
        max_size: int = 31,
        seed: int = 0,
        field_seed: int = OFFICIAL_NOISE_SEED,
        rng: RngMode = "generator",
        gaussian_std: float = SIMPLEX_FRACTAL_STD,
    ) -> None:
        if kind not in ("simplex", "gaussian"):
            raise ValueError(f"kind must be 'simplex' or 'gaussian', got {kind!r}")
        if field not in ("fixed", "fresh"):
            raise ValueError(f"field must be 'fixed' or 'fresh', got {field!r}")
        if not 1 <= min_size <= max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
        if octaves < 1 or frequency <= 0 or gaussian_std < 0:
            raise ValueError("need octaves >= 1, frequency > 0 and gaussian_std >= 0")
        self.kind, self.field, self.strength = kind, field, float(strength)
        self.octaves, self.persistence, self.frequency = int(octaves), float(persistence), float(frequency)
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.field_seed, self.gaussian_std = int(field_seed), float(gaussian_std)
        self.rng_mode: RngMode = rng
        self.rng = make_rng(rng, seed)
        if kind == "simplex" and field == "fixed":
            texture = official_noise_field(
                self.field_seed, self.max_size, self.max_size, self.octaves, self.persistence, self.frequency
            )
            self._fixed = self.strength * texture  # float64, λ·F as the official code computes it
        elif kind == "simplex":
            table = np.random.default_rng(np.random.SeedSequence(self.field_seed % 2**64)).permutation(256)
            self._perm = np.concatenate([table, table]).astype(np.int64)

    def __call__(self, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (noisy images, patches): images [B, C, H, W] in [0, 1] (not normalised), patches
        int64 [B, 4] rows (h, w, start_h, start_w) on the images' device. Nothing is clipped."""
        self._check(images01)
        patches = sample_patches(
            self.rng, images01.shape[0], tuple(images01.shape[-2:]), self.min_size, self.max_size
        )
        return self.apply(images01, patches), torch.as_tensor(patches, device=images01.device)

    def apply(self, images01: torch.Tensor, patches: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Add λ·noise inside the given patches (h, w, start_h, start_w), in the images' dtype.

        Fixed-field noise is deterministic; fresh and Gaussian textures are drawn from ``self.rng``.
        """
        self._check(images01)
        p = np.asarray(patches.cpu() if isinstance(patches, torch.Tensor) else patches, dtype=np.int64)
        bsz, chans, height, width = images01.shape
        if p.shape != (bsz, 4):
            raise ValueError(f"patches must have shape [{bsz}, 4], got {tuple(p.shape)}")
        h, w, sh, sw = p.T
        if bsz and ((h < 1) | (w < 1) | (sh < 0) | (sw < 0) | (sh + h > height) | (sw + w > width)).any():
            raise ValueError(f"patches must be non-empty and lie inside the {height}x{width} images")
        textures = self._textures(p, chans, images01.dtype, images01.device)
        out = images01.clone()
        for b, (h, w, sh, sw) in enumerate(p.tolist()):
            out[b, :, sh : sh + h, sw : sw + w] += textures[b, :, :h, :w]
        return out

    def _check(self, images01: torch.Tensor) -> None:
        if images01.dim() != 4 or not images01.is_floating_point():
            raise ValueError(
                f"expected a float batch [B, C, H, W], got {images01.dtype} {tuple(images01.shape)}"
            )
        if self.kind == "simplex" and self.field == "fixed" and images01.shape[1] not in (1, 3):
            raise ValueError(f"fixed simplex noise needs 1 or 3 channels, got {images01.shape[1]}")

    def _textures(
        self, patches: np.ndarray, chans: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """λ-scaled noise [B, C, max h, max w] in ``dtype``; sample b uses its top-left [h_b, w_b] crop."""
        bsz = patches.shape[0]
        hmax, wmax = (int(patches[:, 0].max()), int(patches[:, 1].max())) if bsz else (0, 0)
        if self.kind == "gaussian":
            values = self.strength * self.gaussian_std * self.rng.standard_normal((bsz, chans, hmax, wmax))
            return torch.as_tensor(values).to(device=device, dtype=dtype)
        if self.field == "fixed":
            if hmax > self._fixed.shape[1] or wmax > self._fixed.shape[2]:
                raise ValueError(f"patch larger than the fixed field ({self.max_size}x{self.max_size})")
            crop = np.ascontiguousarray((self._fixed[:1] if chans == 1 else self._fixed)[:, :hmax, :wmax])
            return torch.as_tensor(crop).to(device=device, dtype=dtype).expand(bsz, -1, -1, -1)
        # Offsets in lattice units: the permutation repeats every 256, so [0, 256) covers all noise.
        work = torch.float64 if dtype == torch.float64 else torch.float32
        offsets = self.rng.uniform(0.0, 256.0, size=(bsz, self.octaves, 3))
        noise = fractal_simplex(
            torch.as_tensor(offsets).to(device=device, dtype=work),
            chans,
            hmax,
            wmax,
            torch.as_tensor(self._perm, device=device),
            self.octaves,
            self.persistence,
            self.frequency,
        )
        return (self.strength * noise).to(dtype)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable generator state, so a resumed run draws the same next patches."""
        if isinstance(self.rng, np.random.RandomState):
            name, keys, pos, has_gauss, cached = self.rng.get_state()
            state: dict[str, Any] = {
                "bit_generator": name,
                "keys": [int(v) for v in keys],
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached),
            }
        else:
            state = self.rng.bit_generator.state
        return {"rng_mode": self.rng_mode, "rng_state": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator state written by ``state_dict``."""
        if state["rng_mode"] != self.rng_mode:
            raise ValueError(
                f"state is for rng mode {state['rng_mode']!r}, synthesizer uses {self.rng_mode!r}"
            )
        s = state["rng_state"]
        if isinstance(self.rng, np.random.RandomState):
            keys = np.asarray(s["keys"], dtype=np.uint32)
            self.rng.set_state((s["bit_generator"], keys, s["pos"], s["has_gauss"], s["cached_gaussian"]))
        else:
            self.rng.bit_generator.state = s
