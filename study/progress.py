"""The live view of a run: one status line per event (done / budget, running, pruned, failed, best so far, ETA)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from ray import tune

from iakd_core.console import fmt_seconds


class Progress(tune.Callback):
    """``[12/64 done | 2 running | 5 pruned | 0 failed] best val_acc 86.10% (label) | elapsed 3m12s | ETA 9m40s``.

    ``done`` / ``best`` carry what earlier sessions of the run finished, so a resumed run counts on from there.
    With synchronous brackets (``short_runs`` not None) a trial is done when its bracket prunes it, when its full
    run ends or when it fails, and the line also counts the complete short runs (``| short runs 14/64``), which
    move before anything is done.
    Only full-fidelity validation results can be "best" (never test accuracy: the test set is for the report).
    """

    def __init__(self, budget: int, max_epochs: int, label: Callable[[dict[str, Any]], str], done: int = 0,
                 pruned: int = 0, failed: int = 0, best: tuple[float, str] | None = None, metric: str = "val_acc",
                 every: float = 5.0, short_runs: int | None = None) -> None:
        self.budget, self.max_epochs, self.label, self.metric, self.every = budget, max_epochs, label, metric, every
        self.short_runs = short_runs
        self.counts = {"done": done, "pruned": pruned, "failed": failed}
        self.best = best
        self.start = time.time()
        self.done_at_start = done
        self.last = 0.0

    def line(self, running: int) -> str:
        c = self.counts
        elapsed = time.time() - self.start
        new = c["done"] - self.done_at_start
        eta = fmt_seconds(elapsed / new * (self.budget - c["done"])) if new else "?"
        best = f"best {self.metric} {self.best[0]:.2f}% ({self.best[1]})" if self.best else "best: none yet"
        shorts = f" | short runs {self.short_runs}/{self.budget}" if self.short_runs is not None else ""
        return (f"[{c['done']}/{self.budget} done | {running} running | {c['pruned']} pruned | {c['failed']} failed"
                f"{shorts}] {best} | elapsed {fmt_seconds(elapsed)} | ETA {eta}")

    def _print(self, trials, force: bool = False) -> None:
        now = time.time()
        if force or now - self.last >= self.every:
            self.last = now
            running = sum(t.status == "RUNNING" for t in trials)
            print(self.line(running), file=sys.stderr, flush=True)

    def ended(self, pruned: bool = False) -> None:
        """A trial ended outside Tune's view of it (a synchronous bracket's loser, told by the searcher)."""
        self.counts["done"] += 1
        self.counts["pruned"] += pruned

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = result.get("epoch", result.get("training_iteration", 0))  # (a promotion continues its short run)
        if self.metric in result and epoch >= self.max_epochs and (
                self.best is None or result[self.metric] > self.best[0]):
            self.best = (result[self.metric], self.label(trial.config))
        self._print(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if (trial.config or {}).get("phase") == "short":  # a bracket's short run: its bracket decides (ended)
            self.short_runs = (self.short_runs or 0) + 1
        else:
            self.counts["done"] += 1
            last = trial.last_result or {}
            self.counts["pruned"] += last.get("epoch", last.get("training_iteration", 0)) < self.max_epochs
        self._print([t for t in trials if t is not trial], force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.counts["done"] += 1
        self.counts["failed"] += 1
        self._print([t for t in trials if t is not trial], force=True)

    def on_experiment_end(self, trials, **info):
        """The closing line: nothing is running any more (a trial cut short by a signal is not 'running')."""
        print(self.line(0), file=sys.stderr, flush=True)
