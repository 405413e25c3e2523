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


def fmt_p(p: float) -> str:
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


# Table 1's references: the student alone, KD at its literature values, and KD tuned by its own sweep. Each arm
# is compared with what it is there to be judged against, so the Holm family (which the positive control shares)
# does not grow with diagnostic arms: the sweep's IAKD configurations with all three, the paper reconstruction and
# its bracket with the student alone, the conventional methods with the student and KD. A reference is compared
# with the references before it only, so each test is in the family once (KD - student, the positive control, is
# not also counted as student - KD).
REFERENCES = ("student", "kd", "kd_tuned")
IAKD_SELECTED = ("iakd_best", "iakd_best_plus_kd", "iakd_best_swapping")


def references_of(arm: str) -> tuple[str, ...]:
    if arm in REFERENCES:
        return REFERENCES[:REFERENCES.index(arm)]
    if arm in IAKD_SELECTED:
        return REFERENCES
    return ("student",) if arm.startswith("iakd_paper") else REFERENCES[:2]


def method_comparisons(run: Run) -> pd.DataFrame:
    """Table 1's family: every method arm vs the student and vs KD (literature), the IAKD arms also vs KD tuned
    (paired on seeds), each pair once; Holm across the family. Table 1, the conclusion and the sensitivity section
    all quote these rows, so they agree."""
    wide = seed_table(run)
    return paired_table(wide, [(arm, ref) for arm in method_arms(run) for ref in references_of(arm)
                               if arm != ref and ref in wide])


def stronger_kd(run: Run) -> str | None:
    """The stronger KD baseline of the run, ``kd`` or ``kd_tuned``, chosen on mean *validation* accuracy (the test
    set never picks anything); None without a KD arm."""
    t = _ok(run.trials)
    present = [a for a in ("kd", "kd_tuned") if (t["arm"] == a).any()] if "arm" in t else []
    if not present or "val_acc_last" not in t:
        return present[0] if present else None
    return max(present, key=lambda a: t.loc[t["arm"] == a, "val_acc_last"].mean())


def arm_label(run: Run, arm: str) -> str:
    """The arm's label as the ablation recorded it (runs made before labels existed: the arm's name)."""
    t = run.trials
    if "label" in t:
        labels = t.loc[t["arm"] == arm, "label"].dropna()
        if len(labels):
            return str(labels.iloc[0])
    return arm


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
               "what": "the frozen teacher", "test acc (%)": f"{teacher['test_acc']:.2f} (n=1)"}
        for ref in REFERENCES:
            if ref in wide:
                row.update({f"Δ vs {ref} [95% CI]": "—", f"p vs {ref}": "—", f"p_holm vs {ref}": "—"})
        rows.append(row)
    for arm in method_arms(run):
        row = {"setting": setting, "method": arm, "what": arm_label(run, arm),
               "test acc (%)": fmt_mean_std(wide[arm].dropna())}
        for ref in REFERENCES:
            if ref not in wide:
                continue
            c = comparisons.loc[(arm, ref)] if (arm, ref) in comparisons.index else None
            row[f"Δ vs {ref} [95% CI]"] = "—" if c is None else fmt_delta(c)
            row[f"p vs {ref}"] = "—" if c is None else fmt_p(c["p_ttest"])
            row[f"p_holm vs {ref}"] = "—" if c is None else fmt_p(c["p_holm"])
        rows.append(row)
    table = pd.DataFrame(rows)
    return table if "label" in run.trials else table.drop(columns="what", errors="ignore")


# Factors recorded under another name by runs made before the student_bn mode existed.
OLD_FACTORS = {"teacher_bn": "batchnorm"}


def factor_arms(run: Run, factor: str) -> tuple[str, list[str]]:
    """(reference arm, the factor's other arms with results): the reference is what the ablation recorded as the
    arms' ``versus`` (runs made before it did: iakd_best)."""
    t = _ok(run.trials)
    if not len(t):
        return "iakd_best", []
    factors = t["factor"].replace(OLD_FACTORS)
    part = t[factors == factor]
    versus = part["versus"].dropna() if "versus" in part else pd.Series(dtype=object)
    reference = str(versus.iloc[0]) if len(versus) else "iakd_best"
    return reference, [a for a in dict.fromkeys(part["arm"]) if a != reference]


ABLATION_TABLES = (("schedule", "schedule"), ("granularity", "granularity"),
                   ("loss", "loss terms and BN recalibration"),
                   ("batchnorm", "BatchNorm modes (teacher units, student statistics)"),
                   ("paper", "paper reconstruction: BatchNorm and recalibration"))  # Tables 2, 3, ... in order


def arms_beating_their_reference(run: Run) -> list[dict]:
    """Ablation arms significantly better than the arm they vary, with Holm across *every* ablation comparison
    (Tables 2 onwards together: this headline picks from all of them, so its family is all of them; each table
    prints Holm within itself). Each carries its table's number, its change and the family's size."""
    wide, pairs, tables = seed_table(run), [], {}
    for number, (factor, _) in enumerate(ABLATION_TABLES, 2):
        reference, arms = factor_arms(run, factor)
        for arm in arms:
            pairs.append((arm, reference))
            tables[(arm, reference)] = number
    family = paired_table(wide, pairs)
    size = int(family["p_ttest"].notna().sum())
    return [{**c, "table": tables[(c["arm"], c["reference"])], "family": size,
             "change": describe_change(run, c["arm"], c["reference"])}
            for c in family[(family["p_holm"] < ALPHA) & (family["delta"] > 0)].to_dict("records")]


