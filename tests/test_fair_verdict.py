"""A fair verdict: methods declare their hyperparameters once (config field, option, search space follow), KD is
tuned with IAKD's budget (kd_tuned), the paper reconstruction is bracketed, the student's BN mode is searched and
ablated, and the report says which confounds its numbers are free of."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from test_analysis import make_sweep

from analysis.load import load_run
from analysis.report import build_report
from analysis.tables import comparisons_vs_best, methods_by_setting, stronger_kd, table1
from iakd_core.methods import METHODS, method_overrides
from iakd_core.presets import preset_config
from study.ablation import ablation_arms, arm_facts
from study.space import SearchSpace, reference_point, to_trial_config


def sample(space: SearchSpace, n: int, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        trial = study.ask()
        space(trial)
        study.tell(trial, 0.0)
    return [t.params for t in study.trials]


def test_the_kd_space_is_kds_declared_hyperparameters_and_its_reference_is_the_literature():
    points = sample(SearchSpace([], method="kd"), 20)
    assert all(set(p) == {"ce_weight", "kd_weight", "kd_temperature"} for p in points)
    assert all(0.05 <= p["kd_weight"] <= 1.0 and 1.0 <= p["kd_temperature"] <= 8.0 for p in points)
    assert reference_point("kd") == {"ce_weight": 0.1, "kd_weight": 0.9, "kd_temperature": 4.0}
    assert to_trial_config(points[0]) == points[0]  # no switch: KD's own weight is never zeroed
    optimizer = sample(SearchSpace([], search_optimizer=True, method="kd"), 3)
    assert all({"lr", "weight_decay"} <= set(p) for p in optimizer)


def test_the_iakd_space_searches_the_students_bn_mode_and_shares_kds_ranges():
    points = sample(SearchSpace([1, 2]), 40)
    assert {p["student_bn"] for p in points} == {"clean", "hybrid"}
    with_kd = [p for p in points if p["use_kd"]]
    assert with_kd and all(0.05 <= p["kd_weight"] <= 1.0 for p in with_kd)
    assert all(to_trial_config(p)["kd_weight"] == 0.0 for p in points if not p["use_kd"])
    assert reference_point("iakd")["student_bn"] == "clean" and reference_point("iakd")["swap_p0"] == 0.5


def best_config(**changes):
    cfg = preset_config("smoke", "iakd")
    cfg.update({"swap_schedule": "theseus", "swap_p0": 0.05, "swap_ramp_k": 2.0, "kd_weight": 0.3,
                "kd_temperature": 6.0, **changes})
    return cfg


def test_the_arms_bracket_the_paper_tune_kd_and_show_the_best_that_swaps_when_the_best_barely_does():
    swapping = best_config(swap_schedule="constant", swap_p0=0.4, units_per_stage=2, seed=7, threads=1)
    tuned = {**preset_config("smoke", "kd"), "ce_weight": 0.2, "kd_weight": 0.6, "kd_temperature": 3.0,
             "teacher": "other", "seed": 3}
    arms = ablation_arms(best_config(), [1, 2], {"kd": tuned}, swapping)
    assert arms["kd_tuned"]["method"] == "kd" and arms["kd_tuned"]["kd_temperature"] == 3.0
    assert "teacher" not in arms["kd_tuned"] and "seed" not in arms["kd_tuned"]  # only what its sweep searched
    assert arms["iakd_best_swapping"]["swap_p0"] == 0.4 and "seed" not in arms["iakd_best_swapping"]
    assert arms["iakd_paper_default"]["student_bn"] == "clean" and arms["iakd_paper_default"]["kd_weight"] == 0
    assert arms["iakd_paper_final_student"]["swap_schedule"] == "step"
    assert arms["iakd_paper_student_ce"]["student_ce_weight"] == 1.0
    assert arms["paper_student_bn_hybrid"]["student_bn"] == "hybrid"
    assert arms["paper_bn_recalibration"]["bn_recalibration_batches"] == 32
    assert arms["student_bn_hybrid"] == {"student_bn": "hybrid"} and "student_bn_clean" not in arms
    assert arm_facts("student_bn_hybrid")[:2] == arm_facts("teacher_bn_batch")[:2] == ("batchnorm", "iakd_best")
    assert arm_facts("paper_bn_recalibration")[:2] == ("paper", "iakd_paper_default")
    assert arm_facts("kd_tuned")[0] == "method"
    # a best that really swaps gets no extra arm
    assert "iakd_best_swapping" not in ablation_arms(best_config(swap_p0=0.5), [1, 2], {}, swapping)


SETTING = {"dataset": "fashion-mnist", "teacher": "resnet26", "student": "resnet14", "epochs": 15}
ARMS = {  # arm: (factor, versus, test-acc offset, val-acc offset)
    "student": ("method", None, 0.0, 0.0), "kd": ("method", None, 1.5, 1.0),
    "kd_tuned": ("method", None, 2.0, 2.0), "iakd_paper_default": ("method", None, 0.5, 0.5),
    "iakd_paper_final_student": ("method", None, 1.0, 1.0), "iakd_best": ("method", None, 2.1, 2.1),
    "iakd_best_swapping": ("method", None, 0.8, 0.8), "no_swap": ("schedule", "iakd_best", 2.0, 2.0),
    "paper_student_bn_hybrid": ("paper", "iakd_paper_default", -5.0, -5.0),
    "student_bn_hybrid": ("batchnorm", "iakd_best", 2.0, 2.0),
}


def make_fair_ablation(folder: Path, sweep: Path, best_p: float = 0.002, seeds=(1000, 1001, 1002, 1003)):
    rng = np.random.default_rng(2)
    rows, epochs = [], []
    for arm, (factor, versus, test, val) in ARMS.items():
        for s in seeds:
            mean_p = {"iakd_best": best_p, "iakd_best_swapping": 0.35, "no_swap": 0.0}.get(arm, 0.5)
            rows.append({"trial_id": f"{arm}-seed{s}", "arm": arm, "factor": factor, "versus": versus,
                         "label": f"label of {arm}", "seed": s, "status": "COMPLETE",
                         "test_acc": 85 + test + rng.normal() * 0.1, "val_acc_last": 85 + val,
                         "method": "kd" if arm.startswith("kd") else "student" if arm == "student" else "iakd",
                         "swap_schedule": "constant", "swap_p0": mean_p, "swap_mean_p": mean_p,
                         "units_per_stage": 1, "kd_weight": 0.3, "kd_temperature": 4.0, "student_ce_weight": 0.0,
                         "student_bn": "hybrid" if "hybrid" in arm else "clean", "epochs": 15})
            epochs.append({"trial_id": f"{arm}-seed{s}", "epoch": 15, "val_acc": 85 + val,
                           "val_acc_recal": 85 + val + (8.0 if "hybrid" in arm else 0.1)})
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "trials.parquet")
    pd.DataFrame(epochs).to_parquet(folder / "epochs.parquet")
    (folder / "manifest.json").write_text(json.dumps({
        "kind": "ablation", "source_sweep": str(sweep), "seeds": list(seeds), "arms": {a: {} for a in ARMS},
        "base_config": SETTING, "teacher": {"arch": "resnet26", "test_acc": 90.0},
        "dataset": {"name": "fashion-mnist", "classes": 10}, "command": "run_ablation.py x", "sweep_budget": 64,
        "tuned_budgets": {"kd": 64},
        "preset": folder.name}))
    return folder


def test_the_report_names_its_confounds_compares_with_the_stronger_kd_and_says_when_the_best_barely_swaps(tmp_path):
    run = load_run(make_fair_ablation(tmp_path / "laptop", make_sweep(tmp_path / "s")))
    assert stronger_kd(run) == "kd_tuned"  # higher mean validation accuracy
    t1 = table1(run).set_index("method")
    assert "kd_tuned" in t1.index and "Δ vs kd_tuned [95% CI]" in t1.columns
    assert t1.loc["iakd_best", "Δ vs kd_tuned [95% CI]"] != "—" and t1.loc["kd", "Δ vs kd_tuned [95% CI]"] == "—"
    paper = comparisons_vs_best(run, "paper")
    assert list(paper["arm"]) == ["iakd_paper_default", "paper_student_bn_hybrid"]
    assert paper.iloc[1]["Δ vs iakd_paper_default [95% CI]"].startswith("-5.")
    text = build_report(run)
    assert "student BatchNorm statistics: clean" in text
    assert "KD tuned by its own sweep of the same budget as the IAKD sweep (64 trials)" in text
    assert "This is the stronger KD baseline" in text
    assert "The search found KD without swapping best" in text and "mean swap probability is 0.002" in text
    assert "iakd_best_swapping" in text and "The paper default is a reconstruction" in text
    assert "label of iakd_paper_final_student" in text
    assert "## The student's BatchNorm statistics" in text
    swaps = build_report(load_run(make_fair_ablation(tmp_path / "swaps", tmp_path / "s", best_p=0.3)))
    assert "KD without swapping" not in swaps


def test_table1_across_two_settings_has_kd_and_kd_tuned_rows(tmp_path):
    sweep = make_sweep(tmp_path / "s")
    runs = {name: load_run(make_fair_ablation(tmp_path / name, sweep)) for name in ("smoke", "smoke-wrn")}
    table = methods_by_setting(runs).set_index("method")
    assert {"kd", "kd_tuned", "iakd_paper_default", "iakd_best"} <= set(table.index)
    assert all(table.loc["kd_tuned"] != "—")


def test_a_new_method_with_one_declared_parameter_gets_a_config_field_an_option_and_a_search_dimension(tmp_path):
    """Register a method in a copy of the package's methods.py only: nothing else is edited."""
    import iakd_core

    copy = tmp_path / "iakd_core"
    shutil.copytree(Path(iakd_core.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    source = copy / "methods.py"
    source.write_text(source.read_text() + '''

@register("smooth", ce_weight=1.0, smoothing=0.1)
class LabelSmoothing(Method):
    """CE with label smoothing (a toy method for the registry test)."""

    hyperparameters = {"smoothing": Hyperparameter("label smoothing of the CE term", lo=0, hi=1, default=0.0,
                                                   search=(0.0, 0.3))}
''')
    check = '''
import argparse, optuna
import iakd_core
from iakd_core.config import ConfigError, TrialConfig
from iakd_core.cli import add_config_options
from iakd_core.methods import method_overrides
from study.space import SearchSpace, reference_point
assert iakd_core.__file__.startswith(COPY), iakd_core.__file__
cfg = TrialConfig.from_dict(method_overrides("smooth"))
assert cfg.method == "smooth" and cfg.smoothing == 0.1
try:
    TrialConfig.from_dict({"smoothing": 2})
    raise SystemExit("accepted smoothing=2")
except ConfigError:
    pass
parser = argparse.ArgumentParser()
add_config_options(parser)
assert parser.parse_args(["--smoothing", "0.2"]).smoothing == "0.2"
study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
trial = study.ask()
SearchSpace([], method="smooth")(trial)
assert set(trial.params) == {"smoothing"} and 0 <= trial.params["smoothing"] <= 0.3, trial.params
assert reference_point("smooth") == {"smoothing": 0.1}
print("ok")
'''.replace("COPY", repr(str(copy)))
    import os

    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_literature_overrides_switch_other_terms_off(method):
    overrides = method_overrides(method)
    if method == "iakd":  # the paper reconstruction
        assert overrides["swap_p0"] == 0.5 and overrides["student_bn"] == "clean" and overrides["kd_weight"] == 0.0
    else:
        assert overrides["bn_recalibration_batches"] == 0 and overrides["feature_term"] == "none"
        assert overrides["student_ce_weight"] == 0.0


def test_runs_made_before_student_bn_are_resumed_and_ablated_with_the_statistics_they_had(tmp_path):
    from study.runner import read_manifest, with_added_keys

    for recorded, expected in (({"method": "iakd"}, "hybrid"), ({"method": "iakd", "student_bn": "clean"}, "clean")):
        (tmp_path / "manifest.json").write_text(json.dumps({"kind": "sweep", "base_config": recorded}))
        assert read_manifest(tmp_path, "sweep")["base_config"]["student_bn"] == expected
    assert with_added_keys({"swap_p0": 0.3}) == {"student_bn": "hybrid", "swap_p0": 0.3}


def test_a_best_with_hybrid_statistics_says_whether_clean_statistics_change_anything(tmp_path):
    folder = make_fair_ablation(tmp_path / "laptop", make_sweep(tmp_path / "s"))
    trials = pd.read_parquet(folder / "trials.parquet")
    trials.loc[trials["arm"] == "iakd_best", "student_bn"] = "hybrid"  # the search picked hybrid statistics
    clean = trials[trials["arm"] == "iakd_best"].assign(arm="student_bn_clean", factor="batchnorm",
                                                         versus="iakd_best", student_bn="clean")
    clean["trial_id"] = clean["trial_id"].str.replace("iakd_best", "student_bn_clean")
    pd.concat([trials, clean]).to_parquet(folder / "trials.parquet")
    text = build_report(load_run(folder))
    assert "**hybrid** (student_bn=hybrid)" in text and "identical test accuracy on all 4 seeds" in text
    clean["test_acc"] += 0.3  # clean statistics that do change the result
    pd.concat([trials, clean]).to_parquet(folder / "trials.parquet")
    text = build_report(load_run(folder))
    assert "identical test accuracy" not in text and "the student_bn_clean arm (Table 5) shows" in text
