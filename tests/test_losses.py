"""Every loss form against loss_forms.npz (float64 references from the released-code features)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from golden import npz, t

from scrd.config import LossConfig
from scrd.losses.distillation import distillation_loss, flat_cosine_distance

FORMS = {
    "eq4": LossConfig(form="per_scale_ratio", alpha_placement="outside", batch_reduction="mean_of_ratios", eps=1e-6),
    "alg2_mean_of_ratios": LossConfig(
        form="ratio_of_sums", alpha_placement="outside", batch_reduction="mean_of_ratios", eps=0.0
    ),
    "alg2_ratio_of_means": LossConfig(
        form="ratio_of_sums", alpha_placement="outside", batch_reduction="ratio_of_means", eps=0.0
    ),
    "rd4ad": LossConfig(form="rd4ad", alpha_placement="none"),
    "official_effective_no_alpha": LossConfig(
        form="ratio_of_sums", alpha_placement="none", batch_reduction="ratio_of_means", eps=0.0
    ),
}


def _leaves():
    g = npz("forward_resnet18_64.npz")
    u = [t(g[f"u{k}"]) for k in (1, 2, 3)]
    z = [t(g[f"z{k}"]) for k in (1, 2, 3)]
    v = [t(g[f"v{k}"]).requires_grad_(True) for k in (1, 2, 3)]
    alpha = t(g["alpha"]).requires_grad_(True)
    return u, z, v, alpha


@pytest.mark.parametrize("name", sorted(FORMS))
def test_loss_form_value_and_gradients(name):
    ref = npz("loss_forms.npz")
    u, z, v, alpha = _leaves()
    terms = distillation_loss(u, v, alpha, FORMS[name], noisy=z)
    terms.loss.backward()
    np.testing.assert_allclose(terms.loss.item(), ref[name], atol=2e-6)
    for k in range(3):
        expected = ref[f"grad_v{k + 1}__{name}"]
        np.testing.assert_allclose(v[k].grad.numpy(), expected, atol=1e-3 * np.abs(expected).max())
    grad_alpha = alpha.grad if alpha.grad is not None else torch.zeros_like(alpha)
    np.testing.assert_allclose(grad_alpha.numpy(), ref[f"grad_alpha__{name}"], atol=1e-6)


def test_per_sample_losses_and_distances():
    ref = npz("loss_forms.npz")
    u, z, v, alpha = _leaves()
    terms = distillation_loss(u, v, alpha, FORMS["eq4"], noisy=z)
    np.testing.assert_allclose(terms.d_uv.numpy(), ref["d_uv"], atol=1e-6)
    np.testing.assert_allclose(terms.d_zv.numpy(), ref["d_zv"], atol=1e-6)
    a = alpha.detach()
    eq4 = (a * terms.d_uv / (terms.d_zv + 1e-6)).sum(1)
    np.testing.assert_allclose(eq4.numpy(), ref["eq4_per_sample"], atol=2e-6)
    alg2 = (a * terms.d_uv).sum(1) / (a * terms.d_zv).sum(1)
    np.testing.assert_allclose(alg2.numpy(), ref["alg2_per_sample"], atol=2e-6)


def test_alpha_inside_cosine_is_a_no_op_but_outside_trains_alpha():
    u, z, v, alpha = _leaves()
    inside = LossConfig(form="ratio_of_sums", alpha_placement="inside_cosine", student_input="clean")
    loss_inside = distillation_loss(u, v, alpha, inside, noisy=z).loss
    none = LossConfig(form="ratio_of_sums", alpha_placement="none", student_input="clean")
    loss_none = distillation_loss(u, v, alpha, none, noisy=z).loss
    assert abs(loss_inside.item() - loss_none.item()) < 1e-6
    outside = distillation_loss(u, v, alpha, FORMS["alg2_ratio_of_means"], noisy=z).loss
    (g,) = torch.autograd.grad(outside, alpha)
    assert g.abs().max() > 1e-4


def test_detached_alpha_gets_no_gradient():
    u, z, v, alpha = _leaves()
    cfg = LossConfig(form="per_scale_ratio", alpha_placement="outside", alpha_grad="detach", eps=1e-6)
    loss = distillation_loss(u, v, alpha, cfg, noisy=z).loss
    loss.backward()
    assert alpha.grad is None and v[0].grad is not None


def test_batch_reduction_changes_eq4_as_documented():
    u, z, v, alpha = _leaves()
    cfg = LossConfig(form="per_scale_ratio", alpha_placement="outside", batch_reduction="ratio_of_means", eps=1e-6)
    terms = distillation_loss(u, v, alpha, cfg, noisy=z)
    a = alpha.detach()
    expected = ((a * terms.d_uv).mean(0) / (terms.d_zv.mean(0) + 1e-6)).sum()
    assert torch.allclose(terms.loss.detach(), expected)


def test_eps_prevents_division_by_zero_when_noisy_equals_student():
    u, _, v, alpha = _leaves()
    same = [x.detach().clone() for x in v]
    loss = distillation_loss(u, v, alpha, FORMS["eq4"], noisy=same).loss
    assert torch.isfinite(loss)


def test_zero_features_give_finite_distance():
    d = flat_cosine_distance(torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3))
    assert torch.isfinite(d).all()


def test_missing_inputs_are_errors():
    u, z, v, alpha = _leaves()
    with pytest.raises(ValueError, match="noisy"):
        distillation_loss(u, v, alpha, FORMS["eq4"])
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(u, v, None, FORMS["eq4"], noisy=z)