def comparisons_vs_best(run: Run, factor: str) -> pd.DataFrame:
    """One ablation table: the factor's reference arm (iakd_best; the paper reconstruction for the paper table)
    and each arm of ``factor``; Δ vs the reference, p, Holm within the table."""
    t = _ok(run.trials)
    reference, arms = factor_arms(run, factor)
    if not arms or reference not in set(t["arm"]):
        return pd.DataFrame()
    wide = seed_table(run)
    first = t[t["arm"] == reference].iloc[0]
    column = f"Δ vs {'best' if reference == 'iakd_best' else reference} [95% CI]"

    # the reference on the seeds its table's arms ran (a topped-up reference has more: the Δs are paired on these)
    compared = wide[[a for a in arms if a in wide]].dropna(how="all").index

    def acc(arm: str, seeds=None) -> dict[str, object]:
        values = (wide[arm] if seeds is None else wide.loc[seeds, arm]).dropna()
        return {"test acc (%)": f"{values.mean():.2f} ± {values.std(ddof=1):.2f}" if len(values) > 1
                else f"{values.mean():.2f}", "n": len(values)}

    rows = [{"arm": reference, "change": "the reference (below the table)", **acc(reference, compared), column: None,
             "p": None, "p_holm": None}]
    for c in paired_table(wide, [(arm, reference) for arm in arms]).to_dict("records"):
        rows.append({"arm": c["arm"], "change": describe_change(run, c["arm"], reference), **acc(c["arm"]),
                     column: fmt_delta(c), "p": fmt_p(c["p_ttest"]), "p_holm": fmt_p(c["p_holm"])})
    table = pd.DataFrame(rows)
    table.attrs["footnote"] = f"{reference}: {describe_best(first)}."
    return table


def describe_best(row: pd.Series) -> str:
    if row.get("method", "iakd") != "iakd":
        return describe_config(row)
    return f"{describe_config(row)} (mean p={row['swap_mean_p']:.3f})"


