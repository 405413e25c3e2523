#!/usr/bin/env python
"""Every figure for every stored run (or one run): PNG + SVG into <run>/figures/.

    python analysis/plots.py                       # all runs under results/
    python analysis/plots.py results/sweeps/<run>  # one run
    python analysis/plots.py results/sweeps/<run> --out DIR   # one run, figures into DIR

Sweeps: best-so-far vs trial number and vs wall time, Optuna parameter importance (full-fidelity COMPLETE trials
only), swap schedules of the top trials, val accuracy vs mean swap probability and vs granularity, parallel
coordinates, accuracy vs training cost with the Pareto front (two-objective runs only), teacher-unit
compatibility of the best trial. Ablations: means with 95 % t-intervals and per-seed points, teacher-unit
compatibility of the iakd_best and iakd_paper_default seeds. Reads files only. One style (``STYLE``) for this
script and report.py; the files are byte-stable: regenerating them from unchanged data changes nothing.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from analysis.load import NotARunError, Run, find_runs, load_run
from analysis.rungs import curves, rung_settings
from analysis.stats import mean_ci
from analysis.summaries import rung_epochs, trial_iterations
from analysis.tables import compatibility_long
from iakd_core.schedules import SCHEDULES

# Every figure is drawn WIDTH inches wide and shown at one width in the report, so text has one size everywhere.
WIDTH = 10.0
# One colour per schedule, fixed by the schedule registry's order: the same schedule has the same colour in every
# figure of every run.
SCHEDULE_COLOURS = dict(zip(SCHEDULES, sns.color_palette("colorblind", len(SCHEDULES)), strict=True))

OTHER_NUMERIC_PARAMS = ["units_per_stage", "ce_weight", "kd_weight", "kd_temperature", "student_ce_weight",
                        "feature_weight", "lr", "weight_decay"]


def numeric_params(t: pd.DataFrame) -> list[str]:
    """Every numeric swap_* column (so a new schedule parameter is drawn without an edit here), then the rest."""
    swap = [c for c in t.columns if c.startswith("swap_") and pd.api.types.is_numeric_dtype(t[c])
            and not pd.api.types.is_bool_dtype(t[c])]
    return swap + [c for c in OTHER_NUMERIC_PARAMS if c in t]


# What each figure shows (the report prints these under the images).
CAPTIONS = {
    "best_so_far": "Best full-fidelity validation accuracy so far, by trial number (left) and wall time (right); "
                   "dots are COMPLETE trials, pruned and failed trials keep the best so far.",
    "importance": "PED-ANOVA importance of each searched parameter for reaching the top 10 % of validation "
                  "accuracy (Optuna's PedAnovaImportanceEvaluator over the COMPLETE full-fidelity trials; a "
                  "conditional parameter such as a schedule's p1 or KD's temperature over the trials that have "
                  "it, their number beside its bar). The top 10 % of a few dozen trials is a handful of them: "
                  "read every bar as a hint, not a measurement. The same evaluator, trials and parameters as "
                  "optuna-dashboard's importance view, so the two show the same numbers.",
    "schedules_top": "Swap probability p(t) over training of the five best COMPLETE trials (legend: schedule and "
                     "validation accuracy).",
    "accuracy_vs_swap": "Validation accuracy of COMPLETE trials against the mean swap probability over training "
                        "(left, coloured by schedule) and against granularity, units per stage (right).",
    "parallel_coordinates": "Parallel coordinates of the COMPLETE trials' numeric parameters, each scaled to "
                            "[0, 1] (a parameter a trial does not use is drawn below 0), coloured by validation "
                            "accuracy tercile.",
    "pareto": "Two-objective run: validation accuracy against training seconds of COMPLETE trials, with the "
              "Pareto front.",
    "compatibility": "Teacher-unit compatibility: validation accuracy (first compat_size validation images, "
                     "eval mode) of the hybrid with exactly one teacher unit swapped in, per unit, at the "
                     "diagnostic epochs (the scheduler's rungs and the last), beside the student alone (dashed) "
                     "and the teacher alone (dotted). Sweep: its best trial; ablation: the iakd_best, "
                     "iakd_best_swapping (when there is one) and iakd_paper_default arms, mean over seeds, band "
                     "±1 sd. A unit line near the teacher's means that teacher unit accepts the student's features; "
                     "near chance, it does not.",
    "learning_curves": "Validation accuracy per epoch of every trial (grey: stopped early; blue: reached full "
                       "fidelity; orange: the final top 3), with the scheduler's rungs (dashed): where the search "
                       "compared trials and what it cut.",
    "ablation_bars": "Test accuracy per ablation arm: the mean with its 95 % t-interval (diamond and line) and "
                     "every seed (dots), with the student's and KD's means as reference lines; arms far below the "
                     "others are drawn in their own panel (left), so the axis of the rest shows differences of a "
                     "fraction of a point; the axis is not truncated to a bar base.",
}
STYLE = dict(style="whitegrid", context="notebook")


def save(fig, folder: Path, name: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.svg"]
    fig.tight_layout()
    for p in paths:  # no dates and fixed SVG ids: the same data gives the same bytes; nothing clipped
        fig.savefig(p, dpi=130, bbox_inches="tight", pad_inches=0.1,
                    metadata={"Software": None} if p.suffix == ".png" else {"Date": None})
    plt.close(fig)
    return paths


def complete(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["status"] == "COMPLETE"]


def best_so_far(run: Run, out: Path) -> list[Path]:
    t = run.trials.sort_values("trial_number").copy()
    t["full"] = t["val_acc_last"].where(t["status"] == "COMPLETE")
    t["best"] = t["full"].cummax().ffill()  # pruned/failed trials keep the best so far
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 4))
    axes[0].plot(t["trial_number"], t["best"], drawstyle="steps-post", color="C0", label="best so far")
    axes[0].scatter(t["trial_number"], t["full"], s=12, color="C0", alpha=0.5, label="COMPLETE trial")
    axes[0].set(xlabel="trial number", ylabel="val accuracy (%)", title="Best full-fidelity val accuracy")
    axes[0].legend()
    if "timestamp" in run.epochs and len(run.epochs):
        ends = run.epochs.groupby("trial_id")["timestamp"].max()
        t["end"] = t["trial_id"].map(ends)
        t = t.dropna(subset=["end"]).sort_values("end")
        t["best"] = t["full"].cummax().ffill()  # pruned/failed trials keep the best so far
        axes[1].plot((t["end"] - t["end"].min()) / 60, t["best"], drawstyle="steps-post")
    axes[1].set(xlabel="wall time since first result (min)", ylabel="val accuracy (%)",
                title="Best so far vs wall time")
    return save(fig, out, "best_so_far")


class Importances(NamedTuple):
    values: dict[str, float]  # parameter -> importance (largest first)
    not_assessed: list[str]  # searched parameters the evaluator could not assess
    having: dict[str, int]  # parameter -> how many of the trials have it (conditional ones: fewer)
    trials: int  # the COMPLETE full-fidelity trials it read


def param_importances(run: Run) -> Importances:
    """PED-ANOVA importances for val accuracy from the run's Optuna study, computed as optuna-dashboard (0.21)
    computes its importance view: ``PedAnovaImportanceEvaluator`` with its defaults, the objective negated for a
    maximised one (the evaluator favours low values), so report and dashboard agree. Optuna's evaluators read
    COMPLETE trials only, and the sweep marks a trial COMPLETE only at full fidelity (those the scheduler stopped
    are PRUNED), so early values never count. In an ``acc+cost`` (two-objective) study, accuracy is the first
    objective."""
    import optuna

    db = run.path / "optuna.db"
    if not db.exists():
        return Importances({}, [], {}, 0)
    study = optuna.load_study(study_name=run.manifest["study_name"], storage=f"sqlite:///{db}")
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 3:
        return Importances({}, [], {}, len(done))
    searched = list(dict.fromkeys(name for t in done for name in t.params))
    having = {name: sum(name in t.params for t in done) for name in searched}
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (Optuna warns whenever a target is given to PED-ANOVA)
        try:
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                target=lambda t: sign * t.values[0])
        except (RuntimeError, ValueError):
            return Importances({}, searched, having, len(done))
    imp = dict(sorted(imp.items(), key=lambda kv: (-kv[1], kv[0])))  # ties by name: Optuna's order of tied
    # parameters follows Python's string hashing, which changes per process, and so did the figure
    return Importances(imp, [name for name in searched if name not in imp], having, len(done))


def importance(run: Run, out: Path) -> list[Path]:
    found = param_importances(run)
    imp, having, n = found.values, found.having, found.trials
    if not imp:
        return []
    fig, ax = plt.subplots(figsize=(WIDTH, 0.4 * len(imp) + 1.4))
    sns.barplot(x=list(imp.values()), y=list(imp.keys()), ax=ax, color="C0")
    for row, name in enumerate(imp):  # a conditional parameter's bar rests on fewer trials: say how many
        if having.get(name, n) < n:
            ax.annotate(f"{having[name]} of {n} trials", (imp[name], row), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize="small", color="0.35")
    xlabel = f"PED-ANOVA importance for the top 10 % ({n} COMPLETE full-fidelity trials)"
    if found.not_assessed:
        xlabel += f"\nnot assessed: {', '.join(found.not_assessed)}"
    ax.set(xlabel=xlabel, ylabel="", title="Importance for val accuracy")
    return save(fig, out, "importance")


def schedules(run: Run, out: Path, top: int = 5) -> list[Path]:
    best = complete(run.trials).nlargest(top, "val_acc_last")
    curves = run.schedules[run.schedules["trial_id"].isin(best["trial_id"])]
    if not len(curves):
        return []
    fig, ax = plt.subplots(figsize=(WIDTH, 4))
    styles = ("-", "--", "-.", ":", (0, (5, 1)))
    for rank, row in enumerate(best.itertuples(), 1):
        c = curves[curves["trial_id"] == row.trial_id]
        ax.plot(c["t"], c["p"], color=SCHEDULE_COLOURS.get(row.swap_schedule), ls=styles[(rank - 1) % len(styles)],
                label=f"#{rank} {row.swap_schedule} ({row.val_acc_last:.2f}%)")
    ax.set(xlabel="training progress t", ylabel="swap probability p(t)", ylim=(-0.03, 1.03),
           title=f"Swap schedules of the top {len(best)} trials")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, out, "schedules_top")


def accuracy_vs_swap(run: Run, out: Path) -> list[Path]:
    t = complete(run.trials)
    if not len(t) or ("method" in t and (t["method"] != "iakd").all()):  # a baseline's sweep never swaps
        return []
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 4))
    sns.scatterplot(data=t, x="swap_mean_p", y="val_acc_last", hue="swap_schedule", ax=axes[0],
                    palette=SCHEDULE_COLOURS, hue_order=[s for s in SCHEDULES if s in set(t["swap_schedule"])])
    axes[0].set(xlabel="mean swap probability over training", ylabel="val accuracy (%)",
                title="Val accuracy vs mean swap probability")
    sns.move_legend(axes[0], "upper left", bbox_to_anchor=(1.01, 1.0), title="schedule")
    sns.boxplot(data=t, x="units_per_stage", y="val_acc_last", ax=axes[1], color="0.85")
    sns.stripplot(data=t, x="units_per_stage", y="val_acc_last", ax=axes[1], color="C0")
    axes[1].set(xlabel="granularity (swap units per stage)", ylabel="val accuracy (%)",
                title="Val accuracy vs granularity")
    return save(fig, out, "accuracy_vs_swap")


def parallel(run: Run, out: Path) -> list[Path]:
    t = complete(run.trials)
    cols = [c for c in numeric_params(t) if t[c].notna().any() and t[c].nunique() > 1]
    if len(t) < 3 or len(cols) < 2:
        return []
    norm = t[cols].astype(float)
    if "kd_temperature" in norm and "kd_weight" in t:  # a temperature means nothing without the KD term
        norm.loc[t["kd_weight"] == 0, "kd_temperature"] = np.nan
    norm = (norm - norm.min()) / (norm.max() - norm.min()).replace(0, 1)
    labels = ["low val acc", "mid val acc", "high val acc"]
    norm["tercile"] = pd.qcut(t["val_acc_last"].rank(method="first"), 3, labels=labels).astype(str)
    norm = norm.sort_values("tercile", key=lambda c: c.map(labels.index))  # colours follow first appearance
    fig, ax = plt.subplots(figsize=(WIDTH, 4.5))
    pd.plotting.parallel_coordinates(norm.fillna(-0.05), "tercile", ax=ax, alpha=0.6,
                                     color=["#c44e52", "#8c8c8c", "#4c72b0"])
    ax.set(ylabel="normalised value\n(missing = below 0)", title="Parallel coordinates (COMPLETE trials)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return save(fig, out, "parallel_coordinates")


def pareto_front(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Indices of points no other point beats on both lower cost and higher accuracy."""
    order = np.lexsort((-acc, cost))
    front, best = [], -np.inf
    for i in order:
        if acc[i] > best:
            front.append(i)
            best = acc[i]
    return np.array(front, dtype=int)


