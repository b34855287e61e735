"""Synthetic anomalies for the noisy teacher (paper §2.2.2, Algorithm 1).

λ-scaled noise patches are added to each image in [0, 1] pixel space, *before* normalisation and
*without* clipping, as the released code does. Where the patches go is the :class:`PatchSampler`'s
business (:mod:`.patches`); what they look like is the texture source's (:mod:`.textures`). The
synthesizer is built from the ``noise`` section of the config and adds all patches of a batch in one
masked operation on the images' device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..config import NoiseConfig
from ..config.validation import validate_section
from .patches import PatchSampler
from .textures import texture_source


def paste_patches(images: torch.Tensor, textures: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """``images`` with ``textures[b, :, :h, :w]`` added at (start_h, start_w) of ``patches[b]``.

    ``images`` [B, C, H, W]; ``textures`` [B, C, th, tw]; ``patches`` int64 [B, 4] rows
    (h, w, start_h, start_w). One gather builds a canvas holding each texture at its place and a
    mask selects where it is added; pixels outside every patch keep their exact values.
    """
    bsz, chans, height, width = images.shape
    th, tw = textures.shape[-2:]
    h, w, sh, sw = patches.to(images.device).T
    ti = torch.arange(height, device=images.device)[None, :] - sh[:, None]  # [B, H] row inside the texture
    tj = torch.arange(width, device=images.device)[None, :] - sw[:, None]  # [B, W]
    mask = ((ti >= 0) & (ti < h[:, None]))[:, :, None] & ((tj >= 0) & (tj < w[:, None]))[:, None, :]
    rows = ti.clamp(0, th - 1)[:, None, :, None].expand(bsz, chans, height, tw)
    canvas = textures.expand(bsz, chans, th, tw).gather(2, rows)
    canvas = canvas.gather(3, tj.clamp(0, tw - 1)[:, None, None, :].expand(bsz, chans, height, width))
    return torch.where(mask[:, None], images + canvas, images)


class AnomalySynthesizer:
    """``noisy, patches = synth(images01)``: images [B, C, H, W] in [0, 1] (not normalised) ->
    noisy images of the same dtype and the patches, int64 [B, K, 4] rows (h, w, start_h, start_w)
    with K = ``noise.patches_per_image``. Nothing is clipped.

    ``seed`` seeds the generator of patch positions and of random texture values; its state
    round-trips through ``state_dict`` so a resumed run draws the same next patches.
    """

    def __init__(self, noise: NoiseConfig, seed: int) -> None:
        self.noise = noise
        validate_section(self.noise, "noise")
        n = self.noise
        self.sampler = PatchSampler(n.patch_rng, seed, n.min_size, n.max_size, n.patches_per_image)
        self.texture = texture_source(n)

    def __call__(
        self, images01: torch.Tensor, rows: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``rows = (start, total)``: ``images01`` are rows [start, start + B) of a global batch of
        ``total`` images (one process's shard of it). The patches and textures are drawn for the
        whole batch on every process, so each image gets the noise it gets in a one-process run."""
        self._check(images01)
        start, total = (0, images01.shape[0]) if rows is None else rows
        patches = self.sampler.sample(total, tuple(images01.shape[-2:]))
        mine = slice(start, start + images01.shape[0])
        return self.apply(images01, patches, mine), torch.as_tensor(patches[mine], device=images01.device)

    def apply(
        self, images01: torch.Tensor, patches: np.ndarray | torch.Tensor, rows: slice | None = None
    ) -> torch.Tensor:
        """Add λ·noise inside the given patches: int [B, K, 4] (or [B, 4], one per image).

        Fixed-field noise is deterministic; fresh and Gaussian textures are drawn from the generator.
        ``rows``: the images are these rows of the patches' batch (textures are drawn for all rows).
        """
        self._check(images01)
        p = np.asarray(patches.cpu() if isinstance(patches, torch.Tensor) else patches, dtype=np.int64)
        bsz, chans, height, width = images01.shape
        if p.ndim == 2:
            p = p[:, None]
        rows = slice(0, p.shape[0]) if rows is None else rows
        if p.ndim != 3 or p[rows].shape[0] != bsz or p.shape[2] != 4:
            raise ValueError(f"patches must have shape [{bsz}, K, 4], got {tuple(p[rows].shape)}")
        h, w, sh, sw = p.reshape(-1, 4).T
        if bsz and ((h < 1) | (w < 1) | (sh < 0) | (sw < 0) | (sh + h > height) | (sw + w > width)).any():
            raise ValueError(f"patches must be non-empty and lie inside the {height}x{width} images")
        flat = p.reshape(-1, 4)
        textures = self.texture(flat[:, :2], chans, images01.dtype, images01.device, self.sampler.rng)
        textures = textures.reshape(p.shape[0], p.shape[1], *textures.shape[1:])[rows]
        out = images01
        for k in range(p.shape[1]):  # K is small (usually 1): one batched paste per patch index
            out = paste_patches(out, textures[:, k], torch.as_tensor(p[rows, k]))
        return out

    def _check(self, images01: torch.Tensor) -> None:
        if images01.dim() != 4 or not images01.is_floating_point():
            raise ValueError(f"expected a float batch [B, C, H, W], got {images01.dtype} {tuple(images01.shape)}")

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
