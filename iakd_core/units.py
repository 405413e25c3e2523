"""Swap units: how a teacher/student pair's residual blocks are grouped so that unit i of one replaces unit i
of the other.

Granularity is ``units_per_stage`` (g): every stage of both networks is cut into g consecutive groups of equal
size, so a pair supports every common divisor of its blocks-per-stage (g = 1 is "one unit per stage", the
paper's coarse choice). Where a teacher unit's input or output width differs from the student's, a 1x1 conv + BN
adapter translates (student width -> teacher width before it, back after it); adapters are trained with the
student and never used at evaluation, and they exist only on the side whose widths differ.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import cast

from torch import nn

from .models import Backbone, build_model
from .models.skeleton import Block


class IncompatiblePairError(ValueError):
    """A teacher/student pair (or granularity) that cannot be swapped unit for unit."""


@dataclass(frozen=True)
class UnitShape:
    in_channels: int
    out_channels: int
    stride: int


def _divisors(n: int) -> set[int]:
    return {d for d in range(1, n + 1) if n % d == 0}


def supported_granularities(teacher: Backbone, student: Backbone) -> list[int]:
    """Every ``units_per_stage`` both networks can be cut into (ascending; 1 is always first)."""
    t_blocks, s_blocks = teacher.blocks_per_stage, student.blocks_per_stage
    if len(t_blocks) != len(s_blocks):
        raise IncompatiblePairError(
            f"teacher {teacher.name} has {len(t_blocks)} stages but student {student.name} has {len(s_blocks)}; "
            "IAKD swaps corresponding stages, so pick networks with the same number of stages"
        )
    common = set.intersection(*(_divisors(n) for n in t_blocks + s_blocks))
    return sorted(common)


@functools.lru_cache(maxsize=64)
def architecture_granularities(teacher: str, student: str) -> tuple[int, ...]:
    """``supported_granularities`` of two registered architectures, checked without data: block structure and
    strides do not depend on the number of classes or input channels. Raises :class:`IncompatiblePairError`."""
    t, s = build_model(teacher, 10, 3), build_model(student, 10, 3)
    supported = supported_granularities(t, s)
    pair_units(t, s, supported[0])  # stride checks
    return tuple(supported)


def check_granularity(teacher: str, student: str, units_per_stage: int) -> None:
    """Raise :class:`IncompatiblePairError` now (before any training) if the pair cannot be cut this way."""
    supported = architecture_granularities(teacher, student)
    if units_per_stage not in supported:
        raise IncompatiblePairError(f"units_per_stage={units_per_stage} is not possible for {teacher} -> {student} "
                                    f"(supported: {list(supported)})")


def split_units(model: Backbone, units_per_stage: int) -> list[nn.Sequential]:
    """Cut every stage into ``units_per_stage`` consecutive, equally long groups of blocks (shares modules)."""
    units = []
    for blocks in model.stage_blocks():
        size = len(blocks) // units_per_stage
        for g in range(units_per_stage):
            units.append(nn.Sequential(*blocks[g * size : (g + 1) * size]))
    return units


def unit_shape(unit: nn.Sequential) -> UnitShape:
    blocks = [cast(Block, block) for block in unit]
    return UnitShape(blocks[0].in_channels, blocks[-1].out_channels, math.prod(block.stride for block in blocks))


def make_adapter(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))


@dataclass
class UnitPairing:
    """The student's and teacher's units at one granularity, plus the adapters a width mismatch needs."""

    student_units: list[nn.Sequential]
    teacher_units: list[nn.Sequential]
    adapters_in: nn.ModuleList  # nn.Identity where widths agree
    adapters_out: nn.ModuleList
    units_per_stage: int = 1

    @property
    def num_units(self) -> int:
        return len(self.student_units)

    @property
    def has_adapters(self) -> bool:
        return any(not isinstance(a, nn.Identity) for a in [*self.adapters_in, *self.adapters_out])


def pair_units(teacher: Backbone, student: Backbone, units_per_stage: int = 1) -> UnitPairing:
    """Pair the networks' units at ``units_per_stage``; raise :class:`IncompatiblePairError` if impossible."""
    supported = supported_granularities(teacher, student)
    if units_per_stage not in supported:
        raise IncompatiblePairError(
            f"units_per_stage={units_per_stage} is not possible for {teacher.name} -> {student.name} "
            f"(blocks per stage {teacher.blocks_per_stage} vs {student.blocks_per_stage}); supported: {supported}"
        )
    s_units, t_units = split_units(student, units_per_stage), split_units(teacher, units_per_stage)
    adapters_in, adapters_out = nn.ModuleList(), nn.ModuleList()
    for i, (su, tu) in enumerate(zip(s_units, t_units, strict=True)):
        ss, ts = unit_shape(su), unit_shape(tu)
        if ss.stride != ts.stride:
            raise IncompatiblePairError(
                f"unit {i} downsamples by {ts.stride} in teacher {teacher.name} but by {ss.stride} in student "
                f"{student.name}; the networks' stages do not correspond"
            )
        same_in, same_out = ss.in_channels == ts.in_channels, ss.out_channels == ts.out_channels
        adapters_in.append(nn.Identity() if same_in else make_adapter(ss.in_channels, ts.in_channels))
        adapters_out.append(nn.Identity() if same_out else make_adapter(ts.out_channels, ss.out_channels))
    return UnitPairing(s_units, t_units, adapters_in, adapters_out, units_per_stage)
