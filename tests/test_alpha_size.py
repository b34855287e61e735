"""α against lesion size on synthetic blobs: the lesions grow with the radius, keep their centre,
and the correlation is computed per scale."""

from __future__ import annotations

import pytest
import torch

from scrd.lab.alpha_size import alpha_by_lesion_size, lesions_of_sizes


def _changed_area(images: torch.Tensor, base: torch.Tensor) -> list[int]:
    return [int(((im - base).abs().amax(0) > 0.05).sum()) for im in images]


def test_lesions_grow_with_the_radius_around_one_centre_per_image():
    normals = torch.full((2, 3, 64, 64), 0.5)
    images, radii, masks = lesions_of_sizes(normals, (0.05, 0.1, 0.2), seed=0)
    assert images.shape == (6, 3, 64, 64) and radii.tolist() == [0.05, 0.05, 0.1, 0.1, 0.2, 0.2]
    first = images[0::2]  # image 0 at each radius
    area = _changed_area(first, normals[0])
    assert area[0] < area[1] < area[2]
    peaks = [divmod(int((im - 0.5).abs().amax(0).argmax()), 64) for im in first]
    assert peaks[0] == peaks[1] == peaks[2]  # same centre at every radius
    assert masks.shape == (6, 64, 64) and [int(m.sum()) for m in masks[0::2]] == sorted(
        int(m.sum()) for m in masks[0::2]
    )


def test_spearman_per_scale_and_mean_alpha_per_radius():
    def alpha_of(images: torch.Tensor) -> torch.Tensor:
        # a hand-made scale head: weight on scale 1 grows with the altered area, scale 3 is constant
        a = ((images - 0.5).abs().amax(1) > 0.05).float().mean((1, 2))
        return torch.stack([a, 1 - a, torch.zeros_like(a)], 1)

    result = alpha_by_lesion_size(alpha_of, torch.full((1, 3, 64, 64), 0.5), seed=0, radii=(0.04, 0.08, 0.16, 0.3))
    assert result["radius_fraction"] == [0.04, 0.08, 0.16, 0.3] and result["images_per_radius"] == 1
    assert result["spearman"][0] == pytest.approx(1.0) and result["spearman"][1] == pytest.approx(-1.0)
    assert result["spearman"][2] is None  # a constant α_k has no rank correlation
    weights = [a[0] for a in result["mean_alpha"]]
    assert weights == sorted(weights) and weights[0] > 0
