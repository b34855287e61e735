"""The learning rate of each iteration: a pure function of the iteration number, so a resumed
run continues on exactly the rate an uninterrupted run would use (no scheduler state to save)."""

from __future__ import annotations

import math


def learning_rate(base: float, schedule: str, iteration: int, iterations: int, warmup: int = 0) -> float:
    """The rate of ``iteration`` (1-based) of ``iterations``.

    'constant': ``base`` throughout (the released code and the paper). 'cosine': a linear warm-up
    over the first ``warmup`` iterations, then half a cosine from ``base`` down to 0 at the last
    iteration: large steps while the student is far from the teacher, small ones at the end, so the
    final weights are not one noisy Adam step away from where the loss is lowest.
    """
    if schedule == "constant":
        return base
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}")
    if iteration <= warmup:
        return base * iteration / warmup
    span = max(iterations - warmup, 1)
    progress = min(max(iteration - 1 - warmup, 0) / span, 1.0)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))
