"""analysis/ on hand-built run folders (no training): statistics, tables, figures, report."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.load import load_run
from analysis.plots import pareto_front, plot_run
from analysis.report import build_report, write_report
from analysis.stats import holm, mean_ci, paired_comparison
from analysis.tables import comparisons_vs_best, table1


def test_paired_comparison_matches_direct_scipy_calls():
    a, b = np.array([71.2, 70.1, 72.5, 70.9]), np.array([70.0, 69.8, 71.0, 70.5])
    c = paired_comparison(a, b)
    d = a - b
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert c["delta"] == pytest.approx(d.mean())
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((lo, hi))
    assert c["p_ttest"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert c["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert mean_ci([1.0, 2.0, 3.0])[0] == 2.0
    # no spread: identical arms up to float noise are p = 1 (not "significant" on the noise's sign), a constant
    # non-zero shift p = 0
    assert paired_comparison([1 + 1e-9, 2 - 1e-9], [1, 2])["p_ttest"] == 1.0
    assert paired_comparison([1.5, 2.5, 3.5], [1, 2, 3])["p_ttest"] == 0.0


def test_holm_orders_and_adjusts_like_the_textbook():
    p = [0.01, 0.04, 0.03, float("nan")]
    adj = holm(p)
    # sorted 0.01, 0.03, 0.04 -> 0.03, 0.06, 0.06 (monotone), NaN stays NaN
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adj[3])


def make_sweep(folder, n=12, seed=0, objective="acc"):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        status = ["COMPLETE", "PRUNED", "COMPLETE", "ERROR"][i % 4]
        sched = ["constant", "linear", "cosine"][i % 3]
        rows.append({"trial_id": f"{i:08x}", "trial_number": i + 1, "status": status,
                     "reason": "boom" if status == "ERROR" else None, "epochs": 8 if status == "COMPLETE" else 2,
                     "val_acc_last": 70 + rng.normal() * 3, "val_acc_best": 72.0, "train_seconds": 50 + i,
                     "eval_seconds": 5.0, "images_per_second": 900.0, "swap_schedule": sched,
                     "swap_p0": rng.uniform(), "swap_p1": rng.uniform() if sched != "constant" else None,
                     "swap_mean_p": rng.uniform(), "swap_profile": "uniform", "units_per_stage": 1 + i % 2,
                     "swap_mode": "bernoulli", "kd_weight": 0.0, "kd_temperature": 4.0, "student_ce_weight": 0.0,
                     "method": "iakd"})
    trials = pd.DataFrame(rows)
    epochs = pd.DataFrame([{"trial_id": r["trial_id"], "epoch": e, "val_acc": 60 + e,
                            "timestamp": 1000 + 10 * r["trial_number"] + e} for r in rows for e in (1, 2)])
    sched = pd.DataFrame([{"trial_id": r["trial_id"], "t": t / 10, "p": 0.5} for r in rows for t in range(11)])
    folder.mkdir(parents=True)
    trials.to_parquet(folder / "trials.parquet")
    epochs.to_parquet(folder / "epochs.parquet")
    sched.to_parquet(folder / "schedules.parquet")
    (folder / "manifest.json").write_text(json.dumps({
        "kind": "sweep", "budget": n, "study_name": "x", "wall_seconds": 600,
        "base_config": {"dataset": "fashion-mnist", "teacher": "resnet26", "student": "resnet14", "epochs": 8},
        "teacher": {"arch": "resnet26", "val_acc": 82.0, "test_acc": 81.0}, "command": "run_sweep.py --budget 12",
        "args": {"sampler": "tpe", "scheduler": "asha", "seed": 0, "objective": objective}}))
    return folder


def make_ablation(folder, sweep, deltas, seeds=(1000, 1001, 1002), teacher_test=80.0, noise=0.2):
    rows = []
    rng = np.random.default_rng(1)
    factor = {"student": "method", "kd": "method", "fitnet": "method", "at": "method", "iakd_best": "method",
              "iakd_paper_default": "method", "iakd_best_plus_kd": "method", "no_swap": "schedule",
              "granularity_2": "granularity", "minus_kd": "loss"}
    for arm, delta in deltas.items():
        for s in seeds:
            rows.append({"trial_id": f"{arm}{s}", "arm": arm, "factor": factor[arm], "seed": s, "status": "COMPLETE",
                         "test_acc": 70 + delta + rng.normal() * noise, "swap_schedule": "linear", "swap_p0": 0.8,
                         "swap_p1": 0.2, "swap_mean_p": 0.5, "units_per_stage": 1, "kd_weight": 0.5,
                         "kd_temperature": 4.0, "student_ce_weight": 0.0, "epochs": 8})
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "trials.parquet")
    (folder / "manifest.json").write_text(json.dumps({
        "kind": "ablation", "source_sweep": str(sweep), "seeds": list(seeds), "arms": {a: {} for a in deltas},
        "base_config": {"dataset": "cifar100", "teacher": "resnet56", "student": "resnet20", "epochs": 240},
        "teacher": {"arch": "resnet56", "test_acc": teacher_test}, "dataset": {"name": "cifar100", "classes": 10},
        "command": "run_ablation.py x"}))
    return folder


ARMS = {"student": 0.0, "kd": 1.5, "fitnet": 0.5, "at": 0.7, "iakd_paper_default": 2.0, "iakd_best": 3.0,
        "no_swap": 1.0, "granularity_2": 2.5, "minus_kd": 2.0}


def test_table1_shape_rounding_and_holm(tmp_path):
    sweep = make_sweep(tmp_path / "s")
    run = load_run(make_ablation(tmp_path / "a", sweep, ARMS))
    t1 = table1(run)
    # the teacher's own row first (one network: no spread, no test), then every method arm in the run's order
    assert list(t1["method"]) == ["teacher (resnet56)", "student", "kd", "fitnet", "at", "iakd_paper_default",
                                  "iakd_best"]
    assert t1.loc[0, "test acc (%)"] == "80.00 (n=1)" and t1.loc[0, "p_holm vs kd"] == "—"
    assert t1.loc[1, "Δ vs student [95% CI]"] == "—"
    assert t1.set_index("method").loc["fitnet", "p_holm vs kd"] != "—"
    best = t1.set_index("method").loc["iakd_best"]
    assert best["Δ vs student [95% CI]"].startswith("+3.0") or best["Δ vs student [95% CI]"].startswith("+2.9")
    assert best["test acc (%)"].endswith("(n=3)") and "±" in best["test acc (%)"]
    assert best["p_holm vs kd"] != "—"


def test_holm_family_holds_each_test_once_so_a_modest_positive_control_is_not_penalised(tmp_path):
    """KD - student is the positive control; student - KD is the same t-test and must not be counted again (that
    enlarged the family by one and could fail a control that Holm over the distinct tests passes)."""
    from statsmodels.stats.multitest import multipletests

    from analysis.sensitivity import assess
    from analysis.tables import method_comparisons

    student = np.array([80.0, 80.5, 79.5, 80.2, 79.8])
    values = {"student": student, "kd": student + [0.9, 0.1, 0.6, 1.2, 0.2],
              "fitnet": student + [3.0, 3.1, 2.9, 3.05, 2.95]}
    folder = tmp_path / "a"
    folder.mkdir()
    pd.DataFrame([{"trial_id": f"{arm}{s}", "arm": arm, "factor": "method", "seed": s, "status": "COMPLETE",
                   "test_acc": float(acc)} for arm, accs in values.items() for s, acc in enumerate(accs)]
                 ).to_parquet(folder / "trials.parquet")
    (folder / "manifest.json").write_text(json.dumps({
        "kind": "ablation", "seeds": list(range(5)), "arms": {a: {} for a in values},
        "base_config": {"dataset": "fashion-mnist", "teacher": "resnet26", "student": "resnet14", "epochs": 8}}))
    run = load_run(folder)
    family = method_comparisons(run)
    pairs = list(zip(family["arm"], family["reference"], strict=True))
    assert len({frozenset(pair) for pair in pairs}) == len(pairs) == 3
    raw = [stats.ttest_rel(values[a], values[r]).pvalue for a, r in pairs]
    expected = multipletests(raw, method="holm")[1]  # Holm over the distinct tests, by statsmodels
    assert np.allclose(family["p_holm"], expected, rtol=1e-12, atol=0)
    control = assess(run, family)
    assert control.control["p_holm"] < 0.05 and control.control_passes  # 0.089 when the mirror was counted too
    t1 = table1(run).set_index("method")
    assert t1.loc["student", "Δ vs kd [95% CI]"] == "—" and t1.loc["kd", "Δ vs student [95% CI]"].startswith("+0.60")


def test_ablation_tables_compare_against_the_best(tmp_path):
    run = load_run(make_ablation(tmp_path / "a", make_sweep(tmp_path / "s"), ARMS))
    sched = comparisons_vs_best(run, "schedule")
    assert list(sched["arm"]) == ["iakd_best", "no_swap"]
    assert sched.loc[1, "Δ vs best [95% CI]"].startswith("-2.")
    assert len(comparisons_vs_best(run, "granularity")) == 2 and len(comparisons_vs_best(run, "loss")) == 2


def test_report_has_every_section_and_an_honest_conclusion(tmp_path):
    sweep = make_sweep(tmp_path / "s")
    run = load_run(make_ablation(tmp_path / "a", sweep, ARMS))
    text = build_report(run)
    for section in ("## Conclusion", "## Table 1", "Published anchor numbers", "## Table 2", "## Table 3",
                    "## Table 4", "## Sweep summary", "## Environment and how to regenerate"):
        assert section in text, section
    assert "| 72.34" in text or "72.34" in text  # CIFAR-100 resnet56 -> resnet20 anchors beside ours
    assert "significantly better" in text  # +3 points with tiny noise over 3 seeds
    assert "Search: tpe sampler, asha scheduler, seed 0, objective val accuracy (max)." in text
    flat = load_run(make_ablation(tmp_path / "b", sweep, {**ARMS, "iakd_best": 1.5}))
    assert "not significantly different" in build_report(flat)  # same mean as KD


def test_report_says_how_a_promoting_sweep_decided():
    from analysis.report import scheduler_words

    settings = {"short_epochs": 3, "max_epochs": 15, "reduction_factor": 3, "bracket": 32}
    assert scheduler_words("promote", settings) == ("promote scheduler (complete 3-epoch runs, the top 1/3 of each "
                                                    "bracket of 32 trials trained to 15 epochs)")
    assert "Ray's running cut-off (1/3)" in scheduler_words("promote", {**settings, "bracket": 0})
    assert scheduler_words("asha", {"grace_epochs": 2}) == "asha scheduler"


def test_figures_render_with_agg_and_report_files_are_written(tmp_path):
    sweep = load_run(make_sweep(tmp_path / "s", objective="acc+cost"))
    paths = plot_run(sweep)
    names = {p.stem for p in paths}
    assert {"best_so_far", "schedules_top", "accuracy_vs_swap", "parallel_coordinates", "pareto"} <= names
    assert all(p.stat().st_size > 1000 for p in paths)
    before = {p: p.read_bytes() for p in paths}
    plot_run(sweep)  # regenerating from unchanged data changes no byte
    assert all(p.read_bytes() == data for p, data in before.items())
    single = load_run(make_sweep(tmp_path / "s1"))
    assert "pareto" not in {p.stem for p in plot_run(single)}  # one objective: no trade-off figure
    run = load_run(make_ablation(tmp_path / "a", tmp_path / "s", ARMS))
    md, html = write_report(run)
    assert (tmp_path / "a" / "figures" / "ablation_bars.svg").exists()
    assert "<table>" in html.read_text() and "ablation_bars.png" in md.read_text()


def test_report_folder_copied_alone_shows_every_figure_with_a_caption(tmp_path):
    import re
    import shutil

    make_sweep(tmp_path / "s")
    write_report(load_run(make_ablation(tmp_path / "a", tmp_path / "s", ARMS)))
    alone = tmp_path / "mailed" / "a"
    shutil.copytree(tmp_path / "a", alone)  # without the sweep folder beside it
    for name in ("report.md", "report.html"):
        text = (alone / name).read_text()
        links = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text) + re.findall(r'<img[^>]+src="([^"]+)"', text)
        assert any("sweep/best_so_far.png" in link for link in links) and any("ablation_bars" in x for x in links)
        for link in links:
            assert ".." not in link and (alone / link).is_file(), link
    md = (alone / "report.md").read_text()
    assert md.count("*Figure: ") == len(re.findall(r'!\[', md))  # every image has its caption


def test_pareto_front_keeps_only_undominated_points():
    cost = np.array([1.0, 2.0, 3.0, 2.5])
    acc = np.array([50.0, 60.0, 55.0, 70.0])
    assert sorted(pareto_front(cost, acc).tolist()) == [0, 1, 3]


def test_importance_uses_only_complete_full_fidelity_trials(tmp_path):
    import optuna

    from analysis.plots import importance, param_importances

    folder = make_sweep(tmp_path / "s")
    storage = f"sqlite:///{folder / 'optuna.db'}"
    study = optuna.create_study(study_name="x", storage=storage, direction="maximize")
    dist = {"a": optuna.distributions.FloatDistribution(0, 1), "b": optuna.distributions.FloatDistribution(0, 1)}
    rng = np.random.default_rng(0)
    for i in range(12):  # a drives COMPLETE values; c is conditional (half of them have it)
        a, b = rng.uniform(), rng.uniform()
        params, dists = ({"a": a, "b": b, "c": 0.5}, {**dist, "c": optuna.distributions.FloatDistribution(0, 1)}) \
            if i % 2 else ({"a": a, "b": b}, dist)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=10 * a))
    for _ in range(30):  # PRUNED trials where b would look decisive if they were (wrongly) counted
        a, b = rng.uniform(), rng.uniform()
        study.add_trial(optuna.trial.create_trial(params={"a": a, "b": b}, distributions=dist, value=None,
                                                  state=optuna.trial.TrialState.PRUNED,
                                                  intermediate_values={1: 100 * b}))
    found = param_importances(load_run(folder))
    imp = found.values
    assert imp["a"] > 0.8 > imp["b"] and not found.not_assessed  # b decides PRUNED values only: not counted
    assert found.having == {"a": 12, "b": 12, "c": 6} and found.trials == 12
    assert "c" in imp and imp["c"] < 0.1  # conditional, assessed over the trials that have it (constant: no effect)
    paths = importance(load_run(folder), tmp_path / "fig")
    assert paths and paths[0].exists()


def test_importance_order_is_the_same_in_every_process():
    """Tied importances (the committed laptop sweep has three at 0.0) come in one order whatever Python's string
    hashing, so a re-rendered figure is the committed one."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = ("import json; from analysis.load import load_run; from analysis.plots import param_importances; "
            "print(json.dumps(list(param_importances(load_run('results/reference/laptop-sweep')).values.items())))")
    orders = []
    for seed in ("0", "1", "2"):  # (before the fix these three gave three orders of the tied parameters)
        proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        assert proc.returncode == 0, proc.stderr[-2000:]
        orders.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    values = [v for _, v in orders[0]]
    assert len(values) > len(set(values))  # the run has ties, so the order is tested
    assert orders[0] == orders[1] == orders[2]


