"""Training over 2 processes (gloo, CPU) computes what one process computes on the same global
batch: the same noise per image, loss, gradients and BatchNorm statistics; `torchrun -m scrd
train` logs the same losses, a killed run resumes to the weights of an unbroken one, and a
resume with another number of processes is refused."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import TINY_FLAGS, tiny_config

from scrd.anomalies.synthesis import AnomalySynthesizer
from scrd.errors import ConfigError, ResumeError
from scrd.filenames import STATE_FILE, STATE_META, TRAIN_LOG
from scrd.model import build_model
from scrd.storage import load_tensors, read_json
from scrd.training import train as training
from scrd.training.distributed import World, check_shardable, joined, trained_parameters, wrap_trained
from scrd.training.global_batchnorm import use_global_batchnorm
from scrd.training.loop import train_step

TOTAL = 5  # a global batch that 2 ranks split unevenly (3 + 2)


def _config():
    # The paper preset trains the scale head through α (a real gradient) and draws fresh textures.
    return tiny_config("paper", train__precision="fp32", train__device="cpu")


def _one_step(world: World, out: Path) -> None:
    """One real training step (train_step) on this rank's shard of a fixed global batch."""
    torch.manual_seed(0)
    config = _config()
    model, _ = build_model(config.model.arch, config.model.weights)
    if world.distributed:
        use_global_batchnorm(model.bottleneck, world)
        use_global_batchnorm(model.decoder, world)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=config.train.lr, betas=config.train.betas)
    synth = AnomalySynthesizer(config.noise, seed=7)
    images = torch.rand(TOTAL, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    start, stop = world.span(TOTAL)
    ddp = wrap_trained(model, config.loss, world, torch.device("cpu"))
    model.train()
    loss, terms, alpha = train_step(
        model, optimizer, synth, images[start:stop], None, config, 1, out, world, TOTAL, ddp
    )
    if world.main:
        torch.save(
            {
                "loss": loss,
                "d_uv": terms.d_uv,
                "d_zv": terms.d_zv,
                "alpha": alpha,
                "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
                "state": model.state_dict(),
                "noise_rng": synth.state_dict(),
            },
            out / "result.pt",
        )


def _rank_main(rank: int, port: int, out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    with joined("cpu") as (world, _):
        _one_step(world, out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_thread():
    """One torch thread, as each rank has, for this test only (later tests keep the machine's count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_two_process_step_equals_the_one_process_step(tmp_path, one_thread):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    _one_step(World(), tmp_path / "one")
    torch.multiprocessing.spawn(_rank_main, args=(_free_port(), tmp_path / "two"), nprocs=2)
    one, two = (torch.load(tmp_path / d / "result.pt") for d in ("one", "two"))
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    for key in ("d_uv", "d_zv", "alpha"):  # the global batch's per-image terms, in batch order
        assert two[key].shape[0] == TOTAL
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6)
    assert two["grads"].keys() == one["grads"].keys()
    # Every gradient, relative to its tensor's largest entry: 1e-4, as BatchNorm's backward subtracts
    # batch means of nearly equal terms (a wrong statistic or reduction is off by far more).
    for name, grad in one["grads"].items():
        scale = grad.abs().max().item()
        assert (two["grads"][name] - grad).abs().max().item() <= 1e-4 * scale + 1e-12, name
    # BatchNorm's running statistics: those of the global batch. (Weights are not compared: Adam's
    # first step is lr·g/(|g| + eps), which turns rounding noise in a tiny gradient into a whole step.)
    params = {n for n, _ in build_model("mobilenet_v2", "none")[0].named_parameters()}
    for name, value in one["state"].items():
        if name not in params and value.is_floating_point():
            torch.testing.assert_close(two["state"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert two["noise_rng"] == one["noise_rng"]  # every rank drew the whole batch's noise


def test_every_rank_noise_is_its_rows_of_the_one_process_noise():
    config = _config()
    images = torch.rand(TOTAL, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    whole, patches = AnomalySynthesizer(config.noise, seed=3)(images)
    for rank in range(2):
        start, stop = World(rank, 2).span(TOTAL)
        part, part_patches = AnomalySynthesizer(config.noise, seed=3)(images[start:stop], (start, TOTAL))
        assert torch.equal(part, whole[start:stop]) and torch.equal(part_patches, patches[start:stop])


def test_the_shards_tile_each_global_batch_in_order():
    for total in range(1, 12):
        for size in (1, 2, 3):
            spans = [World(r, size).span(total) for r in range(size)]
            assert [i for a, b in spans for i in range(a, b)] == list(range(total))
            assert max(b - a for a, b in spans) - min(b - a for a, b in spans) <= 1


def test_a_batch_smaller_than_the_world_is_refused_naming_both():
    check_shardable(16, 4, World(0, 2))
    with pytest.raises(ConfigError, match=r"batch of 1 image\(s\), fewer than the 2 processes"):
        check_shardable(17, 4, World(0, 2))  # the epoch's last batch holds 1 image


def test_ddp_is_told_of_exactly_the_parameters_that_get_gradients():
    model, _ = build_model("resnet18", "none")  # official layout: the bottleneck's unused conv4/bn4
    names = {id(p): n for n, p in model.named_parameters()}
    paper = {names[id(p)] for p in trained_parameters(model, tiny_config("paper").loss)}
    rd4ad = {names[id(p)] for p in trained_parameters(model, tiny_config("rd4ad").loss)}
    assert not any(n.startswith(("teacher.", "bottleneck.conv4.", "bottleneck.bn4.")) for n in paper)
    assert any(n.startswith("scale_head.") for n in paper)
    assert not any(n.startswith("scale_head.") for n in rd4ad)  # α is not used: the head gets no gradient


# ------------------------------------------------------------------ the torchrun command line
# the shared tiny flags, plus what these comparisons need: strict fp32 on the CPU, a row per step
FLAGS = [*TINY_FLAGS, "--iterations", "6", "--device", "cpu", "--precision", "fp32",
         "--set", "train.log_every=1", "--set", "train.checkpoint_every=2"]  # fmt: skip


def _train_cmd(processes: int, data: Path, run: Path, *extra: str) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return [*(launcher if processes > 1 else [sys.executable]), "-m", "scrd", "train", "--data", str(data),
            "--out", str(run), *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # both launches on one thread per process


def _losses(run: Path) -> list[float]:
    with open(run / TRAIN_LOG) as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run / STATE_FILE)["model"]


@pytest.fixture(scope="module")
def unbroken(phantom_data, tmp_path_factory) -> Path:
    """A 6-iteration torchrun run of 2 processes."""
    run = tmp_path_factory.mktemp("torchrun") / "unbroken"
    subprocess.run(_train_cmd(2, phantom_data, run, *FLAGS), check=True, env=_env(), capture_output=True)
    return run


def test_torchrun_logs_the_losses_of_one_process(unbroken, phantom_data, tmp_path):
    one = tmp_path / "one"
    subprocess.run(_train_cmd(1, phantom_data, one, *FLAGS), check=True, env=_env(), capture_output=True)
    two_losses, one_losses = _losses(unbroken), _losses(one)
    assert len(two_losses) == len(one_losses) == 6
    # The first iterations: every difference in shards, noise, BatchNorm or loss would show here.
    assert two_losses[:2] == pytest.approx(one_losses[:2], rel=1e-5)
    # Later, Adam grows float rounding into the weights, as a change of thread count does in one
    # process (docs/distributed.md): the drift is that of rounding, not of another computation.
    assert two_losses == pytest.approx(one_losses, rel=2e-3)
    assert read_json(unbroken / STATE_META)["world_size"] == 2
    assert not list(unbroken.glob("**/*.tmp*"))  # one writer: no half-written file left by a second rank


def test_a_killed_torchrun_run_resumes_to_the_unbroken_runs_weights(unbroken, phantom_data, tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(2, phantom_data, killed, *FLAGS),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the launcher and its 2 workers in one process group
    )
    deadline = time.time() + 300
    while not (killed / STATE_META).is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # every process at once, as a lost machine
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    stopped_at = read_json(killed / STATE_META)["iteration"]
    assert 2 <= stopped_at < 6

    with pytest.raises(ResumeError, match=r"trained by 2 process\(es\), this resume has 1"):
        training.resume(killed, phantom_data, progress=False)

    resume_flags = ["--resume", "--no-progress"]
    subprocess.run(_train_cmd(2, phantom_data, killed, *resume_flags), check=True, env=_env(), capture_output=True)
    resumed, reference = _weights(killed), _weights(unbroken)
    assert read_json(killed / STATE_META)["iteration"] == 6
    for name, value in reference.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)
    assert _losses(killed) == _losses(unbroken)
