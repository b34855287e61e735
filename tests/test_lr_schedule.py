"""The learning-rate schedule: its values by hand, and that training steps with them."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_config

from scrd.config import ConfigError
from scrd.training.lr_schedule import learning_rate
from scrd.training.train import train


def test_constant_is_the_base_rate_at_every_iteration():
    assert [learning_rate(1e-3, "constant", it, 10) for it in (1, 5, 10)] == [1e-3, 1e-3, 1e-3]


def test_cosine_starts_at_the_base_halves_midway_and_ends_near_zero():
    # iterations 1..5: progress (it-1)/5 = 0, 0.2, 0.4, 0.6, 0.8; rate = 0.5·(1 + cos(π·progress))
    rates = [learning_rate(2.0, "cosine", it, 5) for it in range(1, 6)]
    expected = [2.0, 1.0 + math.cos(0.2 * math.pi), 1.0 + math.cos(0.4 * math.pi), 1.0 + math.cos(0.6 * math.pi)]
    assert rates[:4] == pytest.approx(expected)
    assert rates[4] == pytest.approx(1.0 + math.cos(0.8 * math.pi))  # 0.0979: small, never 0 for a step
    assert learning_rate(2.0, "cosine", 3, 5) == pytest.approx(1.0 + math.cos(0.4 * math.pi))
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_cosine_warms_up_linearly_before_decaying():
    # warm-up 4 of 14: 0.25, 0.5, 0.75, 1.0 of the base, then the cosine over the remaining 10
    assert [learning_rate(1.0, "cosine", it, 14, warmup=4) for it in (1, 2, 3, 4)] == [0.25, 0.5, 0.75, 1.0]
    assert learning_rate(1.0, "cosine", 5, 14, warmup=4) == 1.0
    assert learning_rate(1.0, "cosine", 10, 14, warmup=4) == pytest.approx(0.5)  # progress 5/10


def test_a_warmup_as_long_as_training_is_refused():
    with pytest.raises(ConfigError, match="lr_warmup"):
        tiny_config(train__lr_schedule="cosine", train__lr_warmup=6)


def test_training_uses_the_scheduled_rate_of_its_last_iteration(phantom_data, tmp_path):
    run = tmp_path / "run"
    train(tiny_config("denoising", train__lr_schedule="cosine", train__lr=0.01), phantom_data, run, progress=False)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(learning_rate(0.01, "cosine", 6, 6))
