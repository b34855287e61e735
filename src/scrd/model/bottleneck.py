"""One-Class Bottleneck Embedding (OCBE) of reverse distillation (RD4AD).

The OCBE fuses the teacher's three scales into one compact code φ: scales 1 and 2 are brought
down to the resolution of scale 3 by stride-2 3×3 convolutions, the three are concatenated,
and a stage of stride-2 residual blocks compresses them (2048×8×8 for wide_resnet50_2 at 256).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, conv1x1, conv3x3


def init_conv_and_norm(module: nn.Module) -> None:
    """RD4AD's initialisation: Kaiming-normal (fan_out) for Conv2d, BatchNorm γ=1, β=0.

    ConvTranspose2d is deliberately left at PyTorch's default (it is not a Conv2d subclass and
    the released code does not touch it).
    """
    for m in module.modules():
        if type(m) is nn.Conv2d:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class OCBE(nn.Module):
    """Multi-scale fusion followed by a stride-2 residual stage.

    ``channels`` are the teacher's channels at scales 1, 2, 3. The output has ``2 * c3``
    channels (512·expansion for ResNets, as in RD4AD). ``keep_unused`` creates ``conv4``/``bn4``,
    which RD4AD and the released SCRD code define but never run; they exist only so that
    released checkpoints load with ``strict=True``.
    """

    def __init__(
        self,
        block: type[nn.Module],
        channels: tuple[int, int, int],
        num_blocks: int,
        width_per_group: int = 64,
        keep_unused: bool = True,
    ) -> None:
        super().__init__()
        c1, c2, c3 = channels
        expansion = getattr(block, "expansion", 1)
        out_channels = 2 * c3
        # Registration order matches the released state_dict order (bn_layer first).
        self.bn_layer = self._make_stage(block, 3 * c3, out_channels // expansion, num_blocks, width_per_group)
        self.conv1 = conv3x3(c1, c2, stride=2)
        self.bn1 = nn.BatchNorm2d(c2)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(c2, c3, stride=2)
        self.bn2 = nn.BatchNorm2d(c3)
        self.conv3 = conv3x3(c2, c3, stride=2)
        self.bn3 = nn.BatchNorm2d(c3)
        if keep_unused:
            self.conv4 = conv1x1(4 * c3, out_channels)
            self.bn4 = nn.BatchNorm2d(out_channels)
        self.out_channels = out_channels
        init_conv_and_norm(self)

    @staticmethod
    def _make_stage(
        block: type[nn.Module], in_channels: int, planes: int, num_blocks: int, width_per_group: int
    ) -> nn.Sequential:
        expansion = getattr(block, "expansion", 1)
        downsample = nn.Sequential(
            conv1x1(in_channels, planes * expansion, stride=2), nn.BatchNorm2d(planes * expansion)
        )
        kwargs = {"base_width": width_per_group} if block is Bottleneck else {}
        layers = [block(in_channels, planes, 2, downsample, **kwargs)]
        layers += [block(planes * expansion, planes, **kwargs) for _ in range(1, num_blocks)]
        return nn.Sequential(*layers)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x1, x2, x3 = features
        l1 = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x1))))))
        l2 = self.relu(self.bn3(self.conv3(x2)))
        return self.bn_layer(torch.cat([l1, l2, x3], dim=1))

    def used_parameter_names(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if not n.startswith(("conv4.", "bn4."))}
