"""The search spaces (define-by-run, conditional) and their reference points, derived from the registries.

* ``iakd``: the swap schedule and its parameters (``schedules.PARAMS``), per-unit profile, granularity, swap mode,
  the BatchNorm modes, BN recalibration, and IAKD's optional loss terms (``methods.TERMS``: KD, student-only CE),
  each switched on or off by ``use_<term>`` (so that "term off" is a real point of the space, not a boundary of
  measure zero) with its hyperparameters in their declared search ranges.
* any other method (``run_sweep.py --method kd``): every hyperparameter the method declares with a search range
  (``methods.searched_hyperparameters``), in that range.
Both: ``--search-optimizer`` adds learning rate and weight decay. The reference point (always trial 0) is the
method's literature values (IAKD: the paper reconstruction). ``to_trial_config`` turns a sampled point into config
keys.
"""

from __future__ import annotations

from typing import Any

from iakd_core.hybrid import STUDENT_BN_MODES, TEACHER_BN_MODES
from iakd_core.methods import METHODS, TERMS, Hyperparameter, searched_hyperparameters
from iakd_core.schedules import PARAMS, PROFILES, SCHEDULES, SWAP_MODES

SWITCHES = tuple(f"use_{term}" for term in TERMS)  # use_kd, use_student_ce
OPTIMIZER = {"lr": (0.005, 0.2), "weight_decay": (1e-5, 1e-3)}  # --search-optimizer, log-uniform


def suggest(trial, name: str, hp: Hyperparameter) -> Any:
    lo, hi = hp.search
    if hp.integer:
        return trial.suggest_int(name, int(lo), int(hi), log=hp.log)
    return trial.suggest_float(name, lo, hi, log=hp.log)


class SearchSpace:
    """A define-by-run space for ``OptunaSearch`` (a class, so that Tune can pickle the searcher's state)."""

    def __init__(self, granularities: list[int], search_optimizer: bool = False, method: str = "iakd") -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        self.granularities, self.search_optimizer, self.method = list(granularities), search_optimizer, method

    def __call__(self, trial) -> None:
        if self.method == "iakd":
            self.swapping(trial)
        else:
            for name, hp in searched_hyperparameters(self.method).items():
                suggest(trial, name, hp)
        if self.search_optimizer:
            for name, (lo, hi) in OPTIMIZER.items():
                trial.suggest_float(name, lo, hi, log=True)

    def swapping(self, trial) -> None:
        schedule = trial.suggest_categorical("swap_schedule", list(SCHEDULES))
        for name in SCHEDULES[schedule].params:  # only the chosen schedule's parameters, in their search ranges
            trial.suggest_float(f"swap_{name}", *PARAMS[name].search)
        trial.suggest_categorical("swap_profile", list(PROFILES))
        trial.suggest_categorical("units_per_stage", self.granularities)
        trial.suggest_categorical("swap_mode", list(SWAP_MODES))
        trial.suggest_categorical("teacher_bn", list(TEACHER_BN_MODES))
        trial.suggest_categorical("student_bn", list(STUDENT_BN_MODES))
        searched = searched_hyperparameters("iakd")
        for term, names in TERMS.items():
            if trial.suggest_categorical(f"use_{term}", [False, True]):
                for name in names:
                    if name in searched:
                        suggest(trial, name, searched[name])
        trial.suggest_categorical("bn_recalibration_batches", [0, 32])


def realise(space: SearchSpace, point: dict[str, Any]) -> dict[str, Any]:
    """The parameters a trial of ``space`` enqueued with ``point`` really gets (what the point leaves open is drawn
    at random; what the space would not ask for under the point's choices is dropped)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line per point
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(point)
    trial = study.ask()
    space(trial)
    return dict(trial.params)


def reference_point(method: str = "iakd") -> dict[str, Any]:
    """The method's literature values as a point of its space: always trial 0 of a sweep."""
    literature = METHODS[method].literature
    if method != "iakd":
        return {k: literature.get(k, hp.default) for k, hp in searched_hyperparameters(method).items()}
    point = {k: literature[k] for k in ("swap_schedule", "swap_p0", "swap_profile", "units_per_stage", "swap_mode",
                                        "teacher_bn", "student_bn", "bn_recalibration_batches")}
    for term, names in TERMS.items():
        weight = names[0]
        point[f"use_{term}"] = literature.get(weight, 0.0) > 0
    return point


def to_trial_config(params: dict[str, Any]) -> dict[str, Any]:
    """Sampled parameters -> TrialConfig keys (a switched-off term gets weight 0)."""
    config = {k: v for k, v in params.items() if k not in SWITCHES}
    for term, names in TERMS.items():
        if f"use_{term}" in params and not params[f"use_{term}"]:
            config[names[0]] = 0.0
    return config