def pareto(run: Run, out: Path) -> list[Path]:
    t = complete(run.trials)
    if run.options.objective != "acc+cost":  # one objective: no trade-off to show
        for stale in out.glob("pareto.*"):
            stale.unlink()
        return []
    if not len(t):
        return []
    front = t.iloc[pareto_front(t["train_seconds"].to_numpy(), t["val_acc_last"].to_numpy())]
    fig, ax = plt.subplots(figsize=(WIDTH, 4))
    ax.scatter(t["train_seconds"], t["val_acc_last"], s=15, alpha=0.6, label="COMPLETE trial")
    ax.plot(front["train_seconds"], front["val_acc_last"], "o-", color="C3", label="Pareto front")
    ax.set(xlabel="training seconds", ylabel="val accuracy (%)", title="Accuracy vs training cost")
    ax.legend()
    return save(fig, out, "pareto")


FAR_BELOW = 3.0  # points below the median arm: such an arm gets its own panel in ablation_bars


def ablation_bars(run: Run, out: Path) -> list[Path]:
    """Test accuracy per arm: the mean with its 95 % t-interval (a dot and a line, so no truncated bar axis) and
    every seed as a point, the student's and KD's means as reference lines. Arms whose mean lies more than
    ``FAR_BELOW`` points under the median arm get their own panel on the left, so they do not stretch the axis of
    the others. With one seed there is no interval: only the points."""
    t = run.trials[run.trials["status"] == "COMPLETE"]
    if "test_acc" not in t or not len(t):
        return []
    order = list(dict.fromkeys(run.manifest.get("arms", {}) or t["arm"]))
    order = [a for a in order if a in set(t["arm"])]
    means = t.groupby("arm")["test_acc"].mean()
    far = [a for a in order if means[a] < means.median() - FAR_BELOW]
    near = [a for a in order if a not in far]
    panels = [p for p in (far, near) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 4.6), squeeze=False,
                             gridspec_kw={"width_ratios": [len(p) + 0.6 for p in panels]})
    for ax, arms in zip(axes[0], panels, strict=True):
        for x, arm in enumerate(arms):
            mean, lo, hi = mean_ci(t.loc[t["arm"] == arm, "test_acc"])
            if lo == lo:
                ax.plot([x, x], [lo, hi], color="0.25", lw=2, zorder=2)
            ax.plot(x, mean, "D", color="0.15", ms=7, zorder=3)
        sns.stripplot(data=t[t["arm"].isin(arms)], x="arm", y="test_acc", order=arms, ax=ax, color="C0", size=5,
                      alpha=0.7, zorder=1)
        ax.set(xlabel="", ylabel="test accuracy (%)" if ax is axes[0][0] else "")
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right")
    main = axes[0][-1]
    references = [(arm, style) for arm, style in (("student", "--"), ("kd", ":")) if arm in means]
    for arm, style in references:
        main.axhline(means[arm], color="0.4", ls=style, lw=1, zorder=0)
    if far:
        axes[0][0].set_title("far below the rest", fontsize="medium")
    n = t.groupby("arm")["seed"].nunique()
    fig.suptitle(f"Ablation: test accuracy per arm (n = {n.min()}{'' if n.min() == n.max() else f'–{n.max()}'} "
                 "seeds)")
    handles = [plt.Line2D([], [], marker="D", color="0.15", lw=2), plt.Line2D([], [], marker="o", ls="", color="C0")]
    handles += [plt.Line2D([], [], color="0.4", ls=style, lw=1) for _, style in references]
    labels = ["mean and 95 % t-interval", "one seed"] + [f"{arm} mean" for arm, _ in references]
    main.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, out, "ablation_bars")


