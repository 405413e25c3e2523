"""CIFAR ResNets (He et al. 2016, depth 6n+2) in the RepDistiller layout, incl. the x4-wide resnet8x4/32x4."""

from __future__ import annotations

import torch
from torch import nn

from .skeleton import Backbone, Block, ClassifierHead, init_weights


class BasicBlock(Block):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut (1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def cifar_resnet(
    depth: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int, name: str
) -> Backbone:
    """``widths`` = (stem, stage1, stage2, stage3); ``depth`` = 6n+2 with n blocks per stage."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, ...), got {depth}")
    n = (depth - 2) // 6
    stem = nn.Sequential(
        nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
    )
    stages, c_in = [], widths[0]
    for s, width in enumerate(widths[1:]):
        blocks = []
        for b in range(n):
            blocks.append(BasicBlock(c_in, width, stride=2 if (s > 0 and b == 0) else 1))
            c_in = width
        stages.append(blocks)
    model = Backbone(stem, stages, ClassifierHead(c_in, num_classes), name)
    init_weights(model)
    return model
