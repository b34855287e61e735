"""Anomaly synthesis: bit-exact parity with the official noise, patch bounds, modes, resumability."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from golden import npz as golden

from scrd.anomalies.patches import make_rng, sample_patches
from scrd.anomalies.simplex import official_noise_field
from scrd.anomalies.synthesis import AnomalySynthesizer, paste_patches
from scrd.config import OFFICIAL_NOISE_SEED, ConfigError, NoiseConfig, preset

OFFICIAL_NOISE = dataclasses.asdict(preset("official").noise)  # the released code's texture and patch draws


def synth(seed: int = 0, **noise) -> AnomalySynthesizer:
    """A synthesizer with the released code's noise options, changed by ``noise``."""
    return AnomalySynthesizer(NoiseConfig(**{**OFFICIAL_NOISE, **noise}), seed=seed)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def noise_golden() -> dict[str, np.ndarray]:
    return golden("noise_official.npz")


# ----------------------------------------------------------------------------- official parity
def test_official_field_is_bit_exact() -> None:
    g = noise_golden()
    assert int(g["official_seed_train"]) == OFFICIAL_NOISE_SEED
    assert np.array_equal(official_noise_field(), g["field_3x31x31"])


@pytest.mark.parametrize("i", range(7))
def test_stored_noise_samples_are_bit_exact(i: int) -> None:
    g = noise_golden()
    seed, h, w = (int(v) for v in g[f"sample{i}_seed_h_w"])
    field = official_noise_field(seed, h, w)
    assert field.dtype == np.float64 and field.shape == (3, h, w)
    assert np.array_equal(field, g[f"sample{i}"])


def test_smaller_fields_are_top_left_crops() -> None:
    g = noise_golden()
    assert np.array_equal(official_noise_field(OFFICIAL_NOISE_SEED, 12, 9), g["field_3x31x31"][:, :12, :9])


def test_random_state_replays_official_first_16_patches() -> None:
    expected = noise_golden()["official_first_16_patches_h_w_sh_sw"]
    rng = np.random.RandomState(111)
    seeds = [rng.randint(-10000000000, 10000000000) for _ in range(2)]
    assert seeds[0] == OFFICIAL_NOISE_SEED
    assert np.array_equal(sample_patches(rng, 16, (256, 256)), expected)

    _, patches = synth(111, patch_rng="official")(torch.zeros(16, 3, 256, 256))
    assert patches.dtype == torch.int64 and patches.shape == (16, 1, 4)
    assert np.array_equal(patches[:, 0].numpy(), expected)


def test_rebuilds_official_noisy_dataset_image() -> None:
    g = noise_golden()
    img = torch.from_numpy(g["img_uint8_hwc_rgb"] / 255.0).permute(2, 0, 1).unsqueeze(0)
    noisy, patches = synth(int(g["np_seed_before_getitem"]), patch_rng="legacy")(img)  # np.random.seed(2024)
    assert patches.tolist() == [[g["patch_h_w_start_h_start_w"].tolist()]]
    assert noisy.dtype == torch.float64
    assert np.array_equal(noisy[0].permute(1, 2, 0).numpy(), g["img01_noisy_hwc_f64"])
    # Noise is added before ImageNet normalisation: the dataset's float32 tensor follows exactly.
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)
    assert torch.equal(((noisy[0] - mean) / std).float(), torch.from_numpy(g["img_noise_chw_f32"]))
    # The explicit-patch path gives the same image.
    again = synth().apply(img, g["patch_h_w_start_h_start_w"][None])
    assert torch.equal(again, noisy)


def test_rebuilds_forward_fixture_noisy_input() -> None:
    f = golden("forward_resnet18_64.npz")
    x01 = torch.from_numpy(f["x01"]).double()
    noisy = synth().apply(x01, f["noise_patches_h_w_sh_sw"])
    assert torch.equal((noisy - x01).float(), torch.from_numpy(f["noise_add01"]))
    assert torch.equal(noisy.float(), torch.from_numpy(f["x_noise01"]))


# ----------------------------------------------------------------------------- patch sampling
@pytest.mark.parametrize("mode", ["generator", "legacy"])
@pytest.mark.parametrize("size", [(33, 33), (40, 64), (256, 256)])
def test_patch_bounds_over_many_draws(mode: str, size: tuple[int, int]) -> None:
    p = sample_patches(make_rng(mode, 3), 4000, size)
    h, w, sh, sw = p.T
    assert p.dtype == np.int64
    assert h.min() == 10 and h.max() == 31 and w.min() == 10 and w.max() == 31
    assert sh.min() == 1 and sw.min() == 1  # never row/column 0, as the official code
    assert (sh + h <= size[0] - 1).all() and (sw + w <= size[1] - 1).all()
    if size == (33, 33):  # the only valid position for a 31-pixel patch is start 1
        assert (sh[h == 31] == 1).all()