def compatibility(run: Run, out: Path) -> list[Path]:
    """Teacher-unit compatibility over training, one panel per shown run (an ablation: iakd_best, the best that
    swaps and the paper default, mean over seeds with a ±1 sd band; a sweep: its best trial): one line per
    swapped-in unit, the student alone and the teacher alone for reference."""
    long = compatibility_long(run)
    if not len(long):
        return []
    names = list(dict.fromkeys(long["run"]))
    fig, axes = plt.subplots(1, len(names), figsize=(WIDTH, 4.2), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        part = long[long["run"] == name]
        n = part["trial_id"].nunique()
        band = "sd" if n > 1 else None
        units = part[part["line"].str.startswith("unit")]
        sns.lineplot(data=units, x="epoch", y="acc", hue="line", marker="o", errorbar=band, ax=ax,
                     palette=sns.color_palette("viridis", units["line"].nunique()))
        for line, color, style in (("student alone", "0.1", "--"), ("teacher alone", "0.55", ":")):
            sns.lineplot(data=part[part["line"] == line], x="epoch", y="acc", errorbar=band, ax=ax, color=color,
                         label=line, linestyle=style)
        ax.set(xlabel="epoch", ylabel="val accuracy (%) on the diagnostic subset",
               title=f"{name} (n = {n} seed{'s' if n > 1 else ''})")
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.9))  # outside the data, once
    fig.suptitle("Teacher-unit compatibility: the hybrid with one teacher unit swapped in")
    return save(fig, out, "compatibility")