def test_importance_in_a_two_objective_study_is_for_accuracy(tmp_path):
    import optuna

    from analysis.plots import param_importances

    folder = make_sweep(tmp_path / "s")
    study = optuna.create_study(study_name="x", storage=f"sqlite:///{folder / 'optuna.db'}",
                                directions=["maximize", "minimize"])
    dist = {"a": optuna.distributions.FloatDistribution(0, 1), "b": optuna.distributions.FloatDistribution(0, 1)}
    rng = np.random.default_rng(1)
    for _ in range(16):  # accuracy follows a, cost follows b
        a, b = rng.uniform(), rng.uniform()
        study.add_trial(optuna.trial.create_trial(params={"a": a, "b": b}, distributions=dist,
                                                  values=[10 * a, 100 * b]))
    imp = param_importances(load_run(folder)).values
    assert imp["a"] > 0.8 > imp["b"]


def test_report_of_a_two_objective_sweep_names_both_objectives(tmp_path):
    text = build_report(load_run(make_sweep(tmp_path / "s", objective="acc+cost")))
    assert "objective val accuracy (max) and training seconds (min), two-objective" in text


def test_sensitivity_numbers_match_direct_statsmodels_and_scipy_calls(tmp_path):
    from statsmodels.stats.power import TTestPower

    from analysis.sensitivity import assess
    from analysis.stats import minimum_detectable_difference

    seeds = tuple(range(1000, 1005))
    run = load_run(make_ablation(tmp_path / "a", make_sweep(tmp_path / "s"), ARMS, seeds=seeds))
    s = assess(run)
    wide = run.trials.pivot_table(index="seed", columns="arm", values="test_acc")
    d = (wide["kd"] - wide["student"]).to_numpy()
    assert s.control["delta"] == pytest.approx(d.mean()) and s.control["n"] == 5
    assert s.control["p_ttest"] == pytest.approx(stats.ttest_rel(wide["kd"], wide["student"]).pvalue)
    row = s.detectable.set_index("arm").loc["kd"]
    effect = TTestPower().solve_power(nobs=5, alpha=0.05, power=0.8, alternative="two-sided")
    assert row["mde"] == pytest.approx(effect * d.std(ddof=1))
    lo, hi = stats.t.interval(0.95, 4, loc=d.mean(), scale=stats.sem(d))
    assert row["ci_halfwidth"] == pytest.approx((hi - lo) / 2)
    assert math.isnan(minimum_detectable_difference(float("nan"), 5))
    assert math.isnan(minimum_detectable_difference(1.0, 1))  # one seed: nothing is detectable
    assert s.control_passes and s.warnings == []  # +1.5 points with 0.2 noise, teacher 80 % > student 70 %
    text = build_report(run)
    assert "## Can this setting detect an effect?" in text and "**passes**" in text and "Warning" not in text


