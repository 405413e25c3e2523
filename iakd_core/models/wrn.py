"""Wide ResNets WRN-d-k (Zagoruyko & Komodakis 2016): pre-activation blocks, depth 6n+4, widths 16k/32k/64k."""

from __future__ import annotations

import torch
from torch import nn

from .skeleton import Backbone, Block, ClassifierHead, init_weights


class PreActBlock(Block):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 + shortcut (1x1 conv of the activated input when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.equal = in_channels == out_channels and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(act))))
        return out + (x if self.shortcut is None else self.shortcut(act))


def wide_resnet(depth: int, widen: int, num_classes: int, in_channels: int, name: str) -> Backbone:
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
    n = (depth - 4) // 6
    stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
    stages, c_in = [], 16
    for s, width in enumerate((16 * widen, 32 * widen, 64 * widen)):
        blocks = []
        for b in range(n):
            blocks.append(PreActBlock(c_in, width, stride=2 if (s > 0 and b == 0) else 1))
            c_in = width
        stages.append(blocks)
    model = Backbone(stem, stages, ClassifierHead(c_in, num_classes, preact=True), name)
    init_weights(model)
    return model
