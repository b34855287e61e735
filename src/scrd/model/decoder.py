"""The student decoder: a mirror of the teacher that reconstructs its three scales from φ.

For ResNets this is RD4AD's de-ResNet: each stage starts with a block whose stride-2
convolution is replaced by a 2×2 transposed convolution (and whose identity branch is a 2×2
transposed convolution + BatchNorm), so every stage doubles the resolution. For MobileNetV2 the
same structure is used with basic blocks and the MobileNet channel widths (see
docs/architecture.md).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import conv1x1, conv3x3

from .bottleneck import init_conv_and_norm


def deconv2x2(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2, bias=False)


class DeBasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        upsample: nn.Module | None = None,
        base_width: int = 64,
        output_relu: bool = True,
    ) -> None:
        super().__init__()
        self.output_relu = output_relu
        self.conv1 = deconv2x2(in_channels, planes) if upsample is not None else conv3x3(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + identity
        return self.relu(out) if self.output_relu else out


class DeBottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        upsample: nn.Module | None = None,
        base_width: int = 64,
        output_relu: bool = True,
    ) -> None:
        super().__init__()
        self.output_relu = output_relu
        width = int(planes * base_width / 64)
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = deconv2x2(width, width) if upsample is not None else conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out)) + identity
        return self.relu(out) if self.output_relu else out


class StudentDecoder(nn.Module):
    """Three upsampling stages, from φ back to scales 3, 2, 1; returns them as [v1, v2, v3].

    ``signed_targets``: the teacher's features can be negative (MobileNetV2's linear bottlenecks,
    unlike ResNet's post-ReLU outputs), so each stage's last block ends without a ReLU; a
    non-negative student could not reach a cosine of 1 with a signed teacher.
    """

    def __init__(
        self,
        block: type[nn.Module],
        in_channels: int,
        channels: tuple[int, int, int],
        layers: tuple[int, int, int],
        width_per_group: int = 64,
        signed_targets: bool = False,
    ) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self._in = in_channels
        self._signed = signed_targets
        self.layer1 = self._make_stage(block, c3, layers[0], width_per_group)
        self.layer2 = self._make_stage(block, c2, layers[1], width_per_group)
        self.layer3 = self._make_stage(block, c1, layers[2], width_per_group)
        init_conv_and_norm(self)

    def _make_stage(
        self, block: type[nn.Module], out_channels: int, num_blocks: int, width_per_group: int
    ) -> nn.Sequential:
        planes = out_channels // block.expansion
        upsample = nn.Sequential(deconv2x2(self._in, out_channels), nn.BatchNorm2d(out_channels))
        blocks = [block(self._in, planes, upsample, base_width=width_per_group)]
        blocks += [block(out_channels, planes, base_width=width_per_group) for _ in range(1, num_blocks)]
        blocks[-1].output_relu = not self._signed
        self._in = out_channels
        return nn.Sequential(*blocks)

    def forward(self, phi: torch.Tensor) -> list[torch.Tensor]:
        v3 = self.layer1(phi)
        v2 = self.layer2(v3)
        v1 = self.layer3(v2)
        return [v1, v2, v3]
