"""Sharded prediction: disjoint, covering shards with no padding; parts merged into exactly the CSV
of a one-process run; a killed shard resumes without a duplicate or missing row; torchrun."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scrd.cli import main
from scrd.data.phantom import make_phantom_dataset
from scrd.errors import ConfigError, InputError
from scrd.inference.predict import predict
from scrd.inference.shards import Shard, device_for_rank, merge_shards, resolve_shard
from scrd.lab.predict_memory import make_untrained_model
from scrd.runs.runtime import Runtime

BATCH = 3
CPU_BATCH = Runtime(batch_size=BATCH, device="cpu")


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("count", [1, 2, 3, 5])
@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_shards_are_disjoint_cover_and_are_whole_batches(count, batch_size):
    for n in range(0, 23):
        items = list(range(n))
        parts = [Shard(i, count).select(items, batch_size) for i in range(count)]
        assert [x for part in parts for x in part] == items  # in order, no duplicate, none missing
        assert all(len(part) % batch_size == 0 for part in parts[:-1] if part)
        sizes = [-(-len(part) // batch_size) for part in parts]  # batches per shard differ by at most one
        assert max(sizes) - min(sizes) <= 1


def test_shard_from_flag_and_from_torchrun_environment():
    assert resolve_shard("1/4", {}) == Shard(1, 4)
    assert resolve_shard(None, {"RANK": "2", "WORLD_SIZE": "3"}) == Shard(2, 3)
    assert resolve_shard("0/2", {"RANK": "1", "WORLD_SIZE": "2"}) == Shard(0, 2)  # the flag wins
    assert resolve_shard(None, {"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert resolve_shard(None, {}) is None
    for bad in ("2/2", "1", "a/b", "0/0"):
        with pytest.raises(ConfigError, match="--shard"):
            resolve_shard(bad, {})


def test_device_for_rank_only_changes_auto_under_a_launcher(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_for_rank("auto", {"LOCAL_RANK": "1"}) == "cuda:1"
    assert device_for_rank("cpu", {"LOCAL_RANK": "1"}) == "cpu"
    assert device_for_rank("auto", {}) == "auto"
    assert device_for_rank("auto", {"LOCAL_RANK": "2"}) == "auto"  # no such GPU: leave the choice to auto


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """13 phantom images (not a multiple of the batch or shard counts), an untrained model and
    a one-process prediction of them."""
    root = tmp_path_factory.mktemp("shards")
    data = make_phantom_dataset(root / "data", n_train=13, n_test_normal=0, n_test_abnormal=0, size=64, seed=2)
    make_untrained_model(root / "model")
    single = predict(root / "model", [str(data / "images")], root / "single", CPU_BATCH)
    return root, data / "images", single.csv


def _heatmaps(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (folder / "heatmaps").glob("*.png")}


def test_merged_shards_equal_a_single_process_run(setup):
    root, images, single_csv = setup
    out = root / "sharded"
    first = predict(root / "model", [str(images)], out, CPU_BATCH, shard=Shard(0, 3))
    assert first.csv.name == "predictions.shard-0-of-3.csv"
    with pytest.raises(InputError, match=r"shard\(s\) 1, 2 of 3"):
        merge_shards(out)
    for index in (2, 1):  # any order; the last to finish merges
        last = predict(root / "model", [str(images)], out, CPU_BATCH, shard=Shard(index, 3))
    assert last.csv == out / "predictions.csv"
    assert (out / "predictions.csv").read_bytes() == single_csv.read_bytes()
    assert _heatmaps(out) == _heatmaps(single_csv.parent)
    assert sum(len(_rows(out / f"predictions.shard-{i}-of-3.csv")) for i in range(3)) == 13


def test_merge_refuses_an_unfinished_shard_and_mixed_batch_sizes(setup, tmp_path):
    root, images, _ = setup
    out = tmp_path / "out"
    predict(root / "model", [str(images)], out, CPU_BATCH, shard=Shard(0, 2))
    with pytest.raises(InputError, match="different --batch-size"):  # the last shard's merge
        predict(root / "model", [str(images)], out, Runtime(batch_size=2, device="cpu"), shard=Shard(1, 2))
    (out / "predictions.shard-1-of-2.csv.done").unlink()
    with pytest.raises(InputError, match="shard 1/2 has not finished"):
        merge_shards(out)


def test_cli_merge_and_its_arguments(setup, tmp_path, capsys):
    root, images, single_csv = setup
    out = tmp_path / "out"
    base = ["predict", str(images), "--model", str(root / "model"), "--out", str(out), "--device", "cpu"]
    for index in range(2):
        assert main([*base, "--batch-size", str(BATCH), "--shard", f"{index}/2"]) == 0
    (out / "predictions.csv").unlink()
    assert main(["predict", "--merge", "--out", str(out)]) == 0
    assert "merged 13 rows" in capsys.readouterr().out
    assert (out / "predictions.csv").read_bytes() == single_csv.read_bytes()
    assert main(["predict", str(images), "--merge", "--out", str(out)]) == 2
    assert "--merge takes only --out" in capsys.readouterr().err
    assert main(["predict", "--out", str(out)]) == 2


def _command(root: Path, images: Path, out: Path, *extra: str) -> list[str]:
    model = str(root / "model")
    return [sys.executable, "-m", "scrd.cli", "predict", str(images), "--model", model, "--out", str(out), *extra]


def test_killed_shard_resumes_without_duplicates_or_gaps(tmp_path):
    data = make_phantom_dataset(tmp_path / "data", n_train=96, n_test_normal=0, n_test_abnormal=0, size=32, seed=4)
    make_untrained_model(tmp_path / "model")
    images, out = data / "images", tmp_path / "out"
    flags = ["--batch-size", "4", "--device", "cpu", "--shard", "1/2"]
    proc = subprocess.Popen(
        _command(tmp_path, images, out, *flags), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    part = out / "predictions.shard-1-of-2.csv"
    deadline = time.time() + 300
    while len(_rows(part)) < 8 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the shard finished before it could be killed"
    assert 8 <= len(_rows(part)) < 48
    subprocess.run(_command(tmp_path, images, out, *flags), check=True, capture_output=True)
    subprocess.run(_command(tmp_path, images, out, *flags[:-1], "0/2"), check=True, capture_output=True)
    subprocess.run(_command(tmp_path, images, tmp_path / "single", *flags[:-2]), check=True, capture_output=True)
    shard_paths = [r["path"] for r in _rows(part)]
    assert len(shard_paths) == len(set(shard_paths)) == 48
    assert (out / "predictions.csv").read_bytes() == (tmp_path / "single" / "predictions.csv").read_bytes()


def test_torchrun_shards_by_rank_and_merges(setup, tmp_path):
    root, images, single_csv = setup
    out = tmp_path / "out"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "scrd.cli"]
    command = _command(root, images, out, "--batch-size", str(BATCH), "--device", "cpu")[3:]
    # each rank with this process's thread count (torchrun would set 1): a float sum's order depends on it
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    result = subprocess.run([*launch, *command], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {p.name for p in out.glob("predictions.shard-*.csv")} == {
        "predictions.shard-0-of-2.csv",
        "predictions.shard-1-of-2.csv",
    }
    assert (out / "predictions.csv").read_bytes() == single_csv.read_bytes()
