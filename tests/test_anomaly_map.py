"""Anomaly maps and scores against the official golden values (README §5, §6, §9) and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from golden import npz as golden
from scipy.ndimage import gaussian_filter

from scrd.scoring.maps import (
    anomaly_map,
    combine_scales,
    gaussian_smooth,
    image_score,
    scale_maps,
    upsampled_scale_maps,
)

ARCHS = ["resnet18", "wide_resnet50_2"]


def features(arch: str) -> tuple[list[torch.Tensor], list[torch.Tensor], dict[str, np.ndarray]]:
    g = golden(f"forward_{arch}_64.npz")
    u = [torch.from_numpy(g[f"u{k}"]) for k in (1, 2, 3)]
    v = [torch.from_numpy(g[f"v{k}"]) for k in (1, 2, 3)]
    return u, v, g


def assert_close(actual: torch.Tensor, expected: np.ndarray, atol: float) -> None:
    assert tuple(actual.shape) == expected.shape
    np.testing.assert_allclose(actual.double().numpy(), expected, atol=atol, rtol=0)


# ----------------------------------------------------------------------------- golden parity
@pytest.mark.parametrize("arch", ARCHS)
def test_scale_maps_match_official(arch: str) -> None:
    u, v, g = features(arch)
    maps = scale_maps(u, v)
    assert len(maps) == 3
    for k, m in enumerate(maps, start=1):
        assert_close(m, g[f"amap_scale_native_{k}"], atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_upsampled_sum_smooth_and_scores_match_official(arch: str) -> None:
    u, v, g = features(arch)
    stack = upsampled_scale_maps(u, v, 64)
    assert_close(stack, g["amap_scales_up"], atol=1e-6)
    assert_close(combine_scales(stack), g["amap_sum"], atol=2e-6)
    amap = anomaly_map(u, v, (64, 64))
    assert_close(amap, g["amap_smooth"], atol=2e-6)
    assert_close(image_score(amap, "mean"), g["score_mean"], atol=2e-6)
    assert_close(image_score(amap, "max"), g["score_max"], atol=2e-6)


def test_smoothing_the_stored_sum_is_exact_in_float64() -> None:
    g = golden("forward_resnet18_64.npz")
    assert_close(gaussian_smooth(torch.from_numpy(g["amap_sum"]), 4.0), g["amap_smooth"], atol=1e-12)


def test_alpha_weighted_map_matches_loss_forms() -> None:
    u, v, g = features("resnet18")
    lf = golden("loss_forms.npz")
    alpha = torch.from_numpy(g["alpha"])
    weighted_sum = combine_scales(upsampled_scale_maps(u, v, 64), alpha)
    assert_close(weighted_sum, lf["amap_alpha_weighted_sum"], atol=2e-6)
    amap = anomaly_map(u, v, 64, alpha=alpha)
    assert_close(amap, lf["amap_alpha_weighted_smooth"], atol=2e-6)
    assert_close(image_score(amap), lf["score_alpha_weighted_mean"], atol=2e-6)
    # Uniform weights are 1/3 of the official unweighted map.
    third = anomaly_map(u, v, 64, alpha=torch.full((2, 3), 1 / 3))
    assert_close(3 * third, g["amap_smooth"], atol=3e-6)


def test_alpha_shape_is_checked() -> None:
    u, v, _ = features("resnet18")
    with pytest.raises(ValueError, match="alpha"):
        anomaly_map(u, v, 64, alpha=torch.ones(2, 2))


def test_non_square_image_size_and_sigma_zero() -> None:
    u, v, _ = features("resnet18")
    amap = anomaly_map(u, v, (48, 80), sigma=0.0)
    assert amap.shape == (2, 48, 80)
    torch.testing.assert_close(amap, combine_scales(upsampled_scale_maps(u, v, (48, 80))))


# ----------------------------------------------------------------------------- smoothing vs scipy
@pytest.mark.parametrize("sigma", [1.0, 2.5, 4.0])
@pytest.mark.parametrize("size", [(1, 1), (1, 5), (3, 7), (9, 40), (17, 33), (64, 64)])
def test_gaussian_smooth_equals_scipy(size: tuple[int, int], sigma: float) -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((3, *size))
    expected = np.stack([gaussian_filter(m, sigma) for m in maps])
    maps_t = torch.from_numpy(maps)
    np.testing.assert_allclose(gaussian_smooth(maps_t, sigma).numpy(), expected, atol=1e-12, rtol=0)
    smoothed32 = gaussian_smooth(maps_t.float(), sigma)
    np.testing.assert_allclose(smoothed32.double().numpy(), expected, atol=1e-6, rtol=0)


def test_gaussian_smooth_boundary_is_scipy_reflect_not_torch_reflect() -> None:
    # A ramp distinguishes edge-duplicating 'reflect' (scipy) from 'mirror' (torch F.pad 'reflect').
    ramp = torch.arange(10, dtype=torch.float64).repeat(4, 1)
    out = gaussian_smooth(ramp, 1.0)
    mirror = gaussian_filter(ramp.numpy(), 1.0, mode="mirror")
    np.testing.assert_allclose(out.numpy(), gaussian_filter(ramp.numpy(), 1.0), atol=1e-12)
    assert np.abs(out.numpy() - mirror).max() > 1e-3


def test_gaussian_smooth_keeps_leading_dims_and_constants() -> None:
    maps = torch.rand(2, 3, 20, 24, dtype=torch.float64)
    out = gaussian_smooth(maps, 2.0)
    assert out.shape == maps.shape
    np.testing.assert_allclose(out[1, 2].numpy(), gaussian_filter(maps[1, 2].numpy(), 2.0), atol=1e-12)
    const = torch.full((1, 7, 7), 0.75)
    torch.testing.assert_close(gaussian_smooth(const, 4.0), const)
    assert gaussian_smooth(maps, 0.0) is maps
    with pytest.raises(ValueError, match="sigma"):
        gaussian_smooth(maps, -1.0)


# ----------------------------------------------------------------------------- edge cases
def test_zero_features_give_finite_maps() -> None:
    v = [torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    zeros = [torch.zeros_like(t) for t in v]
    for teacher, student in ((zeros, v), (v, zeros), (zeros, zeros)):
        maps = scale_maps(teacher, student)
        assert all(torch.equal(m, torch.ones_like(m)) for m in maps)  # cos = 0 -> distance 1
        assert torch.isfinite(anomaly_map(teacher, student, 16)).all()


def test_identical_features_give_zero_map() -> None:
    u = [torch.randn(3, 8, 8, 8), torch.randn(3, 16, 4, 4)]
    amap = anomaly_map(u, [t.clone() for t in u], 32)
    assert amap.abs().max() < 1e-6


def test_mismatched_features_are_rejected() -> None:
    with pytest.raises(ValueError, match="scales"):
        scale_maps([torch.zeros(1, 2, 4, 4)], [])
    with pytest.raises(ValueError, match="matching"):
        scale_maps([torch.zeros(1, 2, 4, 4)], [torch.zeros(1, 3, 4, 4)])


def test_image_score_reductions() -> None:
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[4.0, 4.0], [4.0, 8.0]]])
    torch.testing.assert_close(image_score(maps, "mean"), torch.tensor([1.5, 5.0]))
    torch.testing.assert_close(image_score(maps, "max"), torch.tensor([3.0, 8.0]))
    with pytest.raises(ValueError, match="reduction"):
        image_score(maps, "median")  # type: ignore[arg-type]
