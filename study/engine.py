"""The Ray Tune + Optuna machinery shared by the sweep and the ablation runner.

* ``tune_trial``: the Tune function trainable (calls ``iakd_core.run_trial``, reports every epoch).
* ``FidelityAwareOptunaSearch``: ``OptunaSearch`` that tells Optuna PRUNED for trials ASHA stopped early
  (Ray's own tells COMPLETE with the early value, which biases TPE, best-trial and importance) and FAIL for crashes.
* ``Progress``: a compact live view (done / budget, running, pruned, failed, best so far, elapsed, ETA).
* ``start_ray``: a private local Ray (short temp dir, quiet) or a connection to a cluster.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from typing import Any

import optuna
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from iakd_core import run_trial

from .space import to_trial_config

METRIC = "val_acc"


def tune_trial(config: dict[str, Any], base: dict[str, Any]) -> None:
    """Ray Tune trainable: base config + sampled params -> one IAKD run, one ``tune.report`` per epoch."""
    cfg = {**base, **to_trial_config(config)}
    best = {"val_acc_best": float("-inf"), "train_seconds_total": 0.0}

    def report(metrics: dict[str, Any]) -> None:
        best["val_acc_best"] = max(best["val_acc_best"], metrics["val_acc"])
        best["train_seconds_total"] += metrics["epoch_seconds"]
        tune.report({**metrics, **best})

    run_trial(cfg, report)


class FidelityAwareOptunaSearch(OptunaSearch):
    """Optuna bookkeeping that knows about multi-fidelity: COMPLETE only at full fidelity."""

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs

    def suggest(self, trial_id: str):
        params = super().suggest(trial_id)
        if params is not None:
            self._ot_trials[trial_id].set_user_attr("tune_trial_id", trial_id)
        return params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        epochs = (result or {}).get("training_iteration", 0)
        if error:
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        elif epochs < self.max_epochs:
            # Tune does not pass the result that made the scheduler stop a trial to on_trial_result: record it
            # here, so the PRUNED trial keeps its whole learning curve (single-objective studies only).
            if not isinstance(self.metric, list) and result and self.metric in result:
                with warnings.catch_warnings():  # Optuna ignores (and warns about) a step reported twice
                    warnings.simplefilter("ignore")
                    ot_trial.report(result[self.metric], epochs)
            ot_trial.set_user_attr("epochs", epochs)
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        else:
            values = [result[m] for m in self.metric] if isinstance(self.metric, list) else result[self.metric]
            ot_trial.set_user_attr("epochs", epochs)
            self._ot_study.tell(ot_trial, values)
        self._completed_trials.add(trial_id)


def _fmt_seconds(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def describe(config: dict[str, Any]) -> str:
    """A short summary of an IAKD config for progress lines."""
    c = {k: v for k, v in to_trial_config(config).items() if v is not None and v == v}  # drop None/NaN
    sched = c.get("swap_schedule", "?")
    parts = [f"{sched} p0={c.get('swap_p0', 0):.2f}"]
    if "swap_p1" in c:
        parts.append(f"p1={c['swap_p1']:.2f}")
    parts.append(f"g={c.get('units_per_stage', 1)}")
    if c.get("kd_weight"):
        parts.append(f"kd={c['kd_weight']:.2f}")
    if c.get("student_ce_weight"):
        parts.append(f"sce={c['student_ce_weight']:.2f}")
    return " ".join(parts)


class Progress(tune.Callback):
    """One status line per event, at most every ``every`` seconds (plus one per finished trial)."""

    def __init__(self, budget: int, max_epochs: int, metric: str = METRIC, label=None, every: float = 5.0,
                 stream=sys.stderr) -> None:
        self.budget, self.max_epochs, self.every, self.stream = budget, max_epochs, every, stream
        self.metric, self.label = metric, label or describe
        self.start = time.time()
        self.last = 0.0
        self.best: tuple[float, str] | None = None
        self.finished: dict[str, str] = {}

    def __getstate__(self):  # the stream is not picklable; restored runs print to stderr
        state = self.__dict__.copy()
        state["stream"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.stream = sys.stderr
        self.start = time.time()

    def _line(self, trials, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last < self.every:
            return
        self.last = now
        done = len(self.finished)
        running = sum(t.status == "RUNNING" for t in trials)
        pruned = sum(v == "PRUNED" for v in self.finished.values())
        failed = sum(v == "ERROR" for v in self.finished.values())
        elapsed = now - self.start
        eta = elapsed / done * (self.budget - done) if done else float("nan")
        best = f"best {self.metric} {self.best[0]:.2f}% ({self.best[1]})" if self.best else "best: none yet"
        eta_s = _fmt_seconds(eta) if done else "?"
        print(f"[{done}/{self.budget} done | {running} running | {pruned} pruned | {failed} failed] {best} | "
              f"elapsed {_fmt_seconds(elapsed)} | ETA {eta_s}", file=self.stream, flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.metric in result and result.get("training_iteration", 0) >= self.max_epochs and (
                self.best is None or result[self.metric] > self.best[0]):
            self.best = (result[self.metric], self.label(trial.config))
        self._line(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        epochs = (trial.last_result or {}).get("training_iteration", 0)
        self.finished[trial.trial_id] = "COMPLETE" if epochs >= self.max_epochs else "PRUNED"
        self._line(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.finished[trial.trial_id] = "ERROR"
        self._line(trials, force=True)


def start_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """A private, quiet local Ray (default) or a connection to ``address`` (``auto``, ``host:port``, ``ray://``)."""
    import logging

    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("ray", "ray.tune", "ray.train"):  # trial errors are recorded in the tables, not dumped here
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # experiment state on disk often: resume after a kill
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Ray tables, only our progress lines
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    if address:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        return
    temp_dir = os.path.join(tempfile.gettempdir(), f"iakdray{os.getuid()}")  # AF_UNIX paths must stay short
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False, _temp_dir=temp_dir, configure_logging=True)