def test_custom_size_bounds() -> None:
    p = sample_patches(np.random.default_rng(0), 2000, (20, 20), min_size=2, max_size=5)
    assert p[:, :2].min() == 2 and p[:, :2].max() == 5
    assert (p[:, 2] + p[:, 0] <= 19).all() and (p[:, 3] + p[:, 1] <= 19).all()


def test_too_small_image_is_rejected() -> None:
    with pytest.raises(ValueError, match="too small"):
        sample_patches(np.random.default_rng(0), 1, (32, 256))
    with pytest.raises(ValueError, match="too small"):
        synth()(torch.zeros(1, 3, 256, 30))
    with pytest.raises(ValueError, match="min_size"):
        sample_patches(np.random.default_rng(0), 1, (64, 64), min_size=12, max_size=11)


# ----------------------------------------------------------------------------- synthesis behaviour
KINDS = [dict(kind="simplex", field="fixed"), dict(kind="simplex", field="fresh"), dict(kind="gaussian")]


@pytest.mark.parametrize("kw", KINDS, ids=["fixed", "fresh", "gaussian"])
@pytest.mark.parametrize("channels", [1, 3])
def test_noise_only_inside_box_and_not_clipped(kw: dict, channels: int) -> None:
    images = torch.full((6, channels, 48, 40), 0.99)
    noisy, patches = synth(5, **kw)(images)
    assert noisy.shape == images.shape and noisy.dtype == torch.float32
    diff = noisy - images
    for b, ((h, w, sh, sw),) in enumerate(patches.tolist()):
        inside = torch.zeros(channels, 48, 40, dtype=torch.bool)
        inside[:, sh : sh + h, sw : sw + w] = True
        assert (diff[b][~inside] == 0).all()
        assert (diff[b][inside] != 0).float().mean() > 0.99
    assert noisy.max() > 1.0  # values above 1 survive (no clipping)


def test_several_patches_per_image_each_carry_noise() -> None:
    images = torch.zeros(5, 3, 96, 96, dtype=torch.float64)
    noisy, patches = synth(3, patches_per_image=3, min_size=8, max_size=12)(images)
    assert patches.shape == (5, 3, 4)
    field = official_noise_field()
    for b in range(5):
        covered = torch.zeros(96, 96, dtype=torch.bool)
        for h, w, sh, sw in patches[b].tolist():
            covered[sh : sh + h, sw : sw + w] = True
        assert (noisy[b][:, ~covered] == 0).all()
        assert (noisy[b][:, covered] != 0).float().mean() > 0.99
    # Two patches that do not overlap each hold exactly λ times the field's crop.
    apart = np.array([[[10, 12, 2, 3], [8, 9, 50, 60]]] * 5)
    noisy = synth(3, patches_per_image=2, min_size=8, max_size=12).apply(images, apart)
    for h, w, sh, sw in apart[0]:
        assert np.array_equal(noisy[0, :, sh : sh + h, sw : sw + w].numpy(), 0.2 * field[:, :h, :w])


def test_paste_adds_each_texture_at_its_own_place_and_nowhere_else() -> None:
    images = torch.arange(2 * 1 * 6 * 7, dtype=torch.float64).view(2, 1, 6, 7)
    textures = torch.tensor(
        [[[[100.0, 200.0, 300.0], [400.0, 500.0, 600.0]]], [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]], dtype=torch.float64
    )
    out = paste_patches(images, textures, torch.tensor([[2, 3, 1, 2], [1, 2, 4, 0]]))
    expected = images.clone()
    expected[0, 0, 1:3, 2:5] += torch.tensor([[100.0, 200.0, 300.0], [400.0, 500.0, 600.0]], dtype=torch.float64)
    expected[1, 0, 4, 0:2] += torch.tensor([1.0, 2.0], dtype=torch.float64)  # the top-left [1, 2] crop
    assert torch.equal(out, expected)


def test_fixed_patch_is_lambda_times_official_crop() -> None:
    images = torch.zeros(4, 3, 64, 64, dtype=torch.float64)
    noisy, patches = synth(1, strength=0.3)(images)
    field = official_noise_field()
    for b, ((h, w, sh, sw),) in enumerate(patches.tolist()):
        assert np.array_equal(noisy[b, :, sh : sh + h, sw : sw + w].numpy(), 0.3 * field[:, :h, :w])


def test_fixed_single_channel_uses_field_channel_zero() -> None:
    noisy, patches = synth(2)(torch.zeros(3, 1, 64, 64, dtype=torch.float64))
    field = official_noise_field()
    for b, ((h, w, sh, sw),) in enumerate(patches.tolist()):
        assert np.array_equal(noisy[b, 0, sh : sh + h, sw : sw + w].numpy(), 0.2 * field[0, :h, :w])


