"""Training over several processes launched by torchrun: the process group, each rank's shard of
a global batch, and the collectives that make every rank compute the loss of the whole batch.

The promise is the one-process run: the same global batch size, the same images in each global
batch, the same noise for each image and the same loss (means over the global batch), so 2 or N
processes train the same weights as one, up to float rounding. Rank r takes a contiguous slice
of every global batch; its loss terms are gathered, so the loss each rank differentiates is the
global one, and DistributedDataParallel averages the gradients (the gathers' backward sums each
rank's share, which the average divides back: the exact gradient of the global loss).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..config import LossConfig
from ..device import choose_device
from ..errors import ConfigError, DeviceError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    group: Any = None  # the process group of the model's own collectives (BatchNorm, loss gathers)
    device: Any = None  # where this rank's collectives keep their tensors (CUDA for NCCL)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes logs, checkpoints and the model."""
        return self.rank == 0

    def span(self, total: int) -> tuple[int, int]:
        """[start, stop) of this rank's rows of a global batch of ``total``: contiguous, the first
        ``total % size`` ranks one row more, so the shards concatenated in rank order are the batch."""
        base, extra = divmod(total, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def gather(self, rows: torch.Tensor, total: int) -> torch.Tensor:
        """The global batch's rows from every rank's ``rows`` (this rank's span of ``total``),
        differentiable; the identity in one process."""
        if not self.distributed:
            return rows
        width = -(-total // self.size)  # all_gather wants equal shapes: pad every shard to the largest
        padded = torch.nn.functional.pad(rows, (0, 0) * (rows.dim() - 1) + (0, width - rows.shape[0]))
        stacked = _GatherRows.apply(padded, self)
        parts = []
        for r in range(self.size):
            start, stop = World(r, self.size).span(total)
            parts.append(stacked[r * width : r * width + stop - start])
        return torch.cat(parts)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, differentiable."""
        return _SumOverRanks.apply(values, self) if self.distributed else values

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on one (a stop request reaches them all at once)."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.group)
        return bool(value.item())

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=self.group)


class _SumOverRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: torch.Tensor, world: World) -> torch.Tensor:
        ctx.world = world
        out = values.detach().clone().contiguous()
        dist.all_reduce(out, group=world.group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # Every rank's loss depends on the sum: this rank's input gets the sum of their gradients.
        grad = grad.detach().clone().contiguous()
        dist.all_reduce(grad, group=ctx.world.group)
        return grad, None


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows: torch.Tensor, world: World) -> torch.Tensor:
        ctx.world = world
        rows = rows.detach().contiguous()
        out = [torch.empty_like(rows) for _ in range(world.size)]
        dist.all_gather(out, rows, group=world.group)
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        world = ctx.world
        grad = grad.detach().clone().contiguous()
        dist.all_reduce(grad, group=world.group)  # every rank's loss uses these rows
        return grad.chunk(world.size)[world.rank], None


SINGLE = World()


def world_from_env() -> World:
    """Rank and size from torchrun's environment, without the process group (one process: SINGLE)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def joined(device_name: str) -> Iterator[tuple[World, torch.device]]:
    """This process's world and device for a training job: under torchrun the process group is
    initialised (NCCL on CUDA, gloo on CPU) and torn down at the end; CUDA rank r uses GPU LOCAL_RANK."""
    env = world_from_env()
    device = choose_device(device_name)
    if not env.distributed:
        yield SINGLE, device
        return
    if device.type == "cuda":
        if device.index is not None and device_name != "cuda":
            raise DeviceError(
                f"--device {device_name}: under torchrun each process uses cuda:LOCAL_RANK; give --device cuda or auto"
            )
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        # A group of its own keeps the model's collectives apart from DDP's gradient all-reduces.
        yield World(env.rank, env.size, env.local_rank, dist.new_group(), device), device
    finally:
        if owned:
            dist.destroy_process_group()


def check_shardable(n: int, batch_size: int, world: World) -> None:
    """Every global batch must give each rank at least one image (BatchNorm needs one)."""
    if not world.distributed:
        return
    smallest = min(batch_size, n) if n % batch_size == 0 or n < batch_size else n % batch_size
    if smallest < world.size:
        raise ConfigError(
            f"train.batch_size {batch_size} over {n} training images makes a batch of {smallest} "
            f"image(s), fewer than the {world.size} processes; choose a batch size that leaves every "
            f"batch (the epoch's last included) at least {world.size} images, or fewer processes"
        )


def check_supported(config) -> None:
    """What a multi-process run does not do (yet): evaluations during training are rank-0 work
    that would leave the other ranks' BatchNorm in another mode."""
    tc = config.train
    if config.model.method == "knn":
        raise ConfigError("model.method knn fits its memory bank in one go: run it without torchrun")
    for key, value in (("train.eval_every", tc.eval_every), ("train.select_every", tc.select_every)):
        if value:
            raise ConfigError(f"{key} = {value}: evaluation during training needs one process; set it to 0")


def head_is_trained(loss: LossConfig) -> bool:
    """Whether the scale head gets a gradient under this loss."""
    if loss.alpha_objective == "separation":
        return True
    return loss.alpha_placement != "none" and loss.alpha_grad != "detach"


def trained_parameters(model, loss: LossConfig) -> list[nn.Parameter]:
    """The trainable parameters that get a gradient at every step: DDP is told of these alone, so
    it needs no find_unused_parameters (the bottleneck's unused conv4/bn4 and an untrained head are left out)."""
    used = {f"bottleneck.{n}" for n in model.bottleneck.used_parameter_names()}
    head = head_is_trained(loss)
    keep = []
    for name, p in model.named_parameters():
        part = name.split(".", 1)[0]
        if (part == "bottleneck" and name in used) or part == "decoder" or (part == "scale_head" and head):
            keep.append(p)
    return keep


class TrainableParts(nn.Module):
    """What DistributedDataParallel wraps: the trained parameters (shared with the model, the
    frozen teacher outside). Its forward runs a whole loss step, since the step calls the model's
    parts several times (clean pass, BatchNorm-only noisy pass, head objective) and DDP wants one
    forward per backward."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        super().__init__()
        self.params = nn.ParameterList(params)

    def forward(self, step: Callable[[], Any]) -> Any:
        return step()


def wrap_trained(model, loss: LossConfig, world: World, device: torch.device):
    """The DDP wrapper of the trained parameters, or None in one process."""
    if not world.distributed:
        return None
    from torch.nn.parallel import DistributedDataParallel

    parts = TrainableParts(trained_parameters(model, loss))
    ids = [device.index] if device.type == "cuda" else None
    # The wrapper holds no buffer (BatchNorm statistics stay equal by computing them globally);
    # gradients as bucket views spare a copy and keep the bucket's layout.
    return DistributedDataParallel(parts, device_ids=ids, gradient_as_bucket_view=True)


def check_gradients(model, ddp) -> None:
    """After the first backward: a gradient on a parameter DDP does not know would go unsynchronised."""
    known = {id(p) for p in ddp.module.params}
    stray = [n for n, p in model.named_parameters() if p.grad is not None and id(p) not in known]
    if stray:
        raise RuntimeError(f"parameters outside DDP got gradients: {', '.join(stray[:5])}")
