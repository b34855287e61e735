"""Numerical parity of the model, loss and gradients with the released SCRD code.

Reference values: tests/fixtures/golden (copied from shared/golden; see its README for how they
were produced and for the tolerances used here).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from golden import canonical_state_dict, keys, npz, t

from scrd.config import preset
from scrd.losses.step import scrd_loss
from scrd.model import SCRD, from_official_state_dict, load_official_state_dict, to_official_state_dict

OFFICIAL_LOSS = preset("official").loss
ARCHS_WITH_FORWARD = ["resnet18", "wide_resnet50_2"]


def _official_model(arch: str) -> SCRD:
    model = SCRD(arch)
    load_official_state_dict(model, canonical_state_dict(arch))
    return model


@pytest.fixture(scope="module", params=ARCHS_WITH_FORWARD)
def eval_case(request):
    arch = request.param
    model = _official_model(arch).eval()
    return arch, model, npz(f"forward_{arch}_64.npz")


def close(actual: torch.Tensor, expected: np.ndarray, atol: float, rtol: float = 0.0) -> None:
    np.testing.assert_allclose(actual.detach().cpu().numpy(), expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize("arch", ["resnet18", "wide_resnet50_2"])
def test_canonical_weights_fingerprints(arch):
    """Our torch build draws the same canonical weights as the generating run (else nothing can match)."""
    state = canonical_state_dict(arch)
    for entry in keys(arch)["entries"]:
        tensor = state[entry["key"]].contiguous()
        digest = hashlib.sha256(tensor.numpy().astype(tensor.numpy().dtype.newbyteorder("<")).tobytes()).hexdigest()
        assert digest == entry["canonical_seed0_sha256"], entry["key"]


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "wide_resnet50_2"])
def test_state_dict_layout_matches_released_code(arch):
    model = SCRD(arch)
    official = to_official_state_dict(model.state_dict())
    expected = [(e["key"], list(e["shape"]), e["dtype"]) for e in keys(arch)["entries"]]
    actual = [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in official.items()]
    assert actual == expected
    # and a released checkpoint loads strictly, round-tripping through the converter
    state = canonical_state_dict(arch) if arch == "resnet18" else official
    load_official_state_dict(model, state)
    assert list(from_official_state_dict(to_official_state_dict(model.state_dict()))) == list(model.state_dict())


def test_converter_rejects_foreign_keys():
    with pytest.raises(KeyError, match="prefixes"):
        from_official_state_dict({"backbone.conv1.weight": torch.zeros(1)})


def test_eval_forward_matches(eval_case):
    arch, model, g = eval_case
    with torch.no_grad():
        out = model(t(g["x"]))
        noisy = model.encode(t(g["x_noise"]))
        pooled = model.scale_head.pool(out.phi).flatten(1)
        logits = model.scale_head.linear(pooled)
    for k in range(3):
        close(out.teacher[k], g[f"u{k + 1}"], 1e-4, 1e-4)
        close(noisy[k], g[f"z{k + 1}"], 1e-4, 1e-4)
        close(out.student[k], g[f"v{k + 1}"], 1e-4, 1e-4)
    close(out.phi, g["phi"], 1e-4, 1e-4)
    close(pooled, g["pooled"], 1e-4, 1e-4)
    close(logits, g["logits"], 1e-5)
    close(out.alpha, g["alpha"], 1e-5)


def test_eval_official_loss_and_gradients_end_to_end(eval_case):
    arch, model, g = eval_case
    model.zero_grad()
    terms, out = scrd_loss(model, t(g["x"]), t(g["x_noise"]), OFFICIAL_LOSS, noisy_branch="full_model")
    for v in out.student:
        v.retain_grad()
    terms.loss.backward()
    close(terms.loss, g["loss"], 1e-5)
    close(terms.d_uv.mean(0).sum(), g["loss_num"], 1e-5)
    close(terms.d_zv.mean(0).sum(), g["loss_den"], 1e-5)
    for k in range(3):
        expected = g[f"grad_v{k + 1}_through_decoder"]
        close(out.student[k].grad, expected, 3e-3 * np.abs(expected).max())


@pytest.mark.parametrize("arch", ARCHS_WITH_FORWARD)
def test_official_loss_from_stored_features(arch):
    """Stored u, z, v, α as leaves: loss, ∂L/∂v_k and ∂L/∂α (zero: α cancels inside the cosine)."""
    from scrd.losses.distillation import distillation_loss

    g = npz(f"forward_{arch}_64.npz")
    u = [t(g[f"u{k}"]) for k in (1, 2, 3)]
    z = [t(g[f"z{k}"]) for k in (1, 2, 3)]
    v = [t(g[f"v{k}"]).requires_grad_(True) for k in (1, 2, 3)]
    alpha = t(g["alpha"]).requires_grad_(True)
    terms = distillation_loss(u, v, alpha, OFFICIAL_LOSS, noisy=z)
    terms.loss.backward()
    close(terms.loss, g["loss"], 1e-6)
    for k in range(3):
        expected = g[f"grad_v{k + 1}"]
        close(v[k].grad, expected, 1e-3 * np.abs(expected).max())
    assert alpha.grad.abs().max() < 1e-5


def test_train_mode_step_matches_released_code():
    """Train mode: batch statistics in OCBE/decoder, two BN updates (clean then noisy pass)."""
    g = npz("forward_resnet18_64.npz")
    model = _official_model("resnet18").train()
    teacher_stats = {k: v.clone() for k, v in model.teacher.state_dict().items() if "running" in k}
    terms, out = scrd_loss(model, t(g["x"]), t(g["x_noise"]), OFFICIAL_LOSS, noisy_branch="full_model")
    for v in out.student:
        v.retain_grad()
    terms.loss.backward()
    for k in range(3):
        close(out.student[k], g[f"train_v{k + 1}"], 5e-4, 1e-4)
        expected = g[f"train_grad_v{k + 1}_through_decoder"]
        close(out.student[k].grad, expected, 1e-2 * np.abs(expected).max())
    close(out.phi, g["train_phi"], 5e-4, 1e-4)
    close(out.alpha, g["train_alpha"], 1e-5)
    close(terms.loss, g["train_loss"], 1e-5)

    official = to_official_state_dict(model.state_dict())
    names = [str(n) for n in g["train_bn_modules"]]
    means = torch.cat([official[f"{n}.running_mean"] for n in names])
    variances = torch.cat([official[f"{n}.running_var"] for n in names])
    close(means, g["train_bn_running_mean_concat"], 1e-5, 1e-5)
    close(variances, g["train_bn_running_var_concat"], 1e-5, 1e-5)
    for n in names:
        assert int(official[f"{n}.num_batches_tracked"]) == (0 if n == "bn.bn4" else 2), n
    for k, v in model.teacher.state_dict().items():
        if "running" in k:
            assert torch.equal(v, teacher_stats[k]), f"teacher BN statistic {k} moved"