def test_fixed_rejects_other_channel_counts() -> None:
    with pytest.raises(ValueError, match="1 or 3 channels"):
        synth()(torch.zeros(1, 2, 64, 64))


def test_larger_patches_get_a_larger_fixed_field() -> None:
    noisy, patches = synth(4, min_size=40, max_size=60)(torch.zeros(2, 3, 128, 128, dtype=torch.float64))
    field = official_noise_field(OFFICIAL_NOISE_SEED, 60, 60)
    for b, ((h, w, sh, sw),) in enumerate(patches.tolist()):
        assert 40 <= h <= 60 and 40 <= w <= 60
        assert np.array_equal(noisy[b, :, sh : sh + h, sw : sw + w].numpy(), 0.2 * field[:, :h, :w])


def _texture_batch(s: AnomalySynthesizer, n: int = 8) -> torch.Tensor:
    patches = np.tile(np.array([[31, 31, 1, 1]], dtype=np.int64), (n, 1))
    return s.apply(torch.zeros(n, 3, 40, 40), patches)[:, :, 1:32, 1:32]


def test_fresh_textures_differ_per_sample_and_are_reproducible() -> None:
    a = _texture_batch(synth(11, field="fresh"))
    b = _texture_batch(synth(11, field="fresh"))
    c = _texture_batch(synth(12, field="fresh"))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    flat = a.reshape(a.shape[0], -1)
    assert torch.cdist(flat, flat).add(torch.eye(len(flat)) * 1e9).min() > 0.1  # all pairs differ
    # Successive calls give new textures too.
    s = synth(11, field="fresh")
    assert not torch.allclose(_texture_batch(s), _texture_batch(s))


def _lag1_corr(t: torch.Tensor) -> float:
    x, y = t[..., :, :-1].reshape(-1), t[..., :, 1:].reshape(-1)
    return float(torch.corrcoef(torch.stack((x, y)))[0, 1])


def test_fresh_noise_is_smooth_simplex_with_official_amplitude() -> None:
    fresh = _texture_batch(synth(0, field="fresh", strength=1.0), 64).double()
    gauss = _texture_batch(synth(0, kind="gaussian", strength=1.0), 64).double()
    assert _lag1_corr(fresh) > 0.9 and abs(_lag1_corr(gauss)) < 0.05
    # The official 6-octave field's per-pixel std pooled over seeds is 0.40 (SIMPLEX_FRACTAL_STD);
    # the fresh torch noise is scaled to match it, and the Gaussian std is set to it.
    assert abs(fresh.std() - 0.40) < 0.03 and abs(fresh.mean()) < 0.05
    assert abs(gauss.std() - 0.40) < 0.005
    # Channels are neighbouring z-slices, strongly correlated as in the official texture.
    assert float(torch.corrcoef(torch.stack((fresh[:, 0].reshape(-1), fresh[:, 1].reshape(-1))))[0, 1]) > 0.8


def test_fresh_float64_and_float32_agree() -> None:
    patches = np.array([[20, 25, 3, 4], [10, 31, 5, 1]], dtype=np.int64)
    zeros = torch.zeros(2, 3, 40, 40, dtype=torch.float64)
    a = synth(4, field="fresh").apply(zeros, patches)
    b = synth(4, field="fresh").apply(zeros.float(), patches)
    assert b.dtype == torch.float32
    torch.testing.assert_close(b.double(), a, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kw", KINDS, ids=["fixed", "fresh", "gaussian"])
@pytest.mark.parametrize("mode", ["generator", "legacy", "official"])
def test_state_dict_round_trip_reproduces_next_batch(kw: dict, mode: str) -> None:
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    s = synth(21, **kw, patch_rng=mode)
    s(images)
    state = json.loads(json.dumps(s.state_dict()))  # must be plain JSON data
    expected, expected_patches = s(images)
    resumed = synth(999, **kw, patch_rng=mode)
    resumed.load_state_dict(state)
    got, got_patches = resumed(images)
    assert torch.equal(got_patches, expected_patches)
    assert torch.equal(got, expected)


def test_state_dict_rejects_other_rng_mode() -> None:
    state = synth(patch_rng="legacy").state_dict()
    with pytest.raises(ValueError, match="rng mode"):
        synth(patch_rng="generator").load_state_dict(state)


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"noise.kind: 'perlin' is not one of"):
        synth(kind="perlin")
    with pytest.raises(ConfigError, match=r"noise.field: 'random' is not one of"):
        synth(field="random")
    with pytest.raises(ConfigError, match=r"noise.patch_rng: 'torch' is not one of"):
        synth(patch_rng="torch")
    with pytest.raises(ConfigError, match="min_size <= max_size"):
        synth(min_size=12, max_size=11)
    with pytest.raises(ValueError, match="float batch"):
        synth()(torch.zeros(3, 64, 64))
