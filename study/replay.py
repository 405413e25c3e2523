"""Replay trial schedulers on recorded learning curves, at no training cost (the idea of Syne Tune's simulator
backend), to choose the sweep's default from evidence.

A *pool* (study/run_pool.py) holds, for each of N configurations, the validation accuracy after every epoch of a
full-fidelity run and the final accuracy of complete short runs. A replay sends the configurations, in one arrival
order, through a scheduler at a given concurrency, each epoch taking the seconds the pool recorded for it:

* stopping schedulers (``fifo``, ``asha``, ``asha`` + hedge) are the sweep's own objects (``schedulers.
  make_scheduler``: Ray Tune's ``ASHAScheduler``, ``internals.HedgedASHA``), called as Tune calls them
  (``on_trial_add``, ``on_trial_result`` per epoch in order of arrival, ``on_trial_complete``);
* ``promote`` (BOHB-style): every configuration first as a complete short run of ``short`` epochs; one whose final
  value clears the cut-off Ray's ASHA would apply (the (1 - 1/eta) quantile of the short runs finished before it,
  ``_Bracket.cutoff``'s rule; the first always passes) is promoted to a full run, which starts before any new
  configuration. With ``bracket=B`` (synchronous successive halving, as in Hyperband/BOHB; the sweep's
  default) the arrival order is cut into brackets as a sweep of that many configurations cuts its trial numbers
  (``schedulers.bracket_size``: at most B, at most half the order), and when the last short run of a bracket
  finishes, its top ⌈n/rf⌉ by short-run value are promoted (``schedulers.bracket_winners``): a rank over a whole
  bracket instead of over the results that happen to be in, and a fixed share of full runs whatever the sampler
  proposes.

``check_recorded`` replays a recorded ASHA sweep from its own files (epochs ordered by their timestamps) and
compares the stopping decisions with what Ray decided there.
"""

from __future__ import annotations

import functools
import heapq
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from analysis.manifest import options
from analysis.summaries import trial_iterations

from .schedulers import METRIC, bracket_members, bracket_size, bracket_winners, make_scheduler, synchronous


@dataclass(frozen=True)
class Candidate:
    """One scheduler to replay: ``kind`` fifo | asha | promote, with its settings."""

    name: str
    kind: str
    grace: int = 0
    rf: float = 3.0
    hedge: float = 0.0
    short: int = 0
    bracket: int = 0

    @classmethod
    def parse(cls, spec: str) -> Candidate:
        """``fifo``, ``asha:grace=2,rf=3``, ``asha:grace=2,rf=3,hedge=0.25``, ``promote:short=3,rf=3``,
        ``promote:short=3,rf=3,bracket=16``."""
        kind, _, rest = spec.partition(":")
        if kind not in ("fifo", "asha", "promote"):
            raise ValueError(f"candidate {spec!r}: the kind must be fifo, asha or promote")
        values: dict[str, Any] = {}
        for item in filter(None, rest.split(",")):
            key, _, value = item.partition("=")
            if key not in ("grace", "rf", "hedge", "short", "bracket"):
                raise ValueError(f"candidate {spec!r}: unknown setting {key!r} (grace, rf, hedge, short, bracket)")
            values[key] = float(value) if key in ("rf", "hedge") else int(value)
        candidate = cls(spec, kind, **values)
        if kind == "asha" and candidate.grace < 1 or kind == "promote" and candidate.short < 1:
            raise ValueError(f"candidate {spec!r}: asha needs grace=E, promote needs short=E")
        if candidate.bracket < 0:
            raise ValueError(f"candidate {spec!r}: bracket=B needs B >= 1")
        if candidate.bracket and kind != "promote":
            raise ValueError(f"candidate {spec!r}: bracket=B applies to promote only")
        return candidate

    def settings(self, max_epochs: int) -> dict[str, Any]:
        return {"max_epochs": max_epochs, "grace_epochs": min(self.grace, max_epochs),
                "reduction_factor": self.rf, "hedge": self.hedge}


# What run_replay.py compares by default: the first ASHA default, later first rungs, gentler reduction, hedges,
# promotion against the running cut-off and per synchronous bracket (the sweep's default).
DEFAULT_CANDIDATES = ("fifo", "asha:grace=2,rf=3", "asha:grace=4,rf=3", "asha:grace=5,rf=3", "asha:grace=6,rf=3",
                      "asha:grace=5,rf=2", "asha:grace=2,rf=3,hedge=0.25", "asha:grace=5,rf=3,hedge=0.25",
                      "promote:short=3,rf=3", "promote:short=5,rf=3", "promote:short=5,rf=2",
                      "promote:short=3,rf=3,bracket=16", "promote:short=3,rf=3,bracket=32")