def learning_curves(run: Run, out: Path) -> list[Path]:
    """Every trial's validation curve, pruned ones included, the final top 3 highlighted, the rungs marked."""
    wide = curves(run)
    settings = rung_settings(run)
    if not len(wide) or settings is None:
        return []
    top = trial_iterations(settings)
    final = wide[top].dropna() if top in wide else pd.Series(dtype=float)
    best = set(final.nlargest(3).index)
    fig, ax = plt.subplots(figsize=(WIDTH, 4.2))
    for trial_id, row in wide.iterrows():
        row = row.dropna()
        color, width, z = (("C1", 1.8, 3) if trial_id in best else ("C0", 0.9, 2) if trial_id in final.index
                           else ("0.7", 0.7, 1))
        ax.plot(row.index, row.values, color=color, lw=width, alpha=0.8, zorder=z)
    for rung in rung_epochs(settings):
        ax.axvline(rung, color="0.3", ls="--", lw=1)
    ax.set(xlabel="epoch", ylabel="val accuracy (%)", title="Learning curves and rungs")
    handles = [plt.Line2D([], [], color=c) for c in ("0.7", "C0", "C1")] + [plt.Line2D([], [], color="0.3", ls="--")]
    ax.legend(handles, ["stopped early", "full fidelity", "final top 3", "rung"],
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, out, "learning_curves")


