"""Model registry: ``build_model(name, num_classes, in_channels)``; ``MODELS`` lists the names.

Names follow RepDistiller/CRD: ``resnet{8,14,20,26,32,44,56,110}``, ``resnet8x4``, ``resnet32x4``,
``wrn_{depth}_{widen}`` (``wrn_16_2``, ``wrn_40_1``, ``wrn_40_2`` and any other valid WRN-d-k).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

from .resnet import cifar_resnet
from .skeleton import Backbone
from .wrn import wide_resnet

Builder = Callable[[int, int], Backbone]
MODELS: dict[str, Builder] = {}

def _resnet(depth: int, widths: tuple[int, int, int, int], name: str) -> Builder:
    return lambda num_classes, in_channels: cifar_resnet(depth, widths, num_classes, in_channels, name)


def _wrn(depth: int, widen: int) -> Builder:
    return lambda num_classes, in_channels: wide_resnet(depth, widen, num_classes, in_channels, f"wrn_{depth}_{widen}")


for _depth in (8, 14, 20, 26, 32, 44, 56, 110):
    MODELS[f"resnet{_depth}"] = _resnet(_depth, (16, 16, 32, 64), f"resnet{_depth}")
for _depth in (8, 32):
    MODELS[f"resnet{_depth}x4"] = _resnet(_depth, (32, 64, 128, 256), f"resnet{_depth}x4")
for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2), (16, 4), (28, 10)):
    MODELS[f"wrn_{_depth}_{_widen}"] = _wrn(_depth, _widen)


def is_known_architecture(name: str) -> bool:
    return name in MODELS or re.fullmatch(r"wrn_(\d+)_(\d+)", name) is not None


def build_model(name: str, num_classes: int, in_channels: int = 3) -> Backbone:
    """Build a registered model; ``wrn_D_K`` accepts any valid depth/width."""
    if name in MODELS:
        return MODELS[name](num_classes, in_channels)
    match = re.fullmatch(r"wrn_(\d+)_(\d+)", name)
    if match:
        return wide_resnet(int(match[1]), int(match[2]), num_classes, in_channels, name)
    raise ValueError(f"unknown architecture {name!r}; choose one of: {', '.join(MODELS)}")


# The BatchNorm layer types, by their public names (what ``batch_norms`` finds; lazy variants are not used here).
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
BatchNorm = nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d | nn.SyncBatchNorm


def batch_norms(module: nn.Module) -> list[BatchNorm]:
    """Every BatchNorm layer inside ``module`` (itself included), in ``modules()`` order."""
    return [m for m in module.modules() if isinstance(m, BATCH_NORMS)]


__all__ = ["BATCH_NORMS", "MODELS", "Backbone", "batch_norms", "build_model", "is_known_architecture"]
