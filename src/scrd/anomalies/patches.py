"""Where synthetic anomalies go: patch sizes and positions, drawn from a resumable numpy generator.

The official bounds (released ``dataset.py``): h, w uniform in [10, 31] (``randint(10, 32)``), then
start_h = randint(1, H − h), start_w = randint(1, W − w), so a patch never touches row or column 0.
With a ``RandomState`` the draws are the same ``randint`` calls in the same order, so seed 111
replays the released run's patch sequence.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

RngMode = Literal["generator", "legacy", "official"]
Rng = np.random.Generator | np.random.RandomState
RNG_MODES: tuple[str, ...] = ("generator", "legacy", "official")


def make_rng(mode: RngMode, seed: int) -> Rng:
    """The sampler's generator.

    ``generator``: ``np.random.default_rng(seed)``. ``legacy``: ``np.random.RandomState(seed)``.
    ``official``: ``RandomState(seed)`` advanced by the two ``randint(-1e10, 1e10)`` dataset-seed draws
    that ``train_rsna.py`` makes first, so ``seed=111`` replays the official run's patch sequence.
    """
    if mode == "generator":
        return np.random.default_rng(seed)
    if mode not in ("legacy", "official"):
        raise ValueError(f"rng mode must be one of {', '.join(RNG_MODES)}, got {mode!r}")
    rng = np.random.RandomState(seed)
    if mode == "official":
        for _ in range(2):  # train and test dataset Simplex_CLASS seeds
            rng.randint(-10000000000, 10000000000)
    return rng


def _randint(rng: Rng, low: int, high: int) -> int:
    """Uniform integer in [low, high) with the draw method native to each generator type."""
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(low, high))
    return int(rng.integers(low, high))


def sample_patches(
    rng: Rng, count: int, image_size: tuple[int, int], min_size: int = 10, max_size: int = 31
) -> np.ndarray:
    """Draw ``count`` patches: int64 [count, 4] rows (h, w, start_h, start_w), in the official order."""
    height, width = image_size
    if not 1 <= min_size <= max_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
    if height < max_size + 2 or width < max_size + 2:
        raise ValueError(
            f"image {height}x{width} is too small for noise patches up to {max_size} pixels: "
            f"each side must be at least max_size + 2 = {max_size + 2}"
        )
    out = np.empty((count, 4), dtype=np.int64)
    for b in range(count):
        h = _randint(rng, min_size, max_size + 1)
        w = _randint(rng, min_size, max_size + 1)
        out[b] = (h, w, _randint(rng, 1, height - h), _randint(rng, 1, width - w))
    return out


class PatchSampler:
    """``per_image`` patches for every image of a batch: ``sample(B, (H, W))`` -> int64 [B, K, 4].

    Draws go image by image, patch by patch, so with one patch per image the sequence is the
    official one. The generator's state round-trips through JSON (``state_dict``).
    """

    def __init__(self, mode: RngMode, seed: int, min_size: int, max_size: int, per_image: int = 1) -> None:
        if per_image < 1:
            raise ValueError(f"per_image must be >= 1, got {per_image}")
        self.mode, self.rng = mode, make_rng(mode, seed)
        self.min_size, self.max_size, self.per_image = int(min_size), int(max_size), int(per_image)

    def sample(self, batch_size: int, image_size: tuple[int, int]) -> np.ndarray:
        flat = sample_patches(self.rng, batch_size * self.per_image, image_size, self.min_size, self.max_size)
        return flat.reshape(batch_size, self.per_image, 4)

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
        return {"rng_mode": self.mode, "rng_state": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["rng_mode"] != self.mode:
            raise ValueError(f"state is for rng mode {state['rng_mode']!r}, the sampler uses {self.mode!r}")
        s = state["rng_state"]
        if isinstance(self.rng, np.random.RandomState):
            keys = np.asarray(s["keys"], dtype=np.uint32)
            self.rng.set_state((s["bit_generator"], keys, s["pos"], s["has_gauss"], s["cached_gaussian"]))
        else:
            self.rng.bit_generator.state = s
