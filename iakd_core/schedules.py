"""Swap schedules p(t), per-unit profiles and swap modes — small pure functions registered by name.

t is training progress in [0, 1] (optimizer steps done / total steps). Every value is clipped to [0, 1].

>>> schedule_value("linear", 0.5, p0=0.8, p1=0.2)
0.5
>>> [round(x, 3) for x in unit_probabilities(0.5, 3, "shallow_first")]
[0.75, 0.5, 0.25]

Add a schedule by decorating a function ``f(t, **params) -> float`` with ``@schedule("name", "param", ...)``.
Each parameter is declared once in ``PARAMS`` (help, valid range, search range, default); from there derive the
config key ``swap_<param>`` (``iakd_core.config``), the sweep's search space (``study/space.py``) and the tables'
columns. A new parameter is one ``PARAMS`` entry; a new schedule one decorated function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where masks are drawn: analysis/ reads the registry without it
    import torch


@dataclass(frozen=True)
class ScheduleParam:
    help: str
    lo: float                       # valid range of the config value
    hi: float
    search: tuple[float, float]     # the sweep's range (uniform)
    default: float | None = None    # config default (None: must be set by a schedule that uses it)


# Every schedule parameter, once: config key swap_<name>.
PARAMS: dict[str, ScheduleParam] = {
    "p0": ScheduleParam("swap probability at the start (constant: the probability; theseus: b)", 0, 1, (0.0, 1.0),
                        default=0.5),
    "p1": ScheduleParam("swap probability at the end (linear, cosine, step)", 0, 1, (0.0, 1.0)),
    "step_at": ScheduleParam("training fraction where the step schedule jumps p0 -> p1", 0, 1, (0.1, 0.9)),
    "ramp_k": ScheduleParam("theseus slope k in p(t) = clip(p0 - k t)", 0, 100, (0.1, 3.0)),
}


@dataclass(frozen=True)
class ScheduleSpec:
    fn: Callable[..., float]
    params: tuple[str, ...]
    doc: str


SCHEDULES: dict[str, ScheduleSpec] = {}


def schedule(name: str, *params: str) -> Callable[[Callable[..., float]], Callable[..., float]]:
    unknown = [p for p in params if p not in PARAMS]
    if unknown:
        raise KeyError(f"schedule {name!r}: declare parameter(s) {unknown} in schedules.PARAMS first")

    def register(fn: Callable[..., float]) -> Callable[..., float]:
        SCHEDULES[name] = ScheduleSpec(fn, params, (fn.__doc__ or "").strip())
        return fn

    return register


def clip01(value: float) -> float:
    return min(1.0, max(0.0, value))


@schedule("constant", "p0")
def constant(t: float, p0: float) -> float:
    """p(t) = p0."""
    return p0


@schedule("linear", "p0", "p1")
def linear(t: float, p0: float, p1: float) -> float:
    """p(t) = p0 + (p1 - p0) t."""
    return p0 + (p1 - p0) * t


@schedule("cosine", "p0", "p1")
def cosine(t: float, p0: float, p1: float) -> float:
    """p(t) = p1 + (p0 - p1) (1 + cos(pi t)) / 2: p0 at the start, p1 at the end, flat at both ends."""
    return p1 + (p0 - p1) * (1.0 + math.cos(math.pi * t)) / 2.0


@schedule("step", "p0", "p1", "step_at")
def step(t: float, p0: float, p1: float, step_at: float) -> float:
    """p(t) = p0 while t < step_at, then p1."""
    return p0 if t < step_at else p1


@schedule("theseus", "p0", "ramp_k")
def theseus(t: float, p0: float, ramp_k: float) -> float:
    """BERT-of-Theseus curriculum in teacher-swap terms: p(t) = clip(p0 - ramp_k t)."""
    return p0 - ramp_k * t


def schedule_value(name: str, t: float, **params: float) -> float:
    """p(t) of the named schedule, clipped to [0, 1]; extra params (used by other schedules) are ignored."""
    spec = SCHEDULES[name]
    return clip01(spec.fn(min(1.0, max(0.0, t)), **{k: params[k] for k in spec.params}))


def schedule_params(config: Mapping[str, Any]) -> dict[str, float]:
    """The parameters a config's swap schedule uses (registry order, short names: p0, p1, step_at, ramp_k), read from
    its ``swap_<name>`` keys; one the config leaves unset (None, or NaN in a table row) is left out, and an unknown
    or missing schedule has none."""
    spec = SCHEDULES.get(str(config.get("swap_schedule")))
    if spec is None:
        return {}
    values = {p: config.get(f"swap_{p}") for p in spec.params}
    return {p: v for p, v in values.items() if v is not None and v == v}


def mean_probability(name: str, points: int = 1001, **params: float) -> float:
    """Mean of p(t) over training (trapezoid on a grid): the constant schedule with the same expected swaps."""
    values = [schedule_value(name, i / (points - 1), **params) for i in range(points)]
    return (sum(values) - (values[0] + values[-1]) / 2) / (points - 1)


# ---- per-unit profiles: multiply p(t) by a weight per unit (mean weight 1), then clip --------------------------
PROFILES: dict[str, Callable[[int], list[float]]] = {
    "uniform": lambda n: [1.0] * n,
    # linear weights 2(n - i)/(n + 1): mean 1, shallow units swapped more often
    "shallow_first": lambda n: [2.0 * (n - i) / (n + 1) for i in range(n)],
    "deep_first": lambda n: [2.0 * (i + 1) / (n + 1) for i in range(n)],
}


def unit_probabilities(p: float, num_units: int, profile: str = "uniform") -> list[float]:
    """Per-unit swap probabilities for a schedule value ``p``."""
    return [clip01(p * w) for w in PROFILES[profile](num_units)]


# ---- swap modes: how one batch's mask is drawn from the per-unit probabilities ---------------------------------
def bernoulli_mask(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each unit swapped independently with its own probability."""
    import torch

    return torch.rand(probs.shape, generator=generator) < probs


def exactly_k_mask(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """floor(sum p) or ceil(sum p) units per batch, each unit i swapped with exactly its own probability p_i:
    systematic sampling (Madow 1949) over a random order of the units. Unit i covers [c_{i-1}, c_i) of the
    cumulative probabilities; it is chosen when some point u + j (u ~ U[0, 1), j integer) falls in it, which has
    probability p_i (<= 1); the number of points in [0, sum p) is floor or ceil of sum p."""
    import torch

    order = torch.randperm(len(probs), generator=generator)
    upper = torch.cumsum(probs[order].double(), 0)
    lower = upper - probs[order].double()
    u = torch.rand((), generator=generator, dtype=torch.float64)
    chosen = torch.ceil(upper - u) - torch.ceil(lower - u) > 0
    mask = torch.zeros(probs.shape, dtype=torch.bool)
    mask[order] = chosen
    return mask


SWAP_MODES: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "bernoulli": bernoulli_mask,
    "exactly_k": exactly_k_mask,
}
