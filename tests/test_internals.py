"""One test per private Ray Tune / Optuna internal the harness uses (study/internals.py): if an upgrade moves
one, these fail first and say which."""

from __future__ import annotations

import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler

from study.cli import INTERRUPTED
from study.internals import FidelityAwareOptunaSearch, preload_asha, trial_by_number


def space(trial) -> None:
    trial.suggest_float("x", 0.0, 1.0)


@pytest.fixture
def study(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}", direction="maximize")


def searcher(study, tmp_path, **kw):
    return FidelityAwareOptunaSearch(space=space, metric="val_acc", mode="max", study_name="s",
                                     storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}"),
                                     max_epochs=3, **kw)


def test_trial_by_number_reaches_the_live_trial(study):
    study.ask()
    second = study.ask()
    live = trial_by_number(study, second.number)
    live.report(0.5, 1)
    assert study.trials[1].intermediate_values == {1: 0.5} and live.number == 1


def test_searcher_adopts_a_running_trial_under_its_number_and_tells_each_outcome(study, tmp_path):
    orphan = study.ask()
    orphan.suggest_float("x", 0.0, 1.0)
    s = searcher(study, tmp_path, adopt=[orphan.number])
    first = s.suggest("tune-a")
    assert first["trial_number"] == orphan.number and first["x"] == orphan.params["x"]  # re-run, same point
    second = s.suggest("tune-b")
    assert second["trial_number"] == 1
    s.on_trial_result("tune-a", {"val_acc": 10.0, "training_iteration": 1})
    s.on_trial_complete("tune-a", {"val_acc": 30.0, "training_iteration": 3, "train_seconds_total": 12.5,
                                   "swap_rate": 0.25, "val_acc_recal": float("nan")})  # full fidelity
    s.on_trial_complete("tune-b", {"val_acc": 5.0, "training_iteration": 1})  # ASHA stopped it
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states == {0: "COMPLETE", 1: "PRUNED"}
    assert study.trials[0].intermediate_values == {1: 10.0, 3: 30.0}  # the final value is reported too
    assert study.trials[0].user_attrs["tune_trial_id"] == "tune-a"
    attrs = study.trials[0].user_attrs  # what the dashboard shows beside the trial; an absent (NaN) value is left out
    assert attrs["train_seconds"] == 12.5 and attrs["swap_rate_last_epoch"] == 0.25
    assert "val_acc_recalibrated" not in attrs


def test_a_re_run_trial_reporting_an_epoch_its_first_attempt_reported_keeps_the_first_without_a_warning(
        study, tmp_path):
    import warnings

    orphan = study.ask()
    orphan.suggest_float("x", 0.0, 1.0)
    orphan.report(10.0, 1)  # the interrupted attempt's first epoch
    s = searcher(study, tmp_path, adopt=[orphan.number])
    s.suggest("tune-a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.on_trial_result("tune-a", {"val_acc": 10.0, "training_iteration": 1})
        s.on_trial_result("tune-a", {"val_acc": 12.0, "training_iteration": 2})
    assert study.trials[0].intermediate_values == {1: 10.0, 2: 12.0}


def test_trials_stopped_by_an_interruption_stay_running(study, tmp_path):
    s = searcher(study, tmp_path)
    s.suggest("tune-a")
    INTERRUPTED.set()
    try:
        s.on_trial_complete("tune-a", {"val_acc": 5.0, "training_iteration": 1})
    finally:
        INTERRUPTED.clear()
    assert study.trials[0].state.name == "RUNNING"


def test_preload_asha_fills_every_rung_an_earlier_trial_reached():
    scheduler = ASHAScheduler(metric="val_acc", mode="max", time_attr="training_iteration", max_t=9,
                              grace_period=1, reduction_factor=3)
    added = preload_asha(scheduler, {"0": [1.0, 2.0, 3.0], "1": [4.0]})
    rungs = {int(m): recorded for m, recorded in scheduler._brackets[0]._rungs}
    assert rungs[1] == {"earlier-0": 1.0, "earlier-1": 4.0} and rungs[3] == {"earlier-0": 3.0}
    assert added == 3


@pytest.mark.parametrize("top,grace,rf", [(15, 2, 3), (3, 1, 3), (240, 30, 2), (9, 1, 3), (10, 10, 3)])
def test_rung_epochs_are_the_milestones_ray_asha_builds(top, grace, rf):
    from analysis.summaries import rung_epochs

    scheduler = ASHAScheduler(metric="val_acc", mode="max", time_attr="training_iteration", max_t=top,
                              grace_period=grace, reduction_factor=rf)
    milestones = sorted(int(m) for m, _ in scheduler._brackets[0]._rungs)
    assert rung_epochs({"max_epochs": top, "grace_epochs": grace, "reduction_factor": rf}) == \
        tuple(m for m in milestones if m < top)


def test_hedged_asha_and_the_cutoff_rest_on_rays_bracket_internals():
    """HedgedASHA adds a rungless bracket and assigns trials itself; asha_cutoff is Ray's rung cut-off."""
    from types import SimpleNamespace

    import numpy as np

    from study.internals import HedgedASHA, asha_cutoff

    scheduler = HedgedASHA(share=0.5, seed=0, metric="val_acc", mode="max", time_attr="training_iteration",
                           max_t=9, grace_period=1, reduction_factor=3)
    assert [len(b._rungs) for b in scheduler._brackets] == [3, 0]  # rungs 1, 3, 9 (= max_t); none
    trial = SimpleNamespace(trial_id="x", config={})
    scheduler.on_trial_add(None, trial)
    assert scheduler._trial_info["x"] is scheduler._brackets[0]  # no trial number: ASHA's bracket
    assert asha_cutoff({}, 3) is None
    assert asha_cutoff({"a": 1.0, "b": 2.0, "c": 4.0}, 3) == np.nanpercentile([1.0, 2.0, 4.0], 100 * (1 - 1 / 3))


def test_tpe_without_pruned_proposes_what_tpe_proposes_on_the_complete_trials_alone():
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from study.internals import TPEWithoutPruned

    space = {"x": FloatDistribution(0, 1)}

    def proposals(sampler, with_pruned: bool) -> list[float]:
        s = optuna.create_study(direction="maximize", sampler=sampler)
        for i in range(12):  # complete: the best at high x
            s.add_trial(create_trial(params={"x": i / 12}, distributions=space, value=float(i)))
        if with_pruned:  # pruned at low x with high intermediate values: stock TPE ranks them among the good
            for i in range(12):
                s.add_trial(create_trial(params={"x": 0.01 * i}, distributions=space, state=TrialState.PRUNED,
                                         intermediate_values={1: 100.0}))
        return [s.ask(space).params["x"] for _ in range(6)]

    def tpe():
        return optuna.samplers.TPESampler(seed=1, multivariate=True, group=True)

    alone = proposals(tpe(), with_pruned=False)
    assert proposals(TPEWithoutPruned(seed=1, multivariate=True, group=True), with_pruned=True) == alone
    assert proposals(tpe(), with_pruned=True) != alone  # the PRUNED trials do move stock TPE


def test_init_local_ray_rests_on_ray_inits_private_temp_dir():
    """init_local_ray passes ``_temp_dir`` to ray.init (every sweep test starts Ray through it; this pins the name)."""
    import inspect

    import ray

    assert '_temp_dir: Optional[str] = kwargs.pop("_temp_dir", None)' in inspect.getsource(ray.init)