def describe_change(run: Run, arm: str, versus: str = "iakd_best") -> str:
    """The arm's config keys that differ from the arm it is compared with (``versus``: its overrides on the
    ablation's base config, the best)."""
    arms = run.manifest.get("arms", {})
    reference = {**run.manifest.get("base_config", {}), **arms.get(versus, {})}
    changed = {k: v for k, v in arms.get(arm, {}).items() if reference.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "—"


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
    if "method" in t and len(t) and (t["method"] != "iakd").all():  # a baseline's sweep: what it searched
        searched = [c for c in ("ce_weight", "kd_weight", "kd_temperature", "feature_weight", "lr", "weight_decay")
                    if c in full and full[c].nunique() > 1]
        cols = ["trial_number", "val_acc_last", *searched, "train_seconds"]
    else:
        cols = ["trial_number", "val_acc_last", "swap_schedule", "swap_p0", "swap_p1", "swap_mean_p",
                "swap_profile", "units_per_stage", "swap_mode", "kd_weight", "student_ce_weight", "train_seconds"]
    return info, full[[c for c in cols if c in full]].round(3)


def anchors_for(run: Run) -> pd.DataFrame:
    cfg = run.manifest.get("base_config", {})
    a = load_anchors()
    return a[(a["dataset"] == cfg.get("dataset")) & (a["teacher"] == cfg.get("teacher"))
             & (a["student"] == cfg.get("student"))]


# An ablation's runs whose teacher-unit compatibility the report shows: the best configuration, and the paper's
# constant p = 0.5, which swaps all through training (the best may hardly swap at all).
COMPATIBILITY_ARMS = ("iakd_best", "iakd_best_swapping", "iakd_paper_default")


def compatibility_runs(run: Run) -> dict[str, pd.DataFrame]:
    """The trials the compatibility diagnostic is shown for, by name: an ablation's ``COMPATIBILITY_ARMS`` (all
    their seeds), or a sweep's best COMPLETE trial."""
    t = run.trials[run.trials["status"] == "COMPLETE"]
    if run.kind == "ablation":
        return {arm: t[t["arm"] == arm] for arm in COMPATIBILITY_ARMS if "arm" in t and (t["arm"] == arm).any()}
    best = t.nlargest(1, "val_acc_last")
    return {f"best trial {int(best['trial_number'].iloc[0])}": best} if len(best) else {}


def compatibility_long(run: Run) -> pd.DataFrame:
    """Teacher-unit compatibility, long form: ``run`` (see :func:`compatibility_runs`), trial_id, epoch, ``line``
    (student alone, teacher alone, unit i swapped in) and ``acc`` (%, on the diagnostic's validation subset);
    empty when no diagnostics were recorded."""
    columns = ["run", "trial_id", "epoch", "line", "acc"]
    e = run.epochs
    if not len(e) or "compat_student" not in e:
        return pd.DataFrame(columns=columns)
    frames = []
    for name, trials in compatibility_runs(run).items():
        rows = e[e["trial_id"].isin(trials["trial_id"]) & e["compat_student"].notna()]
        units = sorted((c for c in rows.columns if c.startswith("compat_u") and rows[c].notna().any()),
                       key=lambda c: int(c.removeprefix("compat_u")))
        names = {"compat_student": "student alone", "compat_teacher": "teacher alone",
                 **{c: f"unit {c.removeprefix('compat_u')} swapped in" for c in units}}
        long = rows.melt(id_vars=["trial_id", "epoch"], value_vars=list(names), var_name="line", value_name="acc")
        long["line"] = long["line"].map(names)
        long.insert(0, "run", name)
        frames.append(long.dropna(subset=["acc"]))
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def compatibility_table(run: Run) -> pd.DataFrame:
    """Mean over each shown run's seeds per diagnostic epoch (rows) and line (columns), with n."""
    long = compatibility_long(run)
    if not len(long):
        return pd.DataFrame()
    order = list(dict.fromkeys(long["line"]))
    tables = []
    for name, part in long.groupby("run", sort=False):
        table = part.pivot_table(index="epoch", columns="line", values="acc", aggfunc="mean")
        table = table[[c for c in order if c in table]].round(2)
        table.insert(0, "n", part.groupby("epoch")["trial_id"].nunique())
        table = table.reset_index()
        table.insert(0, "run", name)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def methods_by_setting(runs: dict[str, Run]) -> pd.DataFrame:
    """Table 1 across settings: one row per method (the teacher first), one column per setting (label: its pair),
    mean ± std (n); the highest student-side mean of each column in bold (a description, not a test; the
    teacher is the reference, n = 1)."""
    columns, order, what = {}, ["teacher"], {"teacher": "the frozen teacher"}
    for label, run in runs.items():
        wide = seed_table(run)
        cfg = run.manifest.get("base_config", {})
        column = {}
        teacher = run.manifest.get("teacher") or {}
        if teacher.get("test_acc") is not None:
            column["teacher"] = f"{teacher['test_acc']:.2f} (n=1)"
        arms = method_arms(run)
        best = max(arms, key=lambda a: wide[a].mean()) if arms else None
        for arm in arms:
            text = fmt_mean_std(wide[arm].dropna())
            column[arm] = f"**{text}**" if arm == best else text
            order.append(arm)
            what.setdefault(arm, arm_label(run, arm))
        if "iakd_best" in column and "iakd_best_plus_kd" not in column and best_uses_kd(run):
            column["iakd_best_plus_kd"] = "= iakd_best (it uses KD)"
            what.setdefault("iakd_best_plus_kd", "IAKD, the sweep's best + KD (not run: the best has a KD term)")
        columns[f"{label} ({cfg.get('teacher')} → {cfg.get('student')})"] = column
    rows = [m for m in dict.fromkeys(order + ["iakd_best_plus_kd"]) if any(m in col for col in columns.values())]
    table = pd.DataFrame([{"method": m, "what": what.get(m, m), **{c: col.get(m, "—") for c, col in columns.items()}}
                          for m in rows])
    labelled = any("label" in run.trials for run in runs.values())
    return table if labelled else table.drop(columns="what")


def best_uses_kd(run: Run) -> bool:
    """Whether the ablated best IAKD config has a KD term (then the ablation has no iakd_best_plus_kd arm)."""
    t = run.trials
    best = t[t["arm"] == "iakd_best"] if "arm" in t else t.iloc[0:0]
    return bool(len(best)) and float(best["kd_weight"].iloc[0]) > 0


def student_statistics_table(run: Run) -> pd.DataFrame:
    """Per IAKD arm of an ablation: val accuracy at the last epoch with the
    student's running statistics and after a student-only recalibration (``val_acc_recal``), mean over seeds."""
    e, t = run.epochs, run.trials[run.trials["status"] == "COMPLETE"]
    if not len(e) or "val_acc_recal" not in e or "arm" not in t:
        return pd.DataFrame()
    last = e[e["val_acc_recal"].notna()].sort_values("epoch").groupby("trial_id").tail(1)
    merged = last.merge(t[["trial_id", "arm", "student_bn"]] if "student_bn" in t else t[["trial_id", "arm"]],
                        on="trial_id")
    if not len(merged):
        return pd.DataFrame()
    table = merged.groupby("arm", sort=False).agg(n=("trial_id", "nunique"), epoch=("epoch", "max"),
                                                  running=("val_acc", "mean"), recalibrated=("val_acc_recal", "mean"))
    table["gap"] = table["recalibrated"] - table["running"]
    order = [a for a in dict.fromkeys(t["arm"]) if a in table.index]
    table = table.loc[order].round(2).reset_index()
    return table.rename(columns={"running": "val acc, running stats (%)", "recalibrated": "val acc, recalibrated (%)",
                                 "gap": "recalibrated − running"})
