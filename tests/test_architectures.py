"""Every teacher architecture, random weights, a small input: shapes, finiteness, gradient flow."""

from __future__ import annotations

import pytest
import torch

from scrd.config import LossConfig
from scrd.losses.step import scrd_loss
from scrd.model import BACKBONES, SCRD

PAPER_LOSS = LossConfig(form="per_scale_ratio", alpha_placement="outside", batch_reduction="mean_of_ratios", eps=1e-6)


@pytest.mark.parametrize("arch", sorted(BACKBONES))
def test_training_step_on_every_architecture(arch):
    torch.manual_seed(0)
    size = 64
    model = SCRD(arch).train()
    spec = BACKBONES[arch]
    clean = torch.randn(2, 3, size, size)
    noisy = clean + 0.3 * torch.randn_like(clean)
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}

    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    terms, out = scrd_loss(model, clean, noisy, PAPER_LOSS, noisy_branch="full_model")
    optimizer.zero_grad()
    terms.loss.backward()
    optimizer.step()

    for k, (u, v, c) in enumerate(zip(out.teacher, out.student, spec.channels)):
        expected = (2, c, size // 2 ** (k + 2), size // 2 ** (k + 2))
        assert tuple(u.shape) == expected and tuple(v.shape) == expected, (k, u.shape, v.shape)
        assert torch.isfinite(v).all()
    assert out.alpha.shape == (2, 3) and torch.allclose(out.alpha.sum(1), torch.ones(2))
    assert torch.isfinite(terms.loss)

    used = model.bottleneck.used_parameter_names()
    for name, p in model.bottleneck.named_parameters():
        assert (p.grad is not None and p.grad.abs().sum() > 0) == (name in used), f"bottleneck.{name}"
    for part in (model.decoder, model.scale_head):
        for name, p in part.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None and not p.requires_grad for p in model.teacher.parameters())
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), f"teacher {k} changed in a training step"
    assert not model.teacher.training


def test_teacher_stays_frozen_when_parent_switches_modes():
    model = SCRD("resnet18")
    model.train()
    assert model.training and model.decoder.training and not model.teacher.training
    model.teacher.train()
    assert not model.teacher.training


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown arch 'resnet101'"):
        SCRD("resnet101")


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_student_can_take_the_sign_of_its_teacher(arch):
    """ResNet taps are post-ReLU; MobileNetV2's are linear bottlenecks, so its student must be able
    to output negative values too, or the cosine distance could never reach zero."""
    torch.manual_seed(0)
    out = SCRD(arch).eval()(torch.randn(2, 3, 64, 64))
    for u, v in zip(out.teacher, out.student):
        assert bool((u < 0).any()) == bool((v < 0).any()) == (arch == "mobilenet_v2")