@dataclass
class Pool:
    """``full``: config x epoch -> val_acc of the full-fidelity runs; ``seconds``: config -> seconds per epoch of
    its full run; ``short``: E -> (config -> final val_acc of the complete E-epoch run); ``short_seconds``: E ->
    (config -> seconds per epoch)."""

    full: pd.DataFrame
    seconds: pd.Series
    short: dict[int, pd.Series] = field(default_factory=dict)
    short_seconds: dict[int, pd.Series] = field(default_factory=dict)

    @classmethod
    def from_curves(cls, curves: pd.DataFrame) -> Pool:
        """From curves.csv (fidelity, config, epoch, val_acc, epoch_seconds); configurations missing at any
        fidelity are left out everywhere, so every candidate sees the same set."""
        top = int(curves["fidelity"].max())
        by = {int(f): g for f, g in curves.groupby("fidelity")}
        last = {f: g.groupby("config")["epoch"].max() for f, g in by.items()}
        complete = {f: set(e.index[e == f]) for f, e in last.items()}
        keep = sorted(set.intersection(*complete.values()))
        full = by[top].pivot_table(index="config", columns="epoch", values="val_acc").loc[keep]
        seconds = by[top].groupby("config")["epoch_seconds"].mean().loc[keep]
        short, short_seconds = {}, {}
        for f, g in by.items():
            if f != top:
                short[f] = g[g["epoch"] == f].set_index("config")["val_acc"].loc[keep]
                short_seconds[f] = g.groupby("config")["epoch_seconds"].mean().loc[keep]
        return cls(full, seconds, short, short_seconds)

    @functools.cached_property
    def curve(self) -> dict[Any, np.ndarray]:
        """config -> its full run's values (epoch e at index e - 1), for fast replays."""
        return {c: row for c, row in zip(self.full.index, self.full.to_numpy(float), strict=True)}

    @functools.cached_property
    def seconds_per_epoch(self) -> dict[Any, float]:
        return self.seconds.to_dict()

    @property
    def max_epochs(self) -> int:
        return int(self.full.columns.max())

    @property
    def final(self) -> pd.Series:
        return self.full[self.max_epochs]


@dataclass
class Outcome:
    """What one replay did: full-fidelity epochs trained per configuration (max_epochs = reached the end), all
    trial-epochs spent (short runs included), the simulated wall time."""

    reached: dict[Any, int]
    trial_epochs: float
    wall: float


def _trial(key: str, number: int) -> SimpleNamespace:
    """What a Ray scheduler reads of a Tune trial: its id, and the trial number the search puts in its config."""
    return SimpleNamespace(trial_id=key, config={"trial_number": number})


def replay_stopping(candidate: Candidate, pool: Pool, order: list, concurrency: int = 2, seed: int = 0) -> Outcome:
    """A stopping scheduler over the configurations in ``order`` (trial numbers 0, 1, ... in that order)."""
    from ray.tune.schedulers import TrialScheduler

    top = pool.max_epochs
    scheduler = make_scheduler("fifo" if candidate.kind == "fifo" else "asha", candidate.settings(top), seed)
    values, seconds = pool.curve, pool.seconds_per_epoch
    events: list[tuple[float, int, int]] = []  # (finish time, trial number, epoch)
    trials = [_trial(f"t{i}", i) for i in range(len(order))]
    reached: dict[Any, int] = {}
    waiting = list(range(len(trials)))[::-1]

    def start(now: float) -> None:
        number = waiting.pop()
        scheduler.on_trial_add(None, trials[number])
        heapq.heappush(events, (now + seconds[order[number]], number, 1))

    for _ in range(min(concurrency, len(waiting))):
        start(0.0)
    now = 0.0
    while events:
        now, number, epoch = heapq.heappop(events)
        trial, config = trials[number], order[number]
        result = {"training_iteration": epoch, METRIC: values[config][epoch - 1]}
        action = scheduler.on_trial_result(None, trial, result)
        if action == TrialScheduler.STOP or epoch >= top:
            scheduler.on_trial_complete(None, trial, result)
            reached[config] = epoch
            if waiting:
                start(now)
        else:
            heapq.heappush(events, (now + seconds[config], number, epoch + 1))
    return Outcome(reached, float(sum(reached.values())), now)


