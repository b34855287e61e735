"""BatchNorm over the global batch of a multi-process run.

In training mode a BatchNorm normalises with its batch's statistics, so N processes each
normalising their own shard would compute another function than one process on the whole batch.
``GlobalBatchNorm2d`` sums the per-channel counts, sums and squared deviations over the ranks
(differentiably), so its output, gradient and running statistics are those of the global batch.
torch's SyncBatchNorm does the same on GPUs only; this one runs on gloo/CPU and NCCL/CUDA alike.
In eval mode, or in one process, it is the plain BatchNorm2d (same parameters and buffers).
"""

from __future__ import annotations

import torch
from torch import nn

from .distributed import World


class GlobalBatchNorm2d(nn.BatchNorm2d):
    world: World

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.world.distributed):
            return super().forward(x)
        xf = x.float()  # statistics in float32 also under bf16 autocast
        local = torch.cat([xf.sum((0, 2, 3)), xf.new_tensor([xf.numel() / xf.shape[1]])])
        total = self.world.sum(local)
        count = total[-1].detach()
        mean = total[:-1] / count
        centred = xf - mean[None, :, None, None]
        var = self.world.sum((centred * centred).sum((0, 2, 3))) / count
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1).clamp_min(1))
                self.running_mean.mul_(1 - factor).add_(mean.detach() * factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach() * factor)
        return y.to(x.dtype)


def use_global_batchnorm(module: nn.Module, world: World) -> nn.Module:
    """Replace every BatchNorm2d below ``module`` by a GlobalBatchNorm2d holding the same
    parameter and buffer tensors (an optimiser built before or after sees the same parameters)."""
    for child in module.children():
        if type(child) is nn.BatchNorm2d:
            child.__class__ = GlobalBatchNorm2d  # same state, the forward above
            child.world = world
        else:
            use_global_batchnorm(child, world)
    return module