SWEEP_PLOTS = (best_so_far, learning_curves, importance, schedules, accuracy_vs_swap, parallel, pareto,
                 compatibility)
ABLATION_PLOTS = (ablation_bars, compatibility)


def plot_run(run: Run, out: Path | None = None) -> list[Path]:
    """Every figure of ``run`` into ``out`` (default ``<run>/figures``), in the one style."""
    sns.set_theme(**STYLE)
    plt.rcParams["svg.hashsalt"] = "iakd"
    out = run.path / "figures" if out is None else out
    figures = ABLATION_PLOTS if run.kind == "ablation" else SWEEP_PLOTS
    paths: list[Path] = []
    for fn in figures:
        np.random.seed(0)  # seaborn's strip-plot jitter draws from numpy's global generator
        paths += fn(run, out)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", help="one run folder (default: every run under results/)")
    p.add_argument("--out", type=Path, help="write the figures here instead of <run>/figures (one run only)")
    args = p.parse_args(argv)
    if args.out and not args.run:
        print("error: --out needs one run folder; give it as the first argument", file=sys.stderr)
        return 2
    runs = [Path(args.run)] if args.run else find_runs()
    if not runs:
        print("no runs under results/: run python study/run_sweep.py first", file=sys.stderr)
        return 0
    for path in runs:
        try:
            paths = plot_run(load_run(path), args.out)
        except NotARunError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{path}: {len(paths) // 2} figures -> {args.out or path / 'figures'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