@pytest.mark.parametrize("change,warning", [
    ({"deltas": {**ARMS, "kd": 0.0}}, "the positive control failed"),
    ({"teacher_test": 65.0}, "the teacher (65.00 % test) is not better than the student"),
    ({"deltas": {**ARMS, "iakd_paper_default": -55.0}}, "within 2x chance accuracy (10 %)"),
])
def test_sensitivity_warnings_are_repeated_before_any_significance_wording(tmp_path, change, warning):
    from analysis.sensitivity import assess

    deltas = change.pop("deltas", ARMS)
    run = load_run(make_ablation(tmp_path / "a", make_sweep(tmp_path / "s"), deltas, **change))
    s = assess(run)
    assert any(warning in w for w in s.warnings), s.warnings
    text = build_report(run)
    conclusion = text.split("## Conclusion", 1)[1].split("## Table 1", 1)[0]
    first_warning = conclusion.index("**Warning**")
    assert warning in conclusion
    if "significantly better" in conclusion:
        assert first_warning < conclusion.index("significantly better")


def test_conclusion_quotes_the_holm_p_of_table_1(tmp_path):
    from analysis.tables import method_comparisons

    noisy = {**ARMS, "iakd_best": 1.0}  # p-values well above 0.001, so every one is printed with 3 decimals
    run = load_run(make_ablation(tmp_path / "a", make_sweep(tmp_path / "s"), noisy, noise=0.8))
    rows = method_comparisons(run).set_index(["arm", "reference"])
    best = table1(run).set_index("method").loc["iakd_best"]
    text = build_report(run)
    conclusion = text.split("## Conclusion", 1)[1].split("## Table 1", 1)[0]
    for ref in ("student", "kd"):
        p = rows.loc[("iakd_best", ref), "p_holm"]
        assert 0.001 <= p and best[f"p_holm vs {ref}"] == f"{p:.3f}"
        assert f"vs {'KD (literature values)' if ref == 'kd' else 'the student trained alone'}" in conclusion
        assert f"Holm-adjusted p = {p:.3f}" in conclusion


