"""Paper-style tables from run files (pandas only)."""

from __future__ import annotations

import pandas as pd

from .load import Run, load_anchors
from .stats import fmt_delta, fmt_mean_std, paired_table
from .summaries import describe_config

ALPHA = 0.05
POWER = 0.8  # for the minimum detectable difference (analysis/sensitivity.py)


def _ok(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[(trials["status"] == "COMPLETE") & trials["test_acc"].notna()] if "test_acc" in trials else \
        trials.iloc[0:0]


def _fmt_p(p: float) -> str:
    return "n/a" if p != p else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def seed_table(run: Run) -> pd.DataFrame:
    """Test accuracy of every COMPLETE ablation trial: one row per seed, one column per arm."""
    return _ok(run.trials).pivot_table(index="seed", columns="arm", values="test_acc")


def method_arms(run: Run) -> list[str]:
    """Table 1's rows: the arms whose recorded factor is ``method``, in the run's order, that have results."""
    t = run.trials
    if not len(t) or "factor" not in t:
        return []
    wide = seed_table(run)
    return [a for a in dict.fromkeys(t.loc[t["factor"] == "method", "arm"]) if a in wide]


def method_comparisons(run: Run) -> pd.DataFrame:
    """Table 1's family: every method arm vs the student and vs KD (paired on seeds); Holm across the family.
    Table 1, the conclusion and the sensitivity section all quote these rows, so they agree."""
    wide = seed_table(run)
    return paired_table(wide, [(arm, ref) for arm in method_arms(run) for ref in ("student", "kd")
                               if arm != ref and ref in wide])


def table1(run: Run) -> pd.DataFrame:
    """Method × setting: test accuracy, Δ vs student and vs KD (95 % CI), paired t-test p, Holm across table."""
    wide = seed_table(run)
    cfg = run.manifest["base_config"]
    setting = f"{cfg['dataset']}: {cfg['teacher']} → {cfg['student']}"
    comparisons = method_comparisons(run).set_index(["arm", "reference"])
    rows = []
    teacher = run.manifest.get("teacher") or {}
    if teacher.get("test_acc") is not None:  # one trained teacher: its test accuracy, no spread, no test
        row = {"setting": setting, "method": f"teacher ({teacher.get('arch', cfg['teacher'])})",
               "test acc (%)": f"{teacher['test_acc']:.2f} (n=1)"}
        for ref in ("student", "kd"):
            if ref in wide:
                row.update({f"Δ vs {ref} [95% CI]": "—", f"p vs {ref}": "—", f"p_holm vs {ref}": "—"})
        rows.append(row)
    for arm in method_arms(run):
        row = {"setting": setting, "method": arm, "test acc (%)": fmt_mean_std(wide[arm].dropna())}
        for ref in ("student", "kd"):
            if ref not in wide:
                continue
            c = comparisons.loc[(arm, ref)] if (arm, ref) in comparisons.index else None
            row[f"Δ vs {ref} [95% CI]"] = "—" if c is None else fmt_delta(c)
            row[f"p vs {ref}"] = "—" if c is None else _fmt_p(c["p_ttest"])
            row[f"p_holm vs {ref}"] = "—" if c is None else _fmt_p(c["p_holm"])
        rows.append(row)
    return pd.DataFrame(rows)


def comparisons_vs_best(run: Run, factor: str) -> pd.DataFrame:
    """One ablation table: iakd_best and each arm of ``factor``; Δ vs iakd_best, p, Holm within the table."""
    t = _ok(run.trials)
    arms = [a for a in dict.fromkeys(t.loc[t["factor"] == factor, "arm"]) if a != "iakd_best"]
    if not arms or "iakd_best" not in set(t["arm"]):
        return pd.DataFrame()
    wide = seed_table(run)
    first = t[t["arm"] == "iakd_best"].iloc[0]
    rows = [{"arm": "iakd_best", "change": describe_best(first), "test acc (%)": fmt_mean_std(wide["iakd_best"]),
             "Δ vs best [95% CI]": "—", "p": "—", "p_holm": "—"}]
    for c in paired_table(wide, [(arm, "iakd_best") for arm in arms]).to_dict("records"):
        rows.append({"arm": c["arm"], "change": describe_change(run, c["arm"]),
                     "test acc (%)": fmt_mean_std(wide[c["arm"]]), "Δ vs best [95% CI]": fmt_delta(c),
                     "p": _fmt_p(c["p_ttest"]), "p_holm": _fmt_p(c["p_holm"])})
    return pd.DataFrame(rows)


def describe_best(row: pd.Series) -> str:
    return f"{describe_config(row)} (mean p={row['swap_mean_p']:.2f})"


def describe_change(run: Run, arm: str) -> str:
    overrides = run.manifest.get("arms", {}).get(arm, {})
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "—"


def sweep_summary(run: Run, top: int = 5) -> tuple[dict, pd.DataFrame]:
    t = run.trials
    counts = t["status"].value_counts().to_dict()
    info = {"budget": run.manifest.get("budget", len(t)), "complete": counts.get("COMPLETE", 0),
            "pruned": counts.get("PRUNED", 0), "failed": counts.get("ERROR", 0),
            "wall_seconds": run.manifest.get("wall_seconds"), "teacher": run.manifest.get("teacher", {}),
            "best": None}
    full = t[t["status"] == "COMPLETE"].nlargest(top, "val_acc_last")
    if len(full):
        info["best"] = describe_best(full.iloc[0])
    cols = ["trial_number", "val_acc_last", "swap_schedule", "swap_p0", "swap_p1", "swap_mean_p", "swap_profile",
            "units_per_stage", "swap_mode", "kd_weight", "student_ce_weight", "train_seconds"]
    return info, full[[c for c in cols if c in full]].round(3)


def anchors_for(run: Run) -> pd.DataFrame:
    cfg = run.manifest.get("base_config", {})
    a = load_anchors()
    return a[(a["dataset"] == cfg.get("dataset")) & (a["teacher"] == cfg.get("teacher"))
             & (a["student"] == cfg.get("student"))]
