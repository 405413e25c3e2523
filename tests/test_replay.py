"""Scheduler replay (study/replay.py) and the hedged ASHA (study/schedulers.py) on synthetic learning curves."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from ray.tune.schedulers import TrialScheduler

from study.replay import Candidate, Pool, compare, fidelity_ranks, replay
from study.schedulers import hedge_bracket, make_scheduler

TOP = 9


def synthetic_curves(n: int = 24, inverted: bool = False, seed: int = 0) -> pd.DataFrame:
    """Config c ends at 60 + c (the last config is best). Early epochs rank the configs by their final value, or,
    inverted, in reverse until epoch 7 (swap-heavy schedules that start slow and end well)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n):
        final = 60.0 + c
        for e in range(1, TOP + 1):
            early = (60.0 + (n - 1 - c)) if inverted and e < 7 else final
            rows.append({"fidelity": TOP, "config": c, "epoch": e, "val_acc": early - (TOP - e),
                         "epoch_seconds": 1.0 + rng.random() * 0.1})
        for short in (3,):  # a complete short run ranks like the final value
            for e in range(1, short + 1):
                rows.append({"fidelity": short, "config": c, "epoch": e, "val_acc": final - 5 + e,
                             "epoch_seconds": 1.0})
    return pd.DataFrame(rows)


def test_asha_keeps_the_best_when_early_epochs_rank_well_and_cuts_it_when_they_mislead():
    good, bad = Pool.from_curves(synthetic_curves()), Pool.from_curves(synthetic_curves(inverted=True))
    names = ["fifo", "asha:grace=1,rf=3", "asha:grace=1,rf=3,hedge=0.5", "promote:short=3,rf=3"]
    candidates = [Candidate.parse(s) for s in names]
    ok, misled = compare(candidates, good, orders=20), compare(candidates, bad, orders=20)
    assert ok.loc["fifo", "top1"] == misled.loc["fifo", "top1"] == 1.0
    assert ok.loc["fifo", "trial_epochs_vs_fifo"] == 1.0 and ok.loc["fifo", "wall_vs_fifo"] == pytest.approx(1.0)
    assert ok.loc["asha:grace=1,rf=3", "top1"] == 1.0 and ok.loc["asha:grace=1,rf=3", "trial_epochs_vs_fifo"] < 0.6
    assert misled.loc["asha:grace=1,rf=3", "top1"] < 0.5  # inverted early ranks: ASHA cuts the winner
    assert misled.loc["asha:grace=1,rf=3,hedge=0.5", "top1"] > misled.loc["asha:grace=1,rf=3", "top1"]
    assert misled.loc["promote:short=3,rf=3", "top1"] == 1.0  # short complete runs rank like the final value
    assert (ok["regret"] >= 0).all() and ok.loc["fifo", "regret"] == 0


def test_promotion_spends_short_runs_plus_full_runs_of_the_promoted():
    pool = Pool.from_curves(synthetic_curves(n=12))
    order = list(pool.full.index)  # ascending final value: every short run beats the ones before it
    out = replay(Candidate.parse("promote:short=3,rf=3"), pool, order)
    full = [c for c, e in out.reached.items() if e == TOP]
    assert out.trial_epochs == 12 * 3 + len(full) * TOP
    assert order[0] in full and order[-1] in full  # the first always passes; an improving one clears the cut-off
    backwards = replay(Candidate.parse("promote:short=3,rf=3"), pool, order[::-1])
    assert [c for c, e in backwards.reached.items() if e == TOP] == [order[-1]]  # nothing later clears it


def test_bracket_promotion_keeps_a_fixed_share_whatever_the_order():
    pool = Pool.from_curves(synthetic_curves(n=12))
    order = list(pool.full.index)  # improving proposals: the running cut-off promotes every one of them
    running = replay(Candidate.parse("promote:short=3,rf=3"), pool, order)
    assert sum(e == TOP for e in running.reached.values()) == 12
    for arrival in (order, order[::-1]):
        out = replay(Candidate.parse("promote:short=3,rf=3,bracket=6"), pool, arrival)
        full = sorted(c for c, e in out.reached.items() if e == TOP)
        best_of = [sorted(arrival[i:i + 6], reverse=True)[:2] for i in (0, 6)]  # the top third of each bracket
        assert full == sorted(best_of[0] + best_of[1]) and out.trial_epochs == 12 * 3 + 4 * TOP
    with pytest.raises(ValueError, match="promote only"):
        Candidate.parse("asha:grace=1,rf=3,bracket=8")


def test_bracket_rule_and_size_are_the_sweeps_and_the_replays():
    """One rule decides a bracket in the sweep (internals.BracketPromotionSearch), its check (check_recorded) and
    the replay: the top ceil(n / rf) by short-run value, ties to the earlier trial; sizes give two brackets at
    least."""
    from study.schedulers import bracket_members, bracket_size, bracket_winners

    assert bracket_winners({3: 80.0, 1: 82.0, 2: 80.0, 0: 79.0}, 3) == [1, 2]  # ceil(4/3) = 2; tie 2 vs 3 -> 2
    assert bracket_winners({5: 70.0}, 3) == [5] and bracket_winners({}, 3) == []
    assert bracket_winners(dict(enumerate([1.0, 5.0, 3.0, 4.0, 2.0, 0.0])), 2) == [1, 3, 2]
    assert [bracket_size(32, b) for b in (1, 8, 24, 64, 200)] == [1, 4, 12, 32, 32]
    assert list(bracket_members(2, 32, 70)) == list(range(64, 70))