def test_report_of_a_one_seed_ablation_renders_without_intervals(tmp_path):
    run = load_run(make_ablation(tmp_path / "a", make_sweep(tmp_path / "s"), ARMS, seeds=(1000,)))
    md, _ = write_report(run)
    assert (tmp_path / "a" / "figures" / "ablation_bars.png").exists()
    assert "cannot be tested (fewer than 2 paired seeds)" in md.read_text()


def test_one_diverged_seed_is_named_in_the_warnings(tmp_path):
    from analysis.sensitivity import assess

    folder = make_ablation(tmp_path / "a", make_sweep(tmp_path / "s"), ARMS)
    trials = pd.read_parquet(folder / "trials.parquet")
    trials.loc[(trials["arm"] == "iakd_best") & (trials["seed"] == 1001), "test_acc"] = 10.0  # collapsed to chance
    trials.to_parquet(folder / "trials.parquet")
    s = assess(load_run(folder))
    assert any("iakd_best seed 1001 (10.0 %) ended within 2x chance" in w for w in s.warnings), s.warnings
    assert not any(w.startswith("iakd_best (") for w in s.warnings)  # the arm's mean is not at chance


def add_compatibility(folder, trial_ids, units=3, epochs=(2, 6, 8)):
    """Epochs rows with the teacher-unit compatibility diagnostic at ``epochs`` (NaN elsewhere)."""
    rows = []
    for k, tid in enumerate(trial_ids):
        for e in range(1, max(epochs) + 1):
            row = {"trial_id": tid, "epoch": e, "val_acc": 60.0 + e}
            if e in epochs:
                row.update(compat_student=60.0 + e + k, compat_teacher=90.0,
                           **{f"compat_u{i}": 20.0 + 10 * i + e + k for i in range(units)})
            rows.append(row)
    pd.DataFrame(rows).to_parquet(folder / "epochs.parquet")


