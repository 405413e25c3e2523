"""The one skeleton every model shares: ``stem`` -> ``stages`` (lists of residual blocks) -> ``head``.

Swap units (``iakd_core.units``) are built from ``stages``; nothing else in the project needs to know which
family a network belongs to. Every block exposes ``in_channels``, ``out_channels`` and ``stride`` so that the
pairing code can check shapes without running a forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn


class Block(nn.Module):
    """A residual block: what the pairing code reads of it without running it."""

    in_channels: int
    out_channels: int
    stride: int


class Backbone(nn.Module):
    """``stem`` -> ``stages`` -> ``head``; ``features(x)`` also returns every stage output (for FitNet/AT)."""

    def __init__(self, stem: nn.Module, stages: Sequence[Sequence[Block]], head: nn.Module, name: str) -> None:
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(nn.Sequential(*blocks) for blocks in stages)
        self.head = head
        self.name = name

    def stage_blocks(self) -> list[list[Block]]:
        """Every stage's blocks, in order (the modules themselves, shared)."""
        return [[cast(Block, block) for block in stage.children()] for stage in self.stages]

    @property
    def blocks_per_stage(self) -> list[int]:
        return [len(blocks) for blocks in self.stage_blocks()]

    @property
    def stage_widths(self) -> list[int]:
        return [blocks[-1].out_channels for blocks in self.stage_blocks()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.head(h)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the output of every stage, in order."""
        h = self.stem(x)
        feats = []
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return self.head(h), feats


class ClassifierHead(nn.Module):
    """Optional pre-activation (BN+ReLU, for WRN), global average pooling, linear classifier."""

    def __init__(self, channels: int, num_classes: int, preact: bool = False) -> None:
        super().__init__()
        self.norm = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True)) if preact else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions, unit BN, default linear: the CIFAR-ResNet/WRN convention."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
