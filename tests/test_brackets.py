"""The synchronous-bracket searcher's state machine (study/internals.BracketPromotionSearch), driven as Ray Tune
drives a searcher (suggest, on_trial_result, on_trial_complete) over a real in-memory Optuna study, without
training: which Tune trial gets which phase, when a bracket decides, what the study is told, when the searcher
waits (None) and when it is finished; and the same decisions rebuilt from recorded values (a resumed session)."""

from __future__ import annotations

import optuna
import pytest

from study.cli import INTERRUPTED
from study.internals import BracketPromotionSearch

SHORT, FULL = 1, 3
STATE = optuna.trial.TrialState


def space(trial: optuna.trial.Trial) -> None:
    trial.suggest_float("x", 0.0, 1.0)


def make(study_name: str, storage, budget: int, size: int, values=None, rerun=(), proposals=None, pruned=None,
         recorded=None) -> BracketPromotionSearch:
    return BracketPromotionSearch(
        space=space, metric="val_acc", mode="max", seed=0, storage=storage, study_name=study_name,
        sampler=optuna.samplers.RandomSampler(seed=0), max_epochs=SHORT + FULL, short=SHORT, size=size,
        reduction_factor=3, budget=budget, values=dict(values or {}), rerun=list(rerun),
        proposals=budget if proposals is None else proposals,
        recorded_short=(recorded or {}).get, on_pruned=(lambda n, e: pruned.append((n, e))) if pruned is not None
        else None)


def short_result(value: float) -> dict:
    return {"val_acc": value, "epoch": SHORT, "training_iteration": SHORT}


def full(search: BracketPromotionSearch, trial_id: str, value: float) -> None:
    for k in range(1, FULL + 1):
        result = {"val_acc": value - FULL + k, "epoch": SHORT + k, "training_iteration": k}
        if k < FULL:
            search.on_trial_result(trial_id, result)
    search.on_trial_complete(trial_id, result)


@pytest.fixture
def storage():
    return optuna.storages.InMemoryStorage()


def test_a_bracket_promotes_its_top_third_once_its_last_short_run_is_in(storage):
    pruned: list = []
    search = make("b", storage, budget=6, size=3, pruned=pruned)
    study = search._ot_study
    first = {f"s{i}": search.suggest(f"s{i}") for i in range(4)}  # 3 of bracket 0 and 1 of bracket 1
    assert [c["phase"] for c in first.values()] == ["short"] * 4
    assert [c["trial_number"] for c in first.values()] == [0, 1, 2, 3]
    search.on_trial_complete("s1", short_result(80.0))
    search.on_trial_complete("s0", short_result(70.0))
    assert not pruned and all(t.state == STATE.RUNNING for t in study.trials)  # bracket 0 still waits for trial 2
    search.on_trial_complete("s2", None, error=True)  # a failed short run is no candidate
    assert study.trials[2].state == STATE.FAIL
    assert pruned == [(0, SHORT)] and study.trials[0].state == STATE.PRUNED  # ceil(2 / 3) = 1 winner: trial 1
    assert study.trials[0].intermediate_values == {SHORT: 70.0} and study.trials[0].user_attrs["epochs"] == SHORT
    promoted = search.suggest("f1")  # a winner's full run goes out before any new proposal
    assert promoted == {**first["s1"], "phase": "full"}
    full(search, "f1", 90.0)
    assert study.trials[1].state == STATE.COMPLETE and study.trials[1].value == 90.0
    assert sorted(study.trials[1].intermediate_values) == [1, 2, 3, 4]
    rest = {f"s{i}": search.suggest(f"s{i}") for i in (4, 5)}
    assert [c["trial_number"] for c in rest.values()] == [4, 5]
    assert search.suggest("x") is None  # nothing to hand out while bracket 1's short runs may decide it
    for trial_id, value in (("s3", 60.0), ("s4", 65.0), ("s5", 50.0)):
        search.on_trial_complete(trial_id, short_result(value))
    assert search.suggest("f4")["trial_number"] == 4
    assert search.suggest("y") == search.FINISHED  # nothing more to come (Tune still waits for the full run)
    full(search, "f4", 88.0)
    assert [t.state for t in study.trials] == [STATE.PRUNED, STATE.COMPLETE, STATE.FAIL, STATE.PRUNED,
                                               STATE.COMPLETE, STATE.PRUNED]
    assert len(study.trials) == 6  # the budget, never more


def test_an_interrupted_short_run_is_left_running_and_a_failed_one_keeps_its_recorded_value(storage):
    search = make("i", storage, budget=3, size=3, recorded={1: 75.0})
    for i in range(3):
        search.suggest(f"s{i}")
    INTERRUPTED.set()
    try:
        search.on_trial_complete("s0", short_result(70.0))
    finally:
        INTERRUPTED.clear()
    assert search._ot_study.trials[0].state == STATE.RUNNING and 0 not in search.values  # re-run next session
    search.on_trial_complete("s1", None, error=True)  # failed after its short run was recorded: still a candidate
    assert search.values[1] == 75.0 and search._ot_study.trials[1].state == STATE.FAIL
    search.on_trial_complete("s2", short_result(60.0))
    assert search.suggest("x") == search.FINISHED and 2 not in search.decided  # bracket 0 waits for trial 0


def test_a_resumed_session_decides_again_from_the_records(storage):
    """Session 1 asked trials 0-3 and was killed after the short runs of 0-2 (bracket 0 complete, nothing told)
    and during trial 3's; session 2 gets the recorded values: it prunes the loser, queues the winner's full run,
    re-runs trial 3's short run under its number and asks the rest of the budget."""
    study = optuna.create_study(storage=storage, study_name="r", direction="maximize")
    for _ in range(4):
        study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    pruned: list = []
    search = make("r", storage, budget=6, size=3, values={0: 70.0, 1: 80.0, 2: 65.0}, rerun=[3], proposals=2,
                  pruned=pruned)
    assert pruned == [(0, SHORT), (2, SHORT)] and search.queue == [1]
    assert [search.suggest(f"t{i}") for i in range(4)] == [
        {"x": study.trials[1].params["x"], "trial_number": 1, "phase": "full"},
        {"x": study.trials[3].params["x"], "trial_number": 3, "phase": "short"},
        *[{"x": pytest.approx(search._ot_study.trials[n].params["x"]), "trial_number": n, "phase": "short"}
          for n in (4, 5)]]
    assert search.suggest("t9") is None and len(search._ot_study.trials) == 6


def test_a_promoted_trial_whose_full_run_fails_is_fail_and_the_search_finishes(storage):
    search = make("f", storage, budget=3, size=3)
    for i in range(3):
        search.suggest(f"s{i}")
    for i, value in enumerate((70.0, 80.0, 60.0)):
        search.on_trial_complete(f"s{i}", short_result(value))
    assert search.suggest("f1")["phase"] == "full"
    search.on_trial_result("f1", {"val_acc": 50.0, "epoch": SHORT + 1, "training_iteration": 1})
    search.on_trial_complete("f1", None, error=True)
    assert [t.state for t in search._ot_study.trials] == [STATE.PRUNED, STATE.FAIL, STATE.PRUNED]
    assert search._ot_study.trials[1].intermediate_values == {SHORT: 80.0, SHORT + 1: 50.0}
    assert search.suggest("x") == search.FINISHED