def test_compatibility_table_figure_and_report_summary(tmp_path):
    from analysis.tables import compatibility_table

    folder = make_ablation(tmp_path / "a", make_sweep(tmp_path / "s"), ARMS)
    # kd rows are not shown; the paper default's one seed is, as its own run
    add_compatibility(folder, ["iakd_best1000", "iakd_best1001", "kd1000", "iakd_paper_default1000"])
    run = load_run(folder)
    table = compatibility_table(run)
    assert list(table["run"]) == ["iakd_best"] * 3 + ["iakd_paper_default"] * 3
    assert list(table["epoch"]) == [2, 6, 8] * 2 and list(table["n"]) == [2, 2, 2, 1, 1, 1]
    assert list(table.columns) == ["run", "epoch", "n", "student alone", "teacher alone", "unit 0 swapped in",
                                   "unit 1 swapped in", "unit 2 swapped in"]
    assert table.loc[2, "unit 2 swapped in"] == pytest.approx(20 + 20 + 8 + 0.5)  # mean over the two seeds
    assert table.loc[5, "unit 2 swapped in"] == pytest.approx(20 + 20 + 8 + 3)  # the 4th trial listed: k = 3
    assert (folder / "figures").exists() is False
    assert any(p.name == "compatibility.png" for p in plot_run(run))
    text = build_report(run)
    assert "## Teacher-unit compatibility" in text
    assert "- iakd_best: at epoch 8, 28.5–48.5 % (best: unit 2 swapped in, worst: unit 0 swapped in)" in text
    assert "- iakd_paper_default: at epoch 8" in text
    assert "*Figure: Teacher-unit compatibility: validation accuracy" in text  # the figure's caption
    bare = load_run(make_ablation(tmp_path / "b", tmp_path / "s", ARMS))  # no diagnostics recorded: no section
    assert "Teacher-unit compatibility" not in build_report(bare)


