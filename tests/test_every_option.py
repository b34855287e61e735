"""Every config option is exercised by a test that fails when the option is ignored.

The first test guards the rule: each option's name stands in some test (as ``section.name``,
``section__name`` or ``name=``); the others cover the options no other test file reaches, each by
what the option changes.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_config

from scrd.config import Config, NoiseConfig
from scrd.data.dataset import ImageDataset
from scrd.data.layouts import load_samples

TESTS = Path(__file__).parent


def _options() -> list[tuple[str, str]]:
    config = Config()
    return [(s.name, f.name) for s in dataclasses.fields(config) for f in dataclasses.fields(getattr(config, s.name))]


def test_every_option_is_named_in_a_test():
    text = "\n".join(p.read_text() for p in TESTS.glob("test_*.py") if p.name != Path(__file__).name)
    text += (TESTS / Path(__file__).name).read_text().split("# ---- the options below", 1)[1]
    unnamed = [
        f"{section}.{name}"
        for section, name in _options()
        if f"{section}.{name}" not in text and f"{section}__{name}" not in text and not re.search(rf"\b{name}=", text)
    ]
    assert not unnamed, f"options no test exercises: {unnamed}"


# ---- the options below are exercised here and nowhere else
def _fixed_field(**noise) -> np.ndarray:
    from scrd.anomalies.textures import FixedSimplex

    return FixedSimplex(NoiseConfig(field="fixed", strength=1.0, **noise)).scaled


def test_noise_octaves_persistence_and_frequency_shape_the_simplex_field():
    one = _fixed_field(octaves=1)
    # persistence 0 silences every octave after the first
    np.testing.assert_allclose(_fixed_field(octaves=6, persistence=0.0), one, atol=1e-12)
    assert np.abs(_fixed_field(octaves=6) - one).max() > 0.05  # later octaves add detail
    assert np.abs(_fixed_field(octaves=2, persistence=0.3) - _fixed_field(octaves=2, persistence=0.9)).max() > 0.01
    # frequency f samples N3(col / f, row / f, ch / f): doubling it stretches channel 0 by two
    coarse = _fixed_field(octaves=1, frequency=64.0, max_size=31)
    np.testing.assert_allclose(coarse[0, 0:31:2, 0:31:2], one[0, :16, :16], atol=1e-12)


def test_noise_gaussian_std_is_the_gaussian_noise_std():
    from scrd.anomalies.synthesis import AnomalySynthesizer

    patches = np.tile(np.array([[31, 31, 1, 1]], dtype=np.int64), (64, 1))
    for std in (0.1, 0.4):
        synth = AnomalySynthesizer(NoiseConfig(kind="gaussian", gaussian_std=std, strength=1.0), seed=0)
        texture = synth.apply(torch.zeros(64, 3, 40, 40), patches)[:, :, 1:32, 1:32]
        assert float(texture.std()) == pytest.approx(std, rel=0.03)


def _bank(phantom_data, **knn):
    from scrd.training.fit_bank import fit_memory_bank

    config = tiny_config("knn", train__holdout_fraction=0.0, **{f"knn__{k}": v for k, v in knn.items()})
    samples = load_samples(phantom_data, "train")
    torch.manual_seed(0)  # the same random teacher for every bank
    network, bank, _, _ = fit_memory_bank(config, samples, progress=False)
    return network, bank, samples


def test_knn_pool_averages_the_patch_neighbourhood(phantom_data):
    from scrd.data.transforms import normalize

    network, raw, samples = _bank(phantom_data, pool=1, fraction=1.0)
    _, pooled, _ = _bank(phantom_data, pool=3, fraction=1.0)
    with torch.no_grad():
        features = network(normalize(ImageDataset(samples[:1], 64)[0]["image"][None]))
    # pool 1: a bank row is the two scales' features at one position, unaveraged
    f2 = features[1][0].float()
    f3 = torch.nn.functional.interpolate(features[2].float(), size=f2.shape[-2:], mode="bilinear", align_corners=False)
    row = torch.cat([f2[:, 3, 5], f3[0, :, 3, 5]])
    assert torch.cdist(row[None], raw).min() < 1e-4
    assert torch.cdist(row[None], pooled).min() > 1e-3  # a 3x3 average is another vector


def test_knn_sampling_chooses_how_the_bank_is_drawn(phantom_data):
    """random and coreset keep as many patches, all of them training patches, but not the same ones
    (that a coreset is a k-centre cover is tests/test_knn.py's, on points with an outlier)."""
    _, every, _ = _bank(phantom_data, fraction=1.0)
    _, random, _ = _bank(phantom_data, fraction=0.1, sampling="random")
    _, coreset, _ = _bank(phantom_data, fraction=0.1, sampling="coreset")
    assert len(coreset) == len(random) == round(len(every) * 0.1)
    for bank in (random, coreset):
        assert torch.cdist(bank, every).amin(1).max() < 1e-4  # cdist rounds at ~1e-5
    assert not torch.equal(torch.sort(random, 0).values, torch.sort(coreset, 0).values)
    # a k-centre cover: the farthest any patch lies from the bank is smaller than with a random draw
    assert torch.cdist(every, coreset).amin(1).max() < torch.cdist(every, random).amin(1).max()


@pytest.mark.parametrize("gigabytes, on_disk", [(0.0, True), (4.0, False)])
def test_train_cache_memory_gb_sends_the_caches_to_disk_beyond_it(phantom_data, tmp_path, gigabytes, on_disk):
    from scrd.model import SCRD
    from scrd.training.cache import build_training_cache

    config = tiny_config(train__feature_cache="auto", train__image_cache="auto", train__cache_memory_gb=gigabytes)
    dataset = ImageDataset(load_samples(phantom_data, "train"), 64)
    cache = build_training_cache(dataset, SCRD("mobilenet_v2"), config, torch.device("cpu"), tmp_path, {}, False)
    assert (cache.images.path is not None) == on_disk
    assert all((s.path is not None) == on_disk for s in cache.features)


def test_train_num_workers_reaches_the_training_loader(phantom_data, tmp_path, monkeypatch):
    from scrd.training import loop
    from scrd.training.train import train

    seen = []
    real = loop.make_loader

    def recording(dataset, batch_size, num_workers=0, *args, **kwargs):
        seen.append(num_workers)
        return real(dataset, batch_size, 0, *args, **kwargs)  # the value is what is checked; run in-process

    monkeypatch.setattr(loop, "make_loader", recording)
    config = tiny_config(
        train__iterations=2, train__num_workers=3, train__feature_cache="off", train__image_cache="off"
    )
    train(config, phantom_data, tmp_path / "run", progress=False)
    assert seen == [3]


def test_train_early_stop_patience_stops_when_the_criterion_stops_improving(phantom_data, tmp_path, monkeypatch):
    from scrd.training.selection import LabelFreeMonitor
    from scrd.training.train import train

    falling = iter([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    monkeypatch.setattr(LabelFreeMonitor, "criterion", lambda self, detector: next(falling))
    config = tiny_config(
        train__iterations=12, train__select_every=2, train__holdout_fraction=0.25, train__early_stop_patience=2
    )
    result = train(config, phantom_data, tmp_path / "run", progress=False)
    assert result.iterations == 6  # best at 2, no better at 4 and 6: two evaluations of patience


def test_data_nifti_percentiles_and_tissue_level_change_the_reading(tmp_path):
    nib = pytest.importorskip("nibabel")
    from scrd.config import DataConfig
    from scrd.data.readers import list_frames, read_image

    vol = np.zeros((8, 8, 6), np.float32)
    for z in range(6):
        vol[2:6, 2:6, z] = 20.0 * (z + 1)  # slice z's tissue at 20 (z + 1)
    path = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    full = DataConfig(nifti_percentiles=(0.0, 100.0), nifti_min_tissue=0.0)
    assert read_image(path, 2, full).max() == pytest.approx(60.0 / 120.0)  # the volume's 0..120 range
    narrow = dataclasses.replace(full, nifti_percentiles=(0.0, 90.0))
    assert read_image(path, 2, narrow).max() > read_image(path, 2, full).max()
    # a slice is tissue where its normalised values exceed the level: fewer slices at a higher level
    low = DataConfig(nifti_percentiles=(0.0, 100.0), nifti_tissue_level=0.1, nifti_min_tissue=0.1)
    high = dataclasses.replace(low, nifti_tissue_level=0.6)
    assert list_frames(path, low)[1] == [0, 1, 2, 3, 4, 5]
    assert list_frames(path, high)[1] == [3, 4, 5]
