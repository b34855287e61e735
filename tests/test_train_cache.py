"""The training caches change no result: cached teacher features are the teacher's, a run trained
from the caches ends where a run without them ends, and a disk cache is reused on resume."""

from __future__ import annotations

import errno
import os

import pytest
import torch
from helpers import tiny_config

from scrd.data.dataset import ImageDataset
from scrd.data.layouts import load_samples
from scrd.data.transforms import normalize
from scrd.errors import TrainingError
from scrd.filenames import MODEL_FILE
from scrd.model import SCRD
from scrd.training import train as training
from scrd.training.cache import CACHE_DIR, ArrayStore, build_training_cache


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("on_disk", [False, True])
def test_array_store_round_trips(tmp_path, dtype, on_disk):
    values = torch.randn(5, 2, 3).to(dtype)
    store = ArrayStore((5, 2, 3), dtype, tmp_path / "a.bin" if on_disk else None)
    store.put(0, values[:3])
    store.put(3, values[3:])
    assert torch.equal(store.take([4, 0, 2]), values[[4, 0, 2]])
    assert store.nbytes == 30 * (4 if dtype == torch.float32 else 2)


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="reservation needs posix_fallocate")
def test_a_disk_store_reserves_its_space_up_front(tmp_path):
    store = ArrayStore((64, 1024), torch.float32, tmp_path / "a.bin")
    assert store.path.stat().st_size == store.nbytes
    assert store.path.stat().st_blocks * 512 >= store.nbytes  # allocated, not a sparse file


def test_a_full_disk_is_a_clear_error_not_a_bus_error(tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space, raising=False)
    path = tmp_path / "features_1.bin"
    with pytest.raises(TrainingError, match=r"features_1\.bin: cannot reserve 0\.25 GiB .*No space left"):
        ArrayStore((2**16, 1024), torch.float32, path)
    assert not path.exists()  # no half-made file left for a resume to trust


def test_a_filesystem_without_fallocate_still_gets_a_disk_store(tmp_path, monkeypatch):
    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "posix_fallocate", unsupported, raising=False)
    store = ArrayStore((4, 3), torch.float32, tmp_path / "a.bin")
    store.put(0, torch.ones(4, 3))
    assert store.path.stat().st_size == store.nbytes and torch.equal(store.take([3]), torch.ones(1, 3))


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_cached_features_are_the_teachers(phantom_data, tmp_path, where):
    config = tiny_config(train__precision="fp32", train__feature_cache=where, train__image_cache=where)
    dataset = ImageDataset(load_samples(phantom_data, "train"), 64)
    model = SCRD("mobilenet_v2").to(memory_format=torch.channels_last)
    cache = build_training_cache(dataset, model, config, torch.device("cpu"), tmp_path, {"id": 1}, progress=False)
    assert (cache.images.path is not None) == (where == "disk")
    indices = [3, 0, 11]
    images, features = cache.batch(indices, torch.device("cpu"), channels_last=True)
    expected_images = torch.stack([dataset[i]["image"] for i in indices])
    assert torch.equal(images, expected_images)
    with torch.no_grad():
        direct = model.encode(normalize(expected_images).contiguous(memory_format=torch.channels_last))
    for cached, fresh in zip(features, direct):
        torch.testing.assert_close(cached, fresh, rtol=1e-5, atol=1e-6)


def test_training_from_the_caches_ends_where_training_without_them_ends(phantom_data, tmp_path):
    states = {}
    for cache in ("off", "memory"):
        config = tiny_config(
            train__precision="fp32",
            train__feature_cache=cache,
            train__image_cache=cache,
            train__deterministic=True,
            train__iterations=4,
        )
        training.train(config, phantom_data, tmp_path / cache, progress=False)
        states[cache] = torch.load(tmp_path / cache / MODEL_FILE, weights_only=True)["state_dict"]
    for key, value in states["off"].items():
        torch.testing.assert_close(states["memory"][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_a_disk_cache_is_reused_on_resume(phantom_data, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(train__feature_cache="disk", train__image_cache="disk", train__iterations=4)
    training.train(config, phantom_data, run, progress=False)
    files = sorted((run / CACHE_DIR).glob("*.bin"))
    assert [f.name for f in files] == ["features_1.bin", "features_2.bin", "features_3.bin", "images.bin"]
    written = {f: f.stat().st_mtime_ns for f in files}
    training.resume(run, phantom_data, iterations=6, progress=False)
    assert {f: f.stat().st_mtime_ns for f in files} == written  # read, not built again