def test_study_report_table1_is_methods_by_settings_with_the_best_of_each_marked(tmp_path):
    from analysis.report import main as report_main
    from analysis.tables import methods_by_setting

    sweep = make_sweep(tmp_path / "s")
    arms = {**ARMS, "iakd_best_plus_kd": 2.5}
    runs = {}
    second_arms = {a: d for a, d in {**arms, "kd": 4.0, "iakd_best": 1.0}.items() if a != "iakd_best_plus_kd"}
    for name, deltas in (("first", arms), ("second", second_arms)):  # the second's best uses KD: no plus-KD arm
        folder = make_ablation(tmp_path / name, sweep, deltas)
        manifest = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**manifest, "preset": f"setting-{name}"}))
        add_compatibility(folder, ["iakd_best1000", "iakd_best1001"])
        runs[f"setting-{name}"] = load_run(folder)
    t = methods_by_setting(runs)
    assert list(t["method"]) == ["teacher", "student", "kd", "fitnet", "at", "iakd_paper_default", "iakd_best",
                                 "iakd_best_plus_kd"]
    # runs that record no arm labels (made before labels existed) get no "what" column
    assert list(t.columns) == ["method", "setting-first (resnet56 → resnet20)", "setting-second (resnet56 → resnet20)"]
    first, second = t.columns[1], t.columns[2]
    assert t.loc[0, first] == "80.00 (n=1)"
    bold = {c: list(t.loc[t[c].str.startswith("**"), "method"]) for c in (first, second)}
    assert bold == {first: ["iakd_best"], second: ["kd"]}
    assert t.loc[1:, first].str.contains(r"\(n=3\)").all() and t.loc[1:6, second].str.contains(r"\(n=3\)").all()
    assert t.loc[7, second] == "= iakd_best (it uses KD)"

    out = tmp_path / "study"
    assert report_main([str(tmp_path / "first"), str(tmp_path / "second"), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    for section in ("## Table 1 — methods × settings", "### Table 1 — differences", "## Setting setting-first",
                    "## Setting setting-second", "### Can this setting detect an effect?", "### Table 2",
                    "### Teacher-unit compatibility", "### Sweep summary", "## Environment and how to regenerate"):
        assert section in text, section
    diffs = text.split("### Table 1 — differences")[1].split("## Setting")[0]
    assert diffs.count("| setting-first") == 8 and diffs.count("| setting-second") == 7  # teacher + methods
    import re

    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all((out / link).exists() for link in links)  # every image inside the study folder
    assert any(link.startswith("figures/setting-second/sweep/") for link in links)
    check_html_structure(out / "report.html")
    assert report_main([str(tmp_path / "first"), str(tmp_path / "s")]) == 2  # a sweep is not a setting's ablation


def check_html_structure(html_path):
    """What a reader of the HTML report relies on: a table of contents whose every link lands on a heading,
    unique anchors, every image inside the folder, no 'nan' in any table, each caption printed once."""
    from html.parser import HTMLParser

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.ids, self.hrefs, self.images, self.cells, self.in_cell = [], [], [], [], False
            self.paragraphs, self.text = [], []
            self.depth = self.deepest = 0  # of nested lists

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if "id" in a:
                self.ids.append(a["id"])
            if tag == "a" and a.get("href", "").startswith("#"):
                self.hrefs.append(a["href"][1:])
            if tag == "img":
                self.images.append(a["src"])
            self.in_cell = tag in ("td", "th") or self.in_cell
            if tag == "p":
                self.text = []
            if tag == "ul":
                self.depth += 1
                self.deepest = max(self.deepest, self.depth)

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.in_cell = False
            if tag == "p":
                self.paragraphs.append("".join(self.text))
            if tag == "ul":
                self.depth -= 1

        def handle_data(self, data):
            if self.in_cell:
                self.cells.append(data.strip())
            self.text.append(data)

    c = Collect()
    c.feed(html_path.read_text())
    assert len(c.hrefs) >= 5 and set(c.hrefs) <= set(c.ids), set(c.hrefs) - set(c.ids)  # every TOC link lands
    assert len(c.ids) == len(set(c.ids))
    assert c.images and all((html_path.parent / src).exists() for src in c.images)
    assert "nan" not in [cell.lower() for cell in c.cells]
    captions = [p for p in c.paragraphs if p.startswith("Figure: ") and "as described above" not in p]
    assert len(captions) == len(set(captions)) and captions
    assert c.deepest >= 2  # sub-lists render as sub-lists (the TOC's sections, the conclusion's confounds)
    html = html_path.read_text()
    assert "free of:" not in html or re.search(r"free of:\s*<ul>", html), "a nested list rendered flat"


def test_conclusion_names_an_ablation_arm_that_beats_the_best(tmp_path):
    from analysis.report import build_report

    sweep = make_sweep(tmp_path / "s")
    better = make_ablation(tmp_path / "better", sweep, {**ARMS, "minus_kd": 4.0}, noise=0.1)
    conclusion = build_report(load_run(better)).split("## Conclusion")[1].split("\n## ")[0]
    assert "An ablation arm beats iakd_best on test**: minus_kd" in conclusion and "Table 4)" in conclusion
    # its Holm family is every ablation comparison (no_swap, granularity_2, minus_kd), not its own table's one
    assert "across all 3 ablation comparisons" in conclusion
    plain = make_ablation(tmp_path / "plain", sweep, ARMS, noise=0.1)  # minus_kd below the best: nothing said
    assert "An ablation arm beats" not in build_report(load_run(plain))


def test_a_wide_non_significant_comparison_is_inconclusive_not_no_difference(tmp_path):
    from analysis.report import build_report
    from iakd_core.presets import CI_HALFWIDTH

    sweep = make_sweep(tmp_path / "s")

    def best_vs_student(noise: float) -> str:
        run = load_run(make_ablation(tmp_path / f"n{noise}", sweep, {**ARMS, "iakd_best": 0.0}, noise=noise))
        conclusion = build_report(run).split("## Conclusion")[1].split("\n## ")[0]
        return next(line for line in conclusion.splitlines() if "vs the student trained alone" in line)

    wide, narrow = best_vs_student(3.0), best_vs_student(0.05)
    assert "not significantly different" in wide and "inconclusive" in wide
    assert f"wider than the ±{CI_HALFWIDTH:g}" in wide
    assert "not significantly different" in narrow and "inconclusive" not in narrow


def test_provenance_is_portable_and_warns_about_a_dirty_tree(tmp_path):
    from analysis.report import CHECKOUT_ROOT, build_report, commit_line, portable

    assert portable("python study/run_ablation.py /home/x/clone/results/reference/s --output-dir "
                    f"{CHECKOUT_ROOT}/results/reference --seeds 5") == \
        "python study/run_ablation.py results/reference/s --output-dir results/reference --seeds 5"
    assert "warning" in commit_line("abc+dirty") and commit_line("abc") == "abc"
    sweep_report = build_report(load_run(make_sweep(tmp_path / "s")))
    assert "never touches the official test set" in sweep_report and "once per ablation trial" not in \
        sweep_report.split("\n")[2]


def test_a_run_is_dirty_when_code_differs_not_when_results_do(tmp_path):
    import subprocess

    from study.tables import git_commit

    def git(*argv):
        subprocess.run(["git", *argv], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "old.json").write_text("{}")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    clean = git_commit(tmp_path)
    assert clean and not clean.endswith("+dirty")
    (tmp_path / "results" / "old.json").unlink()  # a study regenerating the committed reference
    (tmp_path / "results" / "new.json").write_text("{}")
    assert git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == clean + "+dirty"


def test_seeds_for_halfwidth_is_the_fewest_whose_t_interval_is_that_narrow():
    from analysis.stats import seeds_for_halfwidth

    def halfwidth(sd, n):
        return stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)

    for sd in (0.1, 0.4, 1.36, 3.0):
        n = seeds_for_halfwidth(sd, 0.5)
        assert halfwidth(sd, n) <= 0.5 and (n == 2 or halfwidth(sd, n - 1) > 0.5), (sd, n)
    assert seeds_for_halfwidth(1.36, 0.5) == 31  # the committed laptop reference's IAKD-best spread at 5 seeds
    assert seeds_for_halfwidth(50.0, 0.5) is None  # beyond 200 seeds: no count is offered
    assert mean_ci([0.0, 0.0, 0.0]) == (0.0, 0.0, 0.0)  # bit-identical arms: a point, not NaN nor a warning


def test_a_verdict_comparison_wider_than_the_seed_goal_is_warned_with_the_seeds_it_needs(tmp_path):
    from analysis.sensitivity import assess
    from analysis.stats import seeds_for_halfwidth

    folder = make_ablation(tmp_path / "a", make_sweep(tmp_path / "s"), ARMS, seeds=tuple(range(1000, 1005)))
    trials = pd.read_parquet(folder / "trials.parquet")
    noisy = trials["arm"] == "iakd_best"
    trials.loc[noisy, "test_acc"] += np.array([-1.5, 1.5, -1.0, 1.0, 0.0])  # a spread of ~1.3
    trials.to_parquet(folder / "trials.parquet")
    run = load_run(folder)
    s = assess(run)
    row = s.detectable.set_index("arm").loc["iakd_best"]
    needs = seeds_for_halfwidth(row["sd"], 0.5)
    warning = next(w for w in s.warnings if "resolved less finely" in w)
    assert f"iakd_best − student ±{row['ci_halfwidth']:.2f} (n = 5" in warning and f"≈ {needs} seeds" in warning
    assert f"--more-seeds {needs - 5}`" in warning and "kd −" not in warning  # KD's CI meets the goal
    assert "resolved less finely" in build_report(run)


def test_the_top_up_target_comes_from_the_paired_spread_so_far_within_the_ceiling(tmp_path):
    from analysis.sensitivity import seeds_to_resolve
    from analysis.stats import seeds_for_halfwidth

    folder = make_ablation(tmp_path / "a", make_sweep(tmp_path / "s"), ARMS, seeds=tuple(range(1000, 1005)))
    trials = pd.read_parquet(folder / "trials.parquet")
    trials.loc[trials["arm"] == "iakd_best", "test_acc"] += np.array([-1.5, 1.5, -1.0, 1.0, 0.0])
    trials.to_parquet(folder / "trials.parquet")

    def needs(table):
        wide = table.pivot_table(index="seed", columns="arm", values="test_acc")
        return seeds_for_halfwidth((wide["iakd_best"] - wide["student"]).std(ddof=1), 0.5)

    assert 10 < needs(trials) <= 40 and seeds_to_resolve(load_run(folder), 40) == needs(trials)
    assert seeds_to_resolve(load_run(folder), 10) == 10 and seeds_to_resolve(load_run(folder), 3) == 5  # ceiling
    extra = trials[trials["arm"].isin(["student", "iakd_best"]) & (trials["seed"] < 1003)].copy()
    extra["seed"] += 5  # top-up seeds 1005-1007 with a wider spread: the target grows with it (the KD arms have no
    extra.loc[extra["arm"] == "iakd_best", "test_acc"] += np.array([4.0, -4.0, 3.0])  # top-up seeds: unpaired)
    extra["trial_id"] = extra["trial_id"] + "-more"
    both = pd.concat([trials, extra])
    both.to_parquet(folder / "trials.parquet")
    assert needs(both) > needs(trials) and seeds_to_resolve(load_run(folder), 200) == needs(both)
