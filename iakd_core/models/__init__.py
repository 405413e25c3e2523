"""Model registry: ``build_model(name, num_classes, in_channels)``; ``MODELS`` lists the names.

Names follow RepDistiller/CRD: ``resnet{8,14,20,26,32,44,56,110}``, ``resnet8x4``, ``resnet32x4``,
``wrn_{depth}_{widen}`` (``wrn_16_2``, ``wrn_40_1``, ``wrn_40_2`` and any other valid WRN-d-k).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .resnet import cifar_resnet
from .skeleton import Backbone
from .wrn import wide_resnet

Builder = Callable[[int, int], Backbone]
MODELS: dict[str, Builder] = {}

for _depth in (8, 14, 20, 26, 32, 44, 56, 110):
    MODELS[f"resnet{_depth}"] = lambda nc, ic, d=_depth: cifar_resnet(d, (16, 16, 32, 64), nc, ic, f"resnet{d}")
for _depth in (8, 32):
    MODELS[f"resnet{_depth}x4"] = lambda nc, ic, d=_depth: cifar_resnet(
        d, (32, 64, 128, 256), nc, ic, f"resnet{d}x4"
    )
for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2), (16, 4), (28, 10)):
    MODELS[f"wrn_{_depth}_{_widen}"] = lambda nc, ic, d=_depth, k=_widen: wide_resnet(d, k, nc, ic, f"wrn_{d}_{k}")


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


__all__ = ["MODELS", "Backbone", "build_model", "is_known_architecture"]
