"""The sweep's trial schedulers, built from a run's settings in one place: the sweep (study/sweep.py) and the
replay (study/replay.py) construct exactly the same objects.

* ``fifo``: every trial trains to full fidelity (Ray Tune's ``FIFOScheduler``).
* ``asha``: Ray Tune's ``ASHAScheduler``: rungs at grace * rf^k epochs below ``max_epochs``; at a rung a trial
  continues only if its value is in the top 1/rf of those recorded there before it.
* ``asha`` with ``hedge`` > 0 (``--hedge``): a second bracket that never stops a trial early, Hyperband's hedge
  against rungs that rank badly. A trial joins it with probability ``hedge``, decided by the sweep's seed and the
  trial's number (reproducible for a seed and unchanged by a resume); its trials also measure how well the rungs
  rank without the survivors' bias (analysis/rungs.py).
* ``promote`` (``short_epochs`` = E): promotion of complete short runs (``internals.PromotionASHA``): a trial trains a
  complete E-epoch run, then its full run only if the short run's value clears ASHA's cut-off at that single rung.
  The replay's choice (bench/README.md). Each trial then trains two complete runs: ``study.runner.train_and_report``
  reports the short run as iterations 1..E and the full run as E+1..E+max_epochs (``fidelity``/``run_epoch`` in the
  epochs table).
* ``promote`` with ``bracket`` = B (every preset's default): *synchronous* promotion per bracket
  (``internals.BracketPromotionSearch``, a FIFO scheduler): trials are cut into brackets of B by their number, each
  trains its complete short run as one Tune trial, and when the bracket's last short run is in, its top ⌈n/rf⌉
  (:func:`bracket_winners`; n: its trials whose short runs did not fail) train their full runs as second Tune
  trials of the same Optuna trial. B is at most half the budget (:func:`bracket_size`), the last bracket can be
  smaller. A rank over a whole bracket instead of over the short runs that happen to be in, and a fixed share of
  full runs whatever the sampler proposes (bench/README.md, P1/P4).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

SCHEDULERS = ("asha", "fifo", "promote")
SAMPLERS = ("tpe", "random", "qmc", "tpe-complete")  # study.sweep.make_sampler builds them
METRIC = "val_acc"


def hedge_bracket(seed: int, number: int, share: float) -> int:
    """The bracket of trial ``number``: 1 (never stopped early) with probability ``share``, else 0 (ASHA's)."""
    return int(share > 0 and random.Random(f"hedge:{seed}:{number}").random() < share)


def synchronous(scheduler: str, settings: Mapping[str, Any]) -> bool:
    """Whether a sweep promotes per synchronous bracket (``settings["bracket"]``; promoting runs made before it
    existed, or with ``--bracket 0``, promote against Ray's running cut-off)."""
    return scheduler == "promote" and bool(settings.get("bracket"))


def bracket_members(bracket: int, size: int, budget: int) -> range:
    """The trial numbers of ``bracket`` (the last bracket of a budget can be smaller)."""
    return range(bracket * size, min((bracket + 1) * size, budget))


def bracket_size(size: int, budget: int) -> int:
    """The bracket size a sweep of ``budget`` trials uses: at most ``size``, and at least two brackets, so that the
    sampler learns from a decided bracket before it proposes most of the budget's second half (at concurrency c, up
    to c - 1 proposals of the next bracket start while a bracket's last short run is still training)."""
    return max(1, min(size, math.ceil(budget / 2)))


def bracket_winners(values: Mapping[Any, float], reduction_factor: float) -> list:
    """The keys a complete bracket promotes: the top ⌈n / reduction_factor⌉ of its short-run ``values`` (n: the
    values given, failed short runs left out), best first; ties go to the earlier key (trial number, arrival)."""
    ranked = sorted(values, key=lambda k: (-values[k], k))
    return ranked[:math.ceil(len(values) / reduction_factor)]


def make_scheduler(scheduler: str, settings: Mapping[str, Any], seed: int, passed: dict[int, int] | None = None):
    """The Ray Tune scheduler of a sweep with these settings (``max_epochs``, ``grace_epochs``,
    ``reduction_factor``, optional ``hedge``). ``passed``: re-run trials (number -> furthest iteration their
    interrupted attempt reported), never stopped again at a rung they had passed (``internals.KeepsEarlierPasses``)."""
    from ray.tune.schedulers import FIFOScheduler

    if scheduler == "fifo":
        return FIFOScheduler()
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {SCHEDULERS}")
    common = dict(metric=METRIC, mode="max", time_attr="training_iteration", max_t=settings["max_epochs"],
                  grace_period=settings["grace_epochs"], reduction_factor=settings["reduction_factor"])
    if scheduler == "promote":  # one rung: the end of the complete short run (settings["short_epochs"])
        from .internals import PromotionASHA

        return PromotionASHA(short=settings["short_epochs"], full=settings["max_epochs"], metric=METRIC, mode="max",
                             time_attr="training_iteration", reduction_factor=settings["reduction_factor"],
                             passed=passed)
    if settings.get("hedge"):
        from .internals import HedgedASHA

        return HedgedASHA(share=settings["hedge"], seed=seed, passed=passed, **common)
    from .internals import ResumableASHA

    return ResumableASHA(passed=passed, **common)