def test_stopping_replay_trains_every_config_up_to_where_the_scheduler_stops_it():
    pool = Pool.from_curves(synthetic_curves(n=10))
    order = list(np.random.default_rng(1).permutation(pool.full.index))
    out = replay(Candidate.parse("asha:grace=1,rf=3"), pool, order)
    assert set(out.reached) == set(order) and out.trial_epochs == sum(out.reached.values())
    assert set(out.reached.values()) <= {1, 3, TOP}  # stopped only at the rungs (1, 3) or at the end
    fifo = replay(Candidate.parse("fifo"), pool, order, concurrency=2)
    assert set(fifo.reached.values()) == {TOP}
    assert fifo.wall == pytest.approx(pool.seconds.sum() * TOP / 2, rel=0.15)  # two workers share the work


def test_hedge_bracket_is_seeded_by_trial_number_and_its_trials_are_never_stopped():
    assert [hedge_bracket(3, n, 0.3) for n in range(50)] == [hedge_bracket(3, n, 0.3) for n in range(50)]
    assert [hedge_bracket(3, n, 0.3) for n in range(50)] != [hedge_bracket(4, n, 0.3) for n in range(50)]
    assert 0.2 < np.mean([hedge_bracket(0, n, 0.3) for n in range(2000)]) < 0.4
    assert not any(hedge_bracket(0, n, 0.0) for n in range(100))
    settings = {"max_epochs": TOP, "grace_epochs": 1, "reduction_factor": 3, "hedge": 0.5}
    scheduler = make_scheduler("asha", settings, seed=7)
    stops = {0: 0, 1: 0}
    for number in range(40):  # each trial worse than every one before it: ASHA's bracket stops them at epoch 1
        trial = SimpleNamespace(trial_id=f"t{number}", config={"trial_number": number})
        scheduler.on_trial_add(None, trial)
        action = scheduler.on_trial_result(None, trial, {"training_iteration": 1, "val_acc": 100.0 - number})
        stops[hedge_bracket(7, number, 0.5)] += action == TrialScheduler.STOP
    assert stops[1] == 0 and stops[0] > 10


def test_candidate_specs_and_fidelity_ranks():
    assert Candidate.parse("asha:grace=5,rf=2,hedge=0.25").settings(15) == {
        "max_epochs": 15, "grace_epochs": 5, "reduction_factor": 2.0, "hedge": 0.25}
    for bad in ("hyperband", "asha:rf=3", "promote:grace=2", "asha:grace=2,eta=3", "promote:short=3,bracket=-1"):
        with pytest.raises(ValueError):
            Candidate.parse(bad)
    ranks = fidelity_ranks(Pool.from_curves(synthetic_curves(inverted=True))).set_index("measurement")
    assert ranks.loc[f"epoch 1 of {TOP}", "spearman"] == pytest.approx(-1.0)
    assert ranks.loc[f"epoch 8 of {TOP}", "spearman"] == pytest.approx(1.0)
    assert ranks.loc["complete 3-epoch run", "top3 in top third"] == 1.0


def test_promotion_scheduler_is_rays_asha_with_one_rung_at_the_end_of_the_short_run():
    """The scheduler a promoting sweep will run: Ray's bracket decides at iteration E (the short run's final value
    against the cut-off of the short runs before it, as the replay's promotion does) and never inside the full run."""
    from study.internals import asha_cutoff
    from study.replay import _trial

    short, full = 3, 15
    scheduler = make_scheduler("promote", {"short_epochs": short, "max_epochs": full, "grace_epochs": 2,
                                           "reduction_factor": 3}, seed=0)
    assert [milestone for milestone, _ in scheduler._brackets[0]._rungs] == [short]
    rng = np.random.default_rng(4)
    recorded = {}
    for number, value in enumerate(rng.uniform(50, 90, size=30)):
        trial = _trial(f"t{number}", number)
        scheduler.on_trial_add(None, trial)
        bar = asha_cutoff(recorded, 3)
        decision = scheduler.on_trial_result(None, trial, {"training_iteration": short, "val_acc": float(value)})
        recorded[number] = float(value)
        assert decision == (TrialScheduler.CONTINUE if bar is None or value >= bar else TrialScheduler.STOP)
        if decision == TrialScheduler.CONTINUE:  # a promoted trial is never stopped inside its full run
            for it in range(short + 1, short + full):
                assert scheduler.on_trial_result(None, trial, {"training_iteration": it, "val_acc": 1.0}) == \
                    TrialScheduler.CONTINUE
        scheduler.on_trial_complete(None, trial, {"training_iteration": short, "val_acc": float(value)})


@pytest.mark.parametrize("kind", ["promote", "asha"])
def test_a_re_run_trial_is_not_stopped_at_a_rung_its_interrupted_attempt_passed(kind):
    """--resume re-runs a trial an interruption cut short; the scheduler records its rung values as usual but does
    not stop it at a rung the attempt had passed (the uninterrupted run let it through), so it never ends before
    the epochs the study already holds for it. Other trials are decided as before."""
    from study.replay import _trial

    settings = {"short_epochs": 1, "max_epochs": 3, "grace_epochs": 1, "reduction_factor": 3}
    scheduler = make_scheduler(kind, settings, seed=0, passed={7: 2})
    for number in range(3):  # three strong trials fill the first rung
        trial = _trial(f"t{number}", number)
        scheduler.on_trial_add(None, trial)
        scheduler.on_trial_result(None, trial, {"training_iteration": 1, "val_acc": 90.0 + number})
    weak, again = _trial("t6", 6), _trial("t7", 7)
    for trial in (weak, again):
        scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, weak, {"training_iteration": 1, "val_acc": 10.0}) == TrialScheduler.STOP
    assert scheduler.on_trial_result(None, again, {"training_iteration": 1, "val_acc": 10.0}) == \
        TrialScheduler.CONTINUE
    assert any("t7" in recorded for _, recorded in scheduler._brackets[0]._rungs)  # its value still counts
