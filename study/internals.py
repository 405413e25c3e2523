"""Every use of a private Ray Tune or Optuna internal, in one place (each pinned by tests/test_internals.py).

Keep ``ray[tune]<2.61`` while these exist (pyproject.toml). Private names used:

* ``OptunaSearch._ot_trials`` / ``._ot_study`` / ``._completed_trials``: the Tune-trial -> Optuna-trial
  map and the study, which :class:`FidelityAwareOptunaSearch` needs to tell PRUNED / FAIL / COMPLETE itself and to
  hand a re-run (adopted) Optuna trial to a new Tune trial.
* ``optuna.Study._storage`` / ``._study_id``: to turn a trial *number* back into a live ``optuna.trial.Trial``
  (the public API offers ``study.tell(number)`` but no way to ``report`` into an existing trial by number).
* ``AsyncHyperBandScheduler._brackets`` / ``_Bracket._rungs``: to give a resumed session's ASHA the rung values of
  the trials finished in earlier sessions, so its stopping decisions match an uninterrupted run.
* ``AsyncHyperBandScheduler._brackets`` / ``._trial_info`` and ``async_hyperband._Bracket``: :class:`HedgedASHA`
  adds a bracket without rungs and assigns trials to brackets by trial number instead of Ray's unseeded
  ``np.random.choice``; :func:`asha_cutoff` is ``_Bracket.cutoff`` (the replay's promotion rule).
  :class:`KeepsEarlierPasses` wraps ``on_trial_result`` of these schedulers (public signature, private brackets).
* ``ray.init(_temp_dir=...)``: :func:`init_local_ray` puts a private Ray's session files in a folder of ours (a
  short per-user path, so its AF_UNIX socket paths stay under the OS limit); no public option does.
"""

from __future__ import annotations

import errno
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from ray.tune.schedulers import ASHAScheduler
from ray.tune.schedulers.async_hyperband import _Bracket
from ray.tune.search.optuna import OptunaSearch

from .cli import INTERRUPTED


def init_local_ray(temp_dir: str, **kwargs: Any) -> None:
    """``ray.init`` of a private local Ray whose session files go under ``temp_dir``."""
    import ray

    ray.init(_temp_dir=temp_dir, **kwargs)


def trial_by_number(study: optuna.Study, number: int) -> optuna.trial.Trial:
    """The live ``optuna.trial.Trial`` with this number (to report into or re-run it)."""
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.trial.Trial(study, trial_id)


# A trial's last result -> the Optuna user attributes that carry it (what the tables know, for optuna-dashboard).
TRIAL_ATTRS = {"train_seconds_total": "train_seconds", "swap_rate": "swap_rate_last_epoch",
               "val_acc_recal": "val_acc_recalibrated", "val_acc_best": "val_acc_best", "test_acc": "test_acc"}


def set_result_attrs(ot_trial: optuna.trial.Trial, epochs: int, result: dict | None) -> None:
    """The user attributes optuna-dashboard shows beside a trial: its epochs and ``TRIAL_ATTRS`` of its last result."""
    ot_trial.set_user_attr("epochs", epochs)
    for key, name in TRIAL_ATTRS.items():
        value = (result or {}).get(key)
        if isinstance(value, int | float) and value == value:
            ot_trial.set_user_attr(name, round(float(value), 4))


class FidelityAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that knows about multi-fidelity and interruption.

    * COMPLETE only at full fidelity; trials ASHA stopped are PRUNED (with their learning curve, including the
      result that made ASHA stop them, which Tune never passes to ``on_trial_result``); crashes are FAIL.
      Ray's own class tells COMPLETE with the early value, which biases TPE, best-trial and importance.
    * Trials stopped because the run is being interrupted are told nothing: they stay RUNNING in the study, and
      the next session re-runs them under the same Optuna number (``adopt``).
    * The suggested config carries ``trial_number`` (the Optuna number): the one numbering of trials.parquet, the
      report and optuna-dashboard, and the key of the trial's record (study/ledger.py).
    """

    def __init__(self, *args: Any, max_epochs: int, adopt: list[int] | None = None,
                 on_pruned: Callable[[int, int], None] | None = None,
                 full_disk: Callable[[int], bool] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self.adopt = list(adopt or [])
        self.on_pruned = on_pruned  # (trial number, epochs): noted before the study is told PRUNED
        self.full_disk = full_disk  # (trial number) -> whether the trial failed because the disk is full

    def suggest(self, trial_id: str):
        if trial_id not in self._ot_trials and self.adopt:
            self._ot_trials[trial_id] = trial_by_number(self._ot_study, self.adopt.pop(0))
        params = super().suggest(trial_id)
        if params is None:
            return None
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("tune_trial_id", trial_id)
        return {**params, "trial_number": ot_trial.number}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._ot_trials:
            # a re-run (adopted) trial reports the epochs its interrupted attempt had reported; Optuna keeps the
            # first value (the same seed gives the same value) and would warn once per such epoch
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*is already reported", category=UserWarning)
                super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if INTERRUPTED.is_set():  # stopped by the interruption, not by ASHA: leave it RUNNING for --resume
            return
        ot_trial = self._ot_trials[trial_id]
        # ("epoch": the trial's iteration, also when a promotion's Tune trial continues an earlier one's record)
        epochs = (result or {}).get("epoch", (result or {}).get("training_iteration", 0))
        set_result_attrs(ot_trial, epochs, result)
        if error:
            if self.full_disk is not None and self.full_disk(ot_trial.number):  # not the trial's fault: leave it
                raise OSError(errno.ENOSPC, f"No space left on device (trial {ot_trial.number})")  # RUNNING
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        else:
            single = not isinstance(self.metric, list)
            if single and result and self.metric in result:
                with warnings.catch_warnings():  # Optuna ignores (and warns about) a step reported twice
                    warnings.simplefilter("ignore")
                    ot_trial.report(result[self.metric], epochs)
            if epochs < self.max_epochs:
                if self.on_pruned is not None:
                    try:
                        self.on_pruned(ot_trial.number, epochs)
                    except OSError:  # the note is a convenience for rebuilding; PRUNED is told regardless
                        pass
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
            else:
                values = result[self.metric] if single else [result[m] for m in self.metric]
                self._ot_study.tell(ot_trial, values)
        self._completed_trials.add(trial_id)


class BracketPromotionSearch(FidelityAwareOptunaSearch):
    """Synchronous promotion per bracket (successive halving with one rung, as in Hyperband / BOHB brackets), run
    by the searcher under a FIFO scheduler: one Optuna trial is one or two Tune trials.

    * Optuna numbers ``b*size .. (b+1)*size - 1`` form bracket ``b`` (``schedulers.bracket_members``). A new
      proposal is a *short* Tune trial (config ``phase: short``): the complete ``short``-epoch run, after which the
      Optuna trial stays RUNNING, its curve reported.
    * When the last short run of a bracket is in, ``schedulers.bracket_winners`` ranks it: the losers are told
      PRUNED (their curve is the complete short run), the winners queued; ``suggest`` hands queued winners out
      before new proposals as *full* Tune trials (``phase: full``, same ``trial_number`` and parameters), which
      report iterations short+1 .. short+full (``epoch``) and end the Optuna trial COMPLETE.
    * ``values`` (trial number -> short-run value, None for a short run that failed) and ``rerun`` (RUNNING trials
      whose short run did not finish) come from the trial records, so a resumed session re-decides every complete
      bracket exactly as before (a loser not yet told is told now, a winner without its full run is queued) and
      re-runs unfinished short runs under their own numbers. One rule, live too (``recorded_short``: trial number
      -> the value of its recorded complete short run, or None): a short run that errors after its last epoch was
      recorded is still a candidate (its trial FAIL), as on resume and in ``replay.check_recorded``.
      ``proposals``: how many new trials it may still ask.
    * ``suggest`` returns None while a pending short run may still complete a bracket, and ``FINISHED`` when
      nothing is left to hand out (Tune's ``num_samples`` is only an upper bound).
    * The sampler learns nothing from a bracket until it is decided, and then first from its losers (PRUNED, with
      their short runs): the winners count once their full runs end. Promotion ranks by val accuracy, also for a
      two-objective sweep, whose trials report no curve to Optuna.
    """

    def __init__(self, *args: Any, short: int, size: int, reduction_factor: float, budget: int,
                 values: dict[int, float | None], rerun: list[int], proposals: int,
                 recorded_short: Callable[[int], float | None], **kwargs: Any) -> None:
        super().__init__(*args, adopt=rerun, **kwargs)
        self.short, self.size, self.rf, self.budget = short, size, reduction_factor, budget
        self.recorded_short = recorded_short
        self.last: dict[int, dict] = {}  # trial number -> its short run's last result (for a loser's attributes)
        self.values = dict(values)
        self.proposals = proposals
        self.queue: list[int] = []
        self.decided: set[int] = set()
        self.phase: dict[str, str] = {}
        self.short_running: set[str] = set()
        for bracket in sorted({n // size for n in self.values}):
            self._decide(bracket)

    def _decide(self, bracket: int) -> None:
        from .schedulers import bracket_members, bracket_winners

        members = bracket_members(bracket, self.size, self.budget)
        if bracket in self.decided or any(n not in self.values for n in members):
            return
        self.decided.add(bracket)
        ran = {n: v for n in members if (v := self.values[n]) is not None}
        winners = bracket_winners(ran, self.rf)
        running = {t.number for t in self._ot_study.get_trials(deepcopy=False,
                                                                states=(optuna.trial.TrialState.RUNNING,))}
        for number in sorted(set(ran) - set(winners)):
            if number in running:
                set_result_attrs(trial_by_number(self._ot_study, number), self.short, self.last.get(number))
                if self.on_pruned is not None:
                    try:
                        self.on_pruned(number, self.short)
                    except OSError:  # the note is a convenience for rebuilding; PRUNED is told regardless
                        pass
                self._ot_study.tell(number, state=optuna.trial.TrialState.PRUNED)
        self.queue.extend(n for n in winners if n in running)

    def suggest(self, trial_id: str):
        short_id = None
        if self.queue:  # a decided bracket's winner: its full run
            self._ot_trials[trial_id] = trial_by_number(self._ot_study, self.queue.pop(0))
            short_id = self._ot_trials[trial_id].user_attrs.get("tune_trial_id")
            phase = "full"
        elif self.adopt or self.proposals > 0:  # a short run: re-run, else new
            phase = "short"
        else:  # nothing to hand out unless a short run still to come in completes its bracket
            return None if self.short_running else self.FINISHED
        new = phase == "short" and not self.adopt
        params = super().suggest(trial_id)
        if params is None:
            return None
        if phase == "full":  # the trial's id stays its short run's (the tables' tune_trial_id); the full run's apart
            self._ot_trials[trial_id].set_user_attr("tune_trial_id_full", trial_id)
            if short_id is not None:
                self._ot_trials[trial_id].set_user_attr("tune_trial_id", short_id)
        self.proposals -= new
        self.phase[trial_id] = phase
        if phase == "short":
            self.short_running.add(trial_id)
        return {**params, "phase": phase}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._ot_trials or isinstance(self.metric, list):
            return
        with warnings.catch_warnings():  # a re-run reports the steps its interrupted attempt had (same values)
            warnings.simplefilter("ignore")
            step = int(result.get("epoch", result["training_iteration"]))  # (a promotion continues its short run)
            self._ot_trials[trial_id].report(result[self.metric], step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self.phase.get(trial_id) != "short" or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result, error)
        self.short_running.discard(trial_id)
        if INTERRUPTED.is_set():  # cut short by the interruption: re-run by the next session
            return
        number = self._ot_trials[trial_id].number
        if error or not result:  # (no result: a trial Tune stopped before it reported)
            super().on_trial_complete(trial_id, result, True)  # FAIL
            self.values[number] = self.recorded_short(number)
        else:
            from .schedulers import METRIC

            self.values[number] = float(result[METRIC])
            self.last[number] = result
            self.on_trial_result(trial_id, result)  # (the last result, in case Tune passed it here only)
            self._completed_trials.add(trial_id)  # the Tune trial ended; its Optuna trial waits for its bracket
        self._decide(number // self.size)


class _StudyWithoutPruned:
    """A study as a sampler reads it, minus its PRUNED trials (everything else passes through)."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False):
        states = tuple(s for s in (states or tuple(optuna.trial.TrialState)) if s != optuna.trial.TrialState.PRUNED)
        return self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)