def replay_promotion(candidate: Candidate, pool: Pool, order: list, concurrency: int = 2) -> Outcome:
    """Complete short runs, the good ones promoted to full runs (promotions first, then new configurations):
    against the running cut-off, or per bracket when ``candidate.bracket`` is set."""
    from .internals import asha_cutoff

    short, top = candidate.short, pool.max_epochs
    if short not in pool.short:
        raise ValueError(f"the pool has no complete {short}-epoch runs (it has {sorted(pool.short)})")
    recorded: dict[Any, float] = {}
    events: list[tuple[float, int, Any, str]] = []
    new, promoted = list(order)[::-1], []
    reached: dict[Any, int] = {}
    spent, seq, now = 0.0, 0, 0.0
    size = bracket_size(candidate.bracket, len(order)) if candidate.bracket else 0  # as a sweep of this budget
    arrival = {config: i for i, config in enumerate(order)}
    bracket_of = {config: i // size for config, i in arrival.items()} if size else {}
    members = pd.Series(bracket_of).value_counts().to_dict() if size else {}
    finished: dict[int, dict[Any, float]] = {}

    def start(at: float) -> None:
        nonlocal seq, spent
        if promoted:
            config, kind, epochs, per = promoted.pop(0), "full", top, pool.seconds
        else:
            config, kind, epochs, per = new.pop(), "short", short, pool.short_seconds[short]
        spent += epochs
        seq += 1
        heapq.heappush(events, (at + epochs * per[config], seq, config, kind))

    for _ in range(min(concurrency, len(new))):
        start(0.0)
    while events:
        now, _, config, kind = heapq.heappop(events)
        if kind == "short":
            value = float(pool.short[short][config])
            reached[config] = 0
            if size:  # the bracket's last short run decides for the whole bracket
                mine = finished.setdefault(bracket_of[config], {})
                mine[config] = value
                if len(mine) == members[bracket_of[config]]:
                    by_arrival = {arrival[c]: v for c, v in mine.items()}  # the sweep's rule, trial numbers
                    promoted.extend(order[i] for i in bracket_winners(by_arrival, candidate.rf))
            else:
                bar = asha_cutoff(recorded, candidate.rf)  # Ray's rule: the (1 - 1/rf) quantile recorded so far
                recorded[config] = value
                if bar is None or value >= bar:
                    promoted.append(config)
        else:
            reached[config] = top
        while len(events) < concurrency and (promoted or new):  # a finished bracket can free several at once
            start(now)
    return Outcome(reached, spent, now)


def replay(candidate: Candidate, pool: Pool, order: list, concurrency: int = 2, seed: int = 0) -> Outcome:
    if candidate.kind == "promote":
        return replay_promotion(candidate, pool, order, concurrency)
    return replay_stopping(candidate, pool, order, concurrency, seed)


def compare(candidates: list[Candidate], pool: Pool, orders: int = 200, budget: int | None = None,
            concurrency: int = 2, seed: int = 0, k: int = 3) -> pd.DataFrame:
    """Every candidate over the same ``orders`` random arrival orders (each of ``budget`` configurations drawn from
    the pool, all by default; hedge brackets seeded per order). One row per candidate: top-1 kept (the best
    configuration of the order reached full fidelity), top-k kept (the one selected is among the order's final top
    k), the share of the top k that reached full fidelity and whether all k did, the selected configuration's final
    accuracy and its regret against the order's best, trial-epochs and simulated wall time as ratios to FIFO's."""
    rng = np.random.default_rng(seed)
    configs = list(pool.full.index)
    budget = min(budget or len(configs), len(configs))
    rows = []
    draws = [list(rng.permutation(configs)[:budget]) for _ in range(orders)]
    fifo_epochs = budget * pool.max_epochs
    finals = [pool.final.loc[order] for order in draws]
    for candidate in candidates:
        for i, (order, final) in enumerate(zip(draws, finals, strict=True)):
            out = replay(candidate, pool, order, concurrency, seed=seed + i)
            full = [c for c, e in out.reached.items() if e >= pool.max_epochs]
            best = final.nlargest(k).index
            selected = final.loc[full].idxmax()
            kept = len(set(best) & set(full)) / k
            rows.append({"candidate": candidate.name, "top1": final.idxmax() in full, f"top{k}": selected in best,
                         f"top{k}_share": kept, f"top{k}_all": kept == 1, "selected_acc": final[selected],
                         "regret": final.max() - final[selected], "trial_epochs": out.trial_epochs / fifo_epochs,
                         "wall": out.wall})
    df = pd.DataFrame(rows)
    fifo_wall = df.loc[df["candidate"] == "fifo", "wall"].mean() if (df["candidate"] == "fifo").any() else math.nan
    table = df.groupby("candidate", sort=False).mean(numeric_only=True)
    table["wall"] = table["wall"] / fifo_wall
    return table.rename(columns={"trial_epochs": "trial_epochs_vs_fifo", "wall": "wall_vs_fifo"})


def check_recorded(trials: pd.DataFrame, epochs: pd.DataFrame, manifest: dict[str, Any]) -> pd.DataFrame:
    """Replay a recorded ASHA sweep (its trials and epochs tables, its manifest) through a fresh scheduler built
    from its settings, the epochs in the order of their timestamps. One row per trial the scheduler ended (COMPLETE
    or PRUNED; failed ones are replayed but not compared): the epochs it trained (recorded) and the epoch at which
    the replayed scheduler stops it (replayed). Faithful for a sweep run in one session: a re-run trial's record
    starts afresh, so rung values its interrupted attempt gave an earlier session are not replayed."""
    from ray.tune.schedulers import TrialScheduler

    searched, settings = options(manifest), manifest["settings"]
    if synchronous(searched.scheduler, settings):
        return check_brackets(trials, epochs, manifest)
    scheduler = make_scheduler(searched.scheduler, settings, searched.seed)
    number = trials.set_index("trial_id")["trial_number"]
    stopped: dict[str, int] = {}
    added = set()
    order = epochs.assign(number=epochs["trial_id"].map(number))
    for row in order.sort_values(["timestamp", "number", "epoch"], kind="stable").itertuples():
        key = row.trial_id
        if key in stopped:
            continue
        trial = _trial(key, int(number[key]))
        if key not in added:
            scheduler.on_trial_add(None, trial)
            added.add(key)
        result = {"training_iteration": int(row.epoch), METRIC: float(row.val_acc)}
        if (scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP
                or row.epoch >= trial_iterations(settings)):
            scheduler.on_trial_complete(None, trial, result)
            stopped[key] = int(row.epoch)
    ended = trials.loc[trials["status"].isin(["COMPLETE", "PRUNED"]), "trial_id"]  # not by an error or a kill
    recorded = epochs[epochs["trial_id"].isin(ended)].groupby("trial_id")["epoch"].max()
    return pd.DataFrame({"recorded": recorded, "replayed": pd.Series(stopped).reindex(recorded.index)}
                        ).rename_axis("trial_id")


def check_brackets(trials: pd.DataFrame, epochs: pd.DataFrame, manifest: dict[str, Any]) -> pd.DataFrame:
    """``check_recorded`` for synchronous brackets: each complete bracket decided again from its trials' short-run
    values (``bracket_winners``; a failed short run is no candidate). Rows as ``check_recorded``'s: the iterations
    a trial trained (recorded) and the ones the rule gives it (replayed: the short run, or short + full)."""
    settings = manifest["settings"]
    short, size, budget = settings["short_epochs"], settings["bracket"], manifest["budget"]
    number = trials.set_index("trial_id")["trial_number"]
    failed = set(trials.loc[trials["status"] == "ERROR", "trial_number"])
    first = epochs[(epochs["fidelity"] == short) & (epochs["run_epoch"] == short) & (epochs["epoch"] == short)]
    values = first.assign(number=first["trial_id"].map(number)).set_index("number")["val_acc"]
    replayed: dict[str, int] = {}
    for b in range(math.ceil(budget / size)):
        members = bracket_members(b, size, budget)
        ran = {n: float(values[n]) for n in members if n in values.index}
        if any(n not in ran and n not in failed for n in members):
            continue  # not decided yet (a short run still to come)
        winners = set(bracket_winners(ran, settings["reduction_factor"]))
        for key, n in number[number.isin(list(ran))].items():
            replayed[key] = trial_iterations(settings) if n in winners else short
    ended = trials.loc[trials["status"].isin(["COMPLETE", "PRUNED"]), "trial_id"]
    recorded = epochs[epochs["trial_id"].isin(ended)].groupby("trial_id")["epoch"].max()
    return pd.DataFrame({"recorded": recorded, "replayed": pd.Series(replayed, dtype=float).reindex(recorded.index)}
                        ).rename_axis("trial_id")


def fidelity_ranks(pool: Pool, k: int = 3) -> pd.DataFrame:
    """How well each cheaper measurement ranks the configurations by their final value: every epoch of the full
    runs, and every complete short run. Spearman's rho and the share of the final top k that are in its top 1/3."""
    from scipy import stats

    final = pool.final
    best = set(final.nlargest(k).index)
    views = {f"epoch {e} of {pool.max_epochs}": pool.full[e] for e in pool.full.columns if e < pool.max_epochs}
    views.update({f"complete {e}-epoch run": values for e, values in pool.short.items()})
    rows = []
    for name, values in views.items():
        third = set(values.nlargest(max(1, len(values) // 3)).index)
        rows.append({"measurement": name, "spearman": stats.spearmanr(values, final.loc[values.index]).statistic,
                     f"top{k} in top third": len(best & third) / k})
    return pd.DataFrame(rows)