class TPEWithoutPruned(optuna.samplers.TPESampler):
    """Optuna's TPE told nothing about PRUNED trials: it learns from COMPLETE (full-fidelity) trials only, and its
    random start-up lasts until ``n_startup_trials`` of them exist. Stock TPE ranks PRUNED trials by their last
    intermediate value below every COMPLETE one (``_split_trials``); this variant measures what that information
    is worth under a biased rung (``--sampler tpe-complete``, bench/bench_search.py). Relies on TPE reading trials
    through ``study._get_trials`` (pinned in tests/test_internals.py)."""

    def infer_relative_search_space(self, study, trial):
        return super().infer_relative_search_space(_StudyWithoutPruned(study), trial)

    def sample_relative(self, study, trial, search_space):
        return super().sample_relative(_StudyWithoutPruned(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return super().sample_independent(_StudyWithoutPruned(study), trial, param_name, param_distribution)


def preload_asha(scheduler: ASHAScheduler, curves: dict[str, list[float]]) -> int:
    """Record earlier sessions' trials in every rung they reached (``curves``: key -> metric per epoch, epoch 1
    first), as if this scheduler had seen them. Returns the number of rung entries added."""
    added = 0
    for bracket in scheduler._brackets:
        for milestone, recorded in bracket._rungs:
            for key, curve in curves.items():
                if len(curve) >= milestone:
                    recorded[f"earlier-{key}"] = curve[int(milestone) - 1]
                    added += 1
    return added


class KeepsEarlierPasses:
    """Mixin for Ray's ASHA schedulers: a re-run trial (the re-run of one an interruption cut short) is not stopped
    at a rung its interrupted attempt had already passed (``passed``: trial number -> the furthest iteration the
    attempt reported, from the study). The uninterrupted run let it through there; deciding again against the rung
    values recorded since could stop it earlier than the attempt got, leaving the study's curve with the attempt's
    later epochs. Its value is still recorded in the rung, as Ray's own logic does."""

    passed: dict[int, int]

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        from ray.tune.schedulers import TrialScheduler

        action = super().on_trial_result(tune_controller, trial, result)
        number = (getattr(trial, "config", None) or {}).get("trial_number")
        if action == TrialScheduler.STOP and result.get("training_iteration", 0) <= self.passed.get(number, 0):
            return TrialScheduler.CONTINUE
        return action


class ResumableASHA(KeepsEarlierPasses, ASHAScheduler):
    """Ray's ASHA, keeping the rungs re-run trials had passed (``KeepsEarlierPasses``)."""

    def __init__(self, *, passed: dict[int, int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.passed = dict(passed or {})


class HedgedASHA(KeepsEarlierPasses, ASHAScheduler):
    """ASHA (one bracket, Ray's own stopping logic) plus a bracket without rungs: a trial in it always trains to
    ``max_t``. The bracket of a trial is ``schedulers.hedge_bracket(seed, trial_number, share)``, where
    ``trial_number`` is the Optuna number the search puts into the trial's config (a trial without one, e.g. a
    plain Tune run, gets bracket 0)."""

    def __init__(self, *, share: float, seed: int, passed: dict[int, int] | None = None, **kwargs: Any) -> None:
        super().__init__(brackets=1, **kwargs)
        self.passed = dict(passed or {})
        self.share, self.seed = share, seed
        self._brackets.append(_Bracket(kwargs["max_t"], kwargs["max_t"], self._reduction_factor, 1))
        assert not self._brackets[1]._rungs  # the hedge: nothing stops its trials before max_t

    def on_trial_add(self, tune_controller, trial) -> None:
        from .schedulers import hedge_bracket

        super().on_trial_add(tune_controller, trial)  # Ray's checks (its random draw is replaced below)
        number = (getattr(trial, "config", None) or {}).get("trial_number")
        bracket = hedge_bracket(self.seed, number, self.share) if number is not None else 0
        self._trial_info[trial.trial_id] = self._brackets[bracket]


class PromotionASHA(KeepsEarlierPasses, ASHAScheduler):
    """Promotion of complete short runs (BOHB-style), as Ray's ASHA with one rung: a trial first trains a complete
    run of ``short`` epochs (reported as iterations 1..short), then, only if that run's final value clears ASHA's
    cut-off at the rung (the top 1/reduction_factor of the short runs recorded before it; the first always
    passes), its full run (iterations short+1..short+full). Ray's own bracket decides; only its rungs are replaced
    by the single rung at ``short`` (Ray would also put rungs inside the full run)."""

    def __init__(self, *, short: int, full: int, passed: dict[int, int] | None = None, **kwargs: Any) -> None:
        super().__init__(grace_period=short, max_t=short + full, brackets=1, **kwargs)
        self.passed = dict(passed or {})
        self.short, self.full = short, full
        self._brackets[0]._rungs = [(short, {})]


def asha_cutoff(recorded: dict[Any, float], reduction_factor: float) -> float | None:
    """Ray's ASHA cut-off at a rung holding ``recorded`` values (None when empty): a value below it is stopped."""
    return _Bracket(1, 1, reduction_factor, 0).cutoff(recorded)
