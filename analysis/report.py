#!/usr/bin/env python
"""Write report.md and report.html for a run (an ablation run also summarises the sweep it came from), or one
study report over several ablation runs (one per setting).

    python analysis/report.py results/ablations/<run>
    python analysis/report.py results/sweeps/<run>
    python analysis/report.py <ablation> <ablation> ... [--out DIR]   # default DIR: their common parent folder

Tables: 1 (methods, paper shape; several runs: methods x settings, best marked, then the differences per
setting), 2 (schedule), 3 (granularity), 4 (loss terms), 5 (teacher BatchNorm mode), teacher-unit compatibility,
sweep summary with the top trials, published anchor numbers when the setting matches, the environment and the
commands that regenerate everything, and a conclusion computed from the numbers. Figures are made by
analysis/plots.py and linked; the report's folder holds every image it shows.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import markdown
import pandas as pd

from analysis.load import CHECKOUT_ROOT, NotARunError, Run, load_run
from analysis.manifest import SearchOptions
from analysis.plots import CAPTIONS, plot_run
from analysis.rungs import TOP_K, measured_on, rung_reliability, rung_settings, rung_warnings
from analysis.sensitivity import Sensitivity, assess
from analysis.stats import paired_comparison
from analysis.summaries import BARELY_SWAPS, SWAPS, trial_iterations
from analysis.tables import (
    ABLATION_TABLES,
    ALPHA,
    POWER,
    anchors_for,
    arm_label,
    arms_beating_their_reference,
    best_uses_kd,
    comparisons_vs_best,
    compatibility_table,
    fmt_p,
    method_comparisons,
    methods_by_setting,
    seed_table,
    stronger_kd,
    student_statistics_table,
    sweep_summary,
    table1,
)
from iakd_core.console import display_path
from iakd_core.files import write_text
from iakd_core.presets import CI_HALFWIDTH, VERDICT_ARMS

NOT_APPLICABLE = ("—", "n/a", "")  # cells that do not decide a column's alignment
NUMBER_LIKE = re.compile(r"^\*{0,2}[<>+\-−]?\d")  # 86.95 ± 0.30, +0.25 [...], <0.001, **87.10 ...**
PAIRED_NOTE = ("Each Δ is paired on the seeds both arms ran, so where their seed counts differ it is not the "
               "difference of the two means shown; its 95 % interval is not adjusted for multiplicity (the "
               "verdicts use the Holm p); each test is listed once (KD − student, the positive control, in KD's "
               "row).")


def md_table(df: pd.DataFrame) -> str:
    """A pipe table: not-applicable cells (NaN, None) blank; columns of numbers, or of texts that start with one
    (mean ± sd, Δ [CI], p), right-aligned."""
    if not len(df):
        return "_no completed trials for this table_"
    cells = df.astype(object).where(df.notna(), None)
    align = []
    for c in cells.columns:
        values = [v for v in cells[c].dropna() if str(v) not in NOT_APPLICABLE]
        numeric = bool(values) and all(isinstance(v, int | float) or NUMBER_LIKE.match(str(v)) for v in values)
        align.append("right" if numeric else "left")
    return cells.to_markdown(index=False, missingval="", colalign=align)


def verdict(c: pd.Series) -> str:
    p = c["p_holm"]
    if p != p:
        return "cannot be tested (fewer than 2 paired seeds)"
    if p < ALPHA:
        return f"significantly {'better' if c['delta'] > 0 else 'worse'} (Holm-adjusted {p_is(p)})"
    half = (c["ci_high"] - c["ci_low"]) / 2
    if half > CI_HALFWIDTH:  # "no difference" would claim more than seeds this spread can show
        return (f"inconclusive: not significantly different (Holm-adjusted {p_is(p)}, α = {ALPHA}), but the 95 % "
                f"CI is ±{half:.2f} points, wider than the ±{CI_HALFWIDTH:g} the seed counts aim at, so a "
                "difference of that size is not ruled out")
    return f"not significantly different (Holm-adjusted {p_is(p)}, α = {ALPHA})"


def p_is(p: float) -> str:
    """``p = 0.012`` or ``p < 0.001``, for a sentence."""
    text = fmt_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def versus_line(rows: pd.DataFrame, arm: str, ref: str, what: str, name: str) -> str | None:
    if (arm, ref) not in rows.index:
        return None
    c = rows.loc[(arm, ref)]
    return (f"- {what} vs {name}: Δ = {c['delta']:+.2f} points (95 % CI [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], "
            f"n = {int(c['n'])} seeds): {verdict(c)}.")


def arm_value(run: Run, arm: str, column: str) -> float | None:
    t = run.trials
    if "arm" not in t or column not in t or not (t["arm"] == arm).any():
        return None
    value = t.loc[t["arm"] == arm, column].iloc[0]
    return None if value is None or value != value else value


def conclusion(run: Run, comparisons: pd.DataFrame, sensitivity: Sensitivity) -> list[str]:
    """The verdicts, quoting Table 1's Holm-adjusted p-values; every sensitivity warning comes first, then what
    the numbers are free of (the confounds), then IAKD against the student and the stronger KD baseline."""
    lines = [f"- **Warning**: {w}." for w in sensitivity.warnings]
    if sensitivity.warnings:
        lines.append("- Read every verdict below with the warning(s) above in mind.")
    lines += fairness_lines(run)
    rows = comparisons.set_index(["arm", "reference"])
    kd = stronger_kd(run)
    kd_names = {"kd": "KD (literature values)", "kd_tuned": "KD (tuned by its own sweep)"}
    verdicts = []
    for ref, name in (("student", "the student trained alone"), ("kd", kd_names["kd"]),
                      ("kd_tuned", kd_names["kd_tuned"])):
        line = versus_line(rows, "iakd_best", ref, "The best IAKD configuration", name)
        if line:
            verdicts.append(line + (" This is the stronger KD baseline (higher mean validation accuracy)."
                                    if ref == kd and "kd_tuned" in set(run.trials.get("arm", [])) else ""))
    lines += verdicts
    best_p = arm_value(run, "iakd_best", "swap_mean_p")
    if best_p is not None and best_p < BARELY_SWAPS:
        found = "KD without swapping" if (arm_value(run, "iakd_best", "kd_weight") or 0) > 0 else \
            "a configuration that barely swaps"
        lines.append(f"- **The search found {found} best**: the best configuration's mean swap "
                     f"probability is {best_p:.2g} (< {BARELY_SWAPS:g}), so its numbers say little about swapping "
                     "itself.")
        swap_p = arm_value(run, "iakd_best_swapping", "swap_mean_p")
        if swap_p is not None:
            lines.append(f"- The best configuration that does swap (mean p = {swap_p:.2f} ≥ {SWAPS:g}), "
                         "iakd_best_swapping:")
            for ref in ("student", kd):
                line = versus_line(rows, "iakd_best_swapping", ref, "it", kd_names.get(ref, "the student alone"))
                if line:
                    lines.append("  " + line)
        elif "sweep_budget" in run.manifest:  # (ablations made before the arm existed record no sweep budget)
            lines.append(f"- No complete sweep trial swapped with mean p ≥ {SWAPS:g}, so no swapping "
                         "configuration was ablated.")
        else:
            lines.append("- This ablation predates the iakd_best_swapping arm: what swapping does at its best "
                         "is not shown here.")
    wide = seed_table(run)
    if "iakd_best" in wide and "no_swap" in wide:
        pair = wide[["iakd_best", "no_swap"]].dropna()
        c = paired_comparison(pair["iakd_best"], pair["no_swap"])
        lines.append(f"- Swapping itself (best vs the same config with p = 0): Δ = {c['delta']:+.2f} points, "
                     f"paired t-test p = {c['p_ttest']:.3f} (unadjusted; Table 2 gives its Holm-adjusted p), "
                     f"n = {c['n']} seeds.")
    for c in arms_beating_their_reference(run):
        lines.append(f"- **An ablation arm beats {c['reference']} on test**: {c['arm']} ({c['change']}, Table "
                     f"{c['table']}), Δ = {c['delta']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], Holm-adjusted "
                     f"p = {fmt_p(c['p_holm'])} across all {c['family']} ablation comparisons: this one-factor "
                     "change tests better than the configuration it varies, which was chosen on validation "
                     "accuracy.")
    lines += paper_lines(rows, run)
    if not verdicts:
        lines.append("- No completed ablation arms to compare.")
    lines.append(f"- Holm-adjusted p-values here are those of Table 1: the family is every comparison in it "
                 f"({len(comparisons)} tests).")
    return lines


def fairness_lines(run: Run) -> list[str]:
    """Which confound each number is free of: the student's own BatchNorm statistics, the paper reconstruction's
    bracket, baselines tuned at IAKD's budget."""
    arms = set(run.trials["arm"]) if "arm" in run.trials else set()
    mode = arm_value(run, "iakd_best", "student_bn")
    if mode is None:
        stats = ("**not recorded**: this ablation predates the student_bn option, so its IAKD students kept "
                 "statistics contaminated by teacher-fed batches (hybrid mode)")
    elif mode == "clean":
        stats = ("clean (student_bn=clean: every IAKD student is evaluated with statistics of the student alone, "
                 "as deployed)")
    else:
        stats = ("**hybrid** (student_bn=hybrid): the best IAKD student is evaluated with statistics that mix in "
                 "teacher-fed batches")
        wide = seed_table(run)
        if "student_bn_clean" in wide and "iakd_best" in wide:
            pair = wide[["iakd_best", "student_bn_clean"]].dropna()
            if len(pair) and (pair["iakd_best"] == pair["student_bn_clean"]).all():
                stats += (f" — but its clean-statistics arm student_bn_clean ends with identical test accuracy on "
                          f"all {len(pair)} seeds, so the mode changes nothing measurable here")
            else:
                stats += "; the student_bn_clean arm (Table 5) shows what clean statistics change"
    bracket = [a for a in ("iakd_paper_final_student", "iakd_paper_student_ce", "paper_student_bn_hybrid",
                           "paper_bn_recalibration") if a in arms]
    paper = ("a reconstruction (the paper's method details are not available), bracketed by "
             f"{', '.join(bracket)}" if bracket else "a reconstruction, **not bracketed** in this run")
    budget = run.manifest.get("sweep_budget")
    kd_budget = (run.manifest.get("tuned_budgets") or {}).get("kd")
    if "kd_tuned" in arms and kd_budget is not None and kd_budget == budget:
        tuned = f"KD tuned by its own sweep of the same budget as the IAKD sweep ({budget} trials)"
    elif "kd_tuned" in arms:
        tuned = (f"KD tuned by its own sweep of **{kd_budget} trials against the IAKD sweep's {budget}**: not an "
                 "equal budget" if kd_budget is not None else "KD tuned by its own sweep (budget not recorded)")
    else:
        tuned = ("**KD at literature values only**: the IAKD search also tuned a KD term, so comparisons with KD "
                 "favour IAKD (run the study with a KD sweep: kd_tuned)")
    return ["- What these numbers are free of:", f"    - student BatchNorm statistics: {stats};",
            f"    - the paper default: {paper};", f"    - baselines: {tuned}."]


def paper_lines(rows: pd.DataFrame, run: Run) -> list[str]:
    """The paper reconstruction and its bracket vs the student alone."""
    out = []
    for arm in ("iakd_paper_default", "iakd_paper_final_student", "iakd_paper_student_ce"):
        line = versus_line(rows, arm, "student", arm_label(run, arm), "the student alone")
        if line:
            out.append(line)
    return out


def sensitivity_section(s: Sensitivity, h: str = "##") -> list[str]:
    out = [f"{h} Can this setting detect an effect?", ""]
    if s.control is None:
        out.append("- Positive control (KD vs the student alone): not run (an arm is missing).")
    else:
        c = s.control
        out.append(f"- Positive control, KD vs the student alone: Δ = {c['delta']:+.2f} points (95 % CI "
                   f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], Holm-adjusted {p_is(c['p_holm'])}, "
                   f"n = {int(c['n'])} "
                   f"seeds): **{'passes' if s.control_passes else 'FAILS'}** (needs the CI above 0 and "
                   f"p < {ALPHA}).")
    if s.teacher_test_acc is not None and s.student_test_acc is not None:
        out.append(f"- Teacher {s.teacher_test_acc:.2f} % test vs the student alone {s.student_test_acc:.2f} % "
                   f"(gap {s.teacher_test_acc - s.student_test_acc:+.2f} points).")
    if s.chance is not None:
        out.append(f"- Chance accuracy {s.chance:.0f} %.")
    if len(s.detectable):
        out += ["", f"Smallest true paired difference vs the student that a two-sided paired t-test detects at "
                f"α = {ALPHA} with power {POWER} (statsmodels), from each comparison's observed standard deviation "
                "of paired differences; and the 95 % CI half-width achieved:", ""]
        table = s.detectable.rename(columns={"arm": "comparison", "sd": "sd of paired Δ",
                                             "mde": "min. detectable Δ", "ci_halfwidth": "95 % CI half-width"})
        table["comparison"] = table["comparison"] + " − student"
        out.append(md_table(table.round(3)))
    out.append("")
    out += [f"- **Warning**: {w}." for w in s.warnings] or [
        f"- No warnings: the positive control passes and the comparisons the verdict rests on "
        f"({', '.join(VERDICT_ARMS)} vs the student, where run) are resolved to ±{CI_HALFWIDTH:g} points; any "
        "other comparison is resolved as the table shows, and its verdict says when it is too wide to conclude."]
    return out + [""]


SWEEP_FIGURES = Path("figures") / "sweep"  # an ablation report's copy of its sweep's figures


def figure_links(folder: Path, report_dir: Path) -> list[str]:
    """Each figure in ``folder`` (inside the report's folder) as an image with its caption."""
    out = []
    for p in sorted(folder.glob("*.png")):
        caption = CAPTIONS.get(p.stem, p.stem.replace("_", " "))
        out += [f"![{p.stem}]({p.relative_to(report_dir).as_posix()})", "", f"*Figure: {caption}*", ""]
    return out


def scheduler_words(scheduler: str, settings: dict) -> str:
    """The sweep's scheduler with what decides (a promoting sweep: its short runs and its promotion rule)."""
    if scheduler != "promote" or not settings.get("short_epochs"):
        return f"{scheduler} scheduler"
    rule = (f"the top 1/{settings['reduction_factor']:g} of each bracket of {settings['bracket']} trials"
            if settings.get("bracket") else f"those above Ray's running cut-off (1/{settings['reduction_factor']:g})")
    return (f"promote scheduler (complete {settings['short_epochs']}-epoch runs, {rule} trained to "
            f"{settings['max_epochs']} epochs)")


def search_line(options: SearchOptions, settings: dict) -> str:
    """How the sweep searched, from its recorded options and settings."""
    line = (f"Search: {options.sampler} sampler, {scheduler_words(options.scheduler, settings)}, seed "
            f"{options.seed}, objective ")
    if options.objective == "acc+cost":
        return line + ("val accuracy (max) and training seconds (min), two-objective; the best config below is "
                       "the most accurate, the Pareto figure shows the trade-off.")
    return line + "val accuracy (max)."


def stopped_by(scheduler: str) -> str:
    """What the sweep's PRUNED trials are, in words."""
    if scheduler == "promote":
        return "not promoted (stopped after their complete short run)"
    return f"stopped early by {'ASHA' if scheduler == 'asha' else 'the ' + scheduler + ' scheduler'}"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} %"


def sweep_section(run: Run, title: str, report_dir: Path, figures: Path, h: str = "##") -> list[str]:
    info, top = sweep_summary(run)
    teacher = info["teacher"]
    wall = f"{info['wall_seconds'] / 60:.1f} min" if info["wall_seconds"] else "n/a"
    out = [f"{h} {title}", "",
           f"Run `{run.name}`: budget {info['budget']}, {info['complete']} complete (full fidelity), "
           f"{info['pruned']} {stopped_by(run.options.scheduler)}, {info['failed']} failed; "
           f"sweep wall time {wall}. Teacher "
           f"{teacher.get('arch', '?')}: val {pct(teacher.get('val_acc'))}, test {pct(teacher.get('test_acc'))}"
           f"{' (outside weights: ' + teacher['source'] + ')' if teacher.get('source') else ''}.", "",
           search_line(run.options, run.manifest.get("settings", {})), "",
           f"Best full-fidelity config (by val accuracy): {info['best'] or 'none'}.", "",
           "Top trials (COMPLETE, val accuracy %):", "", md_table(top), ""]
    out += rung_section(run, h + "#")
    out += compatibility_section(run, h + "#")
    out += figure_links(figures, report_dir)
    return out


def rung_section(run: Run, h: str = "###") -> list[str]:
    """How well the sweep's rungs rank its trials (analysis/rungs.py), with a warning where a rung would cut a
    final top trial."""
    table = rung_reliability(run)
    if not len(table):
        return []
    settings = rung_settings(run) or {}
    scheduler = run.options.scheduler
    rungs = (f"rung: the end of each trial's complete {settings['short_epochs']}-epoch run (iteration "
             f"{settings['short_epochs']}; the full run follows as iterations {settings['short_epochs'] + 1}–"
             f"{trial_iterations(settings)})" if settings.get("short_epochs") else
             f"rungs: epochs {', '.join(map(str, table['rung epoch']))} of {settings.get('max_epochs')}")
    out = [f"{h} Rung reliability", "",
           f"The {scheduler} sweep's {rungs}, keeping the top 1/{settings.get('reduction_factor')}: over "
           f"{measured_on(run)}, Spearman's ρ of the value at each rung with the final value, and the share "
           f"of the final top {TOP_K} whose value at the rung clears the cut-off the finished sweep would apply "
           "(pruned trials count). See the learning-curve figure.", "",
           md_table(table.round(3).assign(p=table["p"].map(fmt_p))), ""]
    out += [f"- **Warning**: {w}." for w in rung_warnings(run, table)]
    return out + [""]


def compatibility_section(run: Run, h: str = "##") -> list[str]:
    """The teacher-unit compatibility of the shown runs (tables.compatibility_runs), from the epochs table."""
    table = compatibility_table(run)
    if not len(table):
        return []
    size = run.manifest.get("base_config", {}).get("compat_size", "?")
    units = [c for c in table.columns if c.startswith("unit")]
    shown = ("the iakd_best, iakd_best_swapping (if any) and iakd_paper_default arms (mean over seeds)"
             if run.kind == "ablation" else
             "the sweep's best trial")

    def span(row: pd.Series) -> str:
        present = [c for c in units if row[c] == row[c]]
        best, worst = max(present, key=lambda c: row[c]), min(present, key=lambda c: row[c])
        return (f"{row[worst]:.1f}–{row[best]:.1f} % (best: {best}, worst: {worst}) against "
                f"{row['student alone']:.1f} % for the student alone")

    title = "Teacher-unit compatibility" + ("" if run.kind == "ablation" else " of the sweep's best trial")
    lines = [f"{h} {title}", "",
             f"How well each teacher unit accepts the student's features: accuracy on the first {size} "
             f"validation images (eval mode) of the hybrid with exactly one teacher unit swapped in, for "
             f"{shown}; the teacher alone reaches {table['teacher alone'].iloc[-1]:.1f} %.", ""]
    for name, part in table.groupby("run", sort=False):
        first, last = part.iloc[0], part.iloc[-1]
        text = f"- {name}: at epoch {int(last['epoch'])}, {span(last)}"
        if len(part) > 1:
            text += f"; at epoch {int(first['epoch'])}, {span(first)}"
        lines.append(text + ".")
    return lines + ["", md_table(table), ""]


def environment_section(run: Run, commands: list[str], h: str = "##") -> list[str]:
    m = run.manifest
    v = ", ".join(f"{k} {val}" for k, val in m.get("versions", {}).items())
    mach = m.get("machine", {})
    return [f"{h} Environment and how to regenerate", "",
            f"- versions: {v}", f"- machine: {mach.get('cpus')} CPUs, CUDA: {mach.get('cuda')}, "
            f"{mach.get('platform')}", f"- git commit: {commit_line(m.get('git_commit'))}",
            f"- dataset: {m.get('dataset', {}).get('name')} (train {m.get('dataset', {}).get('train')}, val "
            f"{m.get('dataset', {}).get('val')}, checksum {m.get('dataset', {}).get('checksum')})", "",
            "Commands (in order):", "", "```bash", *commands, "```", ""]


def commit_line(commit: str | None) -> str:
    if commit and commit.endswith("+dirty"):
        return (f"{commit} — **warning: the working tree had uncommitted changes when this ran, so this commit "
                "alone may not reproduce it**")
    return str(commit)


def portable(command: str) -> str:
    """A recorded command with absolute paths made relative: to this checkout's root, or (a path of the machine
    that made it) from its ``results/`` folder on, where every run lives."""
    root = f"{CHECKOUT_ROOT}/"
    words = []
    for word in command.split(" "):
        if word.startswith(root):
            word = word[len(root):]
        elif word.startswith("/") and "/results/" in word:
            word = word[word.index("/results/") + 1:]
        words.append(word)
    return " ".join(words)


def run_commands(run: Run) -> list[str]:
    """The commands that made ``run`` with portable paths: for an ablation, its sweep's and its tuned baselines'
    sweeps' first, then its own, then its seed top-ups."""
    sources = [source_sweep(run), *(source_sweep(run, path) for path in
                                    run.manifest.get("tuned_sweeps", {}).values()), run]
    return [portable(f"python study/{source.manifest.get('command', '')}") for source in sources
            if source is not None] + [portable(f"python study/{top['command']}") + commit_note(top, run)
                                      for top in run.manifest.get("top_ups", [])]


def commit_note(top_up: dict, run: Run) -> str:
    """``  # at commit …`` for a top-up made by other code than the run it tops up (recorded since top-ups were)."""
    commit = top_up.get("git_commit")
    if commit is None:
        return "   # commit not recorded (needs a checkout with run_ablation.py --more-seeds)"
    return f"   # at commit {commit}" if commit != run.manifest.get("git_commit") else ""


def seeds_text(run: Run) -> str:
    """An ablation's seeds: those of every arm, then each topped-up group of arms' further seeds."""
    text = f"seeds {run.manifest.get('seeds', [])}"
    groups: dict[tuple[int, ...], list[str]] = {}
    for arm, more in run.manifest.get("more_seeds", {}).items():
        groups.setdefault(tuple(more), []).append(arm)
    for more, arms in groups.items():
        text += f"; {', '.join(arms)} also seeds {more[0]}–{more[-1]} (n = {len(run.manifest['seeds']) + len(more)})"
    return text


def source_sweep(run: Run, source: str | None = None) -> Run | None:
    """The sweep an ablation came from (or ``source``, a path recorded in its manifest): at its recorded path, else
    beside the ablation (a moved/cloned folder)."""
    source = source or (run.manifest.get("source_sweep") if run.kind == "ablation" else None)
    if not source:
        return None
    # recorded relative to the ablation folder (older runs: absolute); else a sibling of the same name
    for candidate in (run.path / source, Path(source), run.path.parent / Path(source).name):
        try:
            return load_run(candidate)
        except NotARunError:
            continue
    return None


def ablation_sections(run: Run, report_dir: Path, figures: Path, sweep_figures: Path, h: str = "##",
                      with_table1: bool = True) -> list[str]:
    """Everything an ablation's report says about its one setting: sensitivity, conclusion, Table 1 (unless a
    study report shows it across settings), anchors, Tables 2-5, compatibility, figures, the sweep summary."""
    sweep = source_sweep(run)
    comparisons = method_comparisons(run)
    sensitivity = assess(run, comparisons)
    lines = []
    if run.manifest.get("source_sweep_status", "complete") != "complete":
        lines += [f"**The sweep behind this ablation had not finished its budget** (status "
                  f"{run.manifest['source_sweep_status']!r}); its best configuration may not be the best of "
                  "the full search (run with --allow-incomplete).", ""]
    lines += sensitivity_section(sensitivity, h)
    lines += [f"{h} Conclusion", ""] + conclusion(run, comparisons, sensitivity) + [""]
    if with_table1:
        lines += [f"{h} Table 1 — methods", "",
                  f"Test accuracy, mean ± std (n seeds) over {seeds_text(run)}; Δ with 95 % t-interval; paired t-test "
                  f"p; Holm correction across all comparisons of the table. {PAIRED_NOTE}", "",
                  md_table(table1(run)), ""]
        if best_uses_kd(run) and "iakd_best_plus_kd" not in set(run.trials["arm"]):
            lines += ["The best IAKD configuration already has a KD term, so iakd_best is also the best + KD "
                      "(no separate iakd_best_plus_kd arm).", ""]
    anchors = anchors_for(run)
    lines += [f"{h}# Published anchor numbers", ""]
    if len(anchors):
        lines += ["Same setting as published (CIFAR-100 top-1 %; IAKD's own paper numbers are not available "
                  "here: n/a).", "", md_table(anchors), ""]
    else:
        lines += ["No published numbers exist for this setting (published anchors cover the CIFAR-100 "
                  "presets only); IAKD's own paper numbers: n/a.", ""]
    for number, (factor, title) in enumerate(ABLATION_TABLES, 2):
        table = comparisons_vs_best(run, factor)
        if len(table) or factor != "paper":  # (the paper table exists only in runs that have its arms)
            lines += [f"{h} Table {number} — {title} ablation", "", md_table(table), ""]
            if table.attrs.get("footnote"):
                lines += [table.attrs["footnote"], ""]
    lines += paper_section(run, h)
    lines += student_statistics_section(run, h)
    lines += compatibility_section(run, h)
    lines += figure_links(figures, report_dir) + [""]
    if sweep is not None:
        lines += sweep_section(sweep, "Sweep summary", report_dir, sweep_figures, h) + [""]
    return lines


PAPER_ASSUMPTIONS = ("constant swap probability p = 0.5 all through training", "one swap unit per stage",
                     "each unit swapped independently per batch (Bernoulli), all units alike",
                     "cross-entropy on the hybrid's output only (no KD term, no student-only pass)",
                     "swapped-in teacher units normalise with the teacher's running statistics", "no BN recalibration")
STUDENT_BN_ASSUMPTION = {
    "clean": "the student's statistics from the student alone (student_bn=clean)",
    "hybrid": "the student's statistics as the hybrid sees them (student_bn=hybrid)",
    None: "the student's statistics as the hybrid saw them (this run predates the student_bn option)"}


def paper_section(run: Run, h: str = "##") -> list[str]:
    """What the paper-default arm assumes, and the readings that bracket it (when the run has them)."""
    arms = set(run.trials["arm"]) if "arm" in run.trials else set()
    if "iakd_paper_default" not in arms:
        return []
    out = [f"{h} The paper default is a reconstruction", "",
           "The paper's method details could not be read here (only its abstract), so `iakd_paper_default` is this "
           "harness's reading of it. It assumes:", ""]
    out += [f"- {a}" for a in (*PAPER_ASSUMPTIONS,
                               STUDENT_BN_ASSUMPTION[arm_value(run, "iakd_paper_default", "student_bn")])]
    bracket = [a for a in ("iakd_paper_final_student", "iakd_paper_student_ce", "paper_student_bn_hybrid",
                           "paper_bn_recalibration") if a in arms]
    if bracket:
        out += ["", "Readings that bracket it (same seeds):", ""]
        out += [f"- `{a}`: {arm_label(run, a)}" for a in bracket]
    return out + [""]


def student_statistics_section(run: Run, h: str = "##") -> list[str]:
    """Validation accuracy with the student's running statistics vs after a student-only recalibration, at the
    last epoch, per IAKD arm: how far each arm's statistics are from the student's own."""
    table = student_statistics_table(run)
    if not len(table):
        return []
    return [f"{h} The student's BatchNorm statistics", "",
            "Validation accuracy at the last epoch with the student's running statistics (as evaluated) and after "
            "recomputing them on 32 student-only training batches (a diagnostic copy; training is untouched), mean "
            "over seeds. A large gap means the running statistics are not the student's own.", "",
            md_table(table), ""]


def setting_line(run: Run) -> str:
    cfg = run.manifest.get("base_config", {})
    return (f"{cfg.get('dataset')}, teacher {cfg.get('teacher')} → student {cfg.get('student')}, "
            f"{cfg.get('epochs')} epochs")


PROTOCOL = ("All accuracies are top-1 %. Sweep and selection use the validation split carved from the official "
            "training set; the official test set is used once per ablation trial, at the end.")
SWEEP_PROTOCOL = ("All accuracies are top-1 % on the validation split carved from the official training set; a sweep "
                  "never touches the official test set (its ablation does, once per trial).")


def build_report(run: Run) -> str:
    protocol = PROTOCOL if run.kind == "ablation" else SWEEP_PROTOCOL
    lines = [f"# IAKD report — {run.name}", "", f"Setting: {setting_line(run)}. {protocol}", ""]
    if run.kind == "ablation":
        lines += ablation_sections(run, run.path, run.path / "figures", run.path / SWEEP_FIGURES)
    else:
        lines += sweep_section(run, "Sweep summary", run.path, run.path / "figures") + [""]
    lines += environment_section(run, [*run_commands(run), "python analysis/plots.py",
                                       f"python analysis/report.py {display_path(run.path, CHECKOUT_ROOT)}"])
    return "\n".join(lines)


def setting_labels(runs: list[Run]) -> list[str]:
    """A short name per setting: its preset, or the run's folder name where presets repeat or are unknown."""
    presets = [r.manifest.get("preset") for r in runs]
    return [p if p and presets.count(p) == 1 else r.name for p, r in zip(presets, runs, strict=True)]


def study_report(runs: list[Run], out: Path) -> str:
    """One report over several ablation runs (settings): Table 1 methods x settings, the differences with CIs and
    Holm-adjusted p per setting, then each setting's own sections. Figures are drawn into ``out``."""
    labels = setting_labels(runs)
    named = dict(zip(labels, runs, strict=True))
    report_command = ("python analysis/report.py " + " ".join(display_path(r.path, CHECKOUT_ROOT) for r in runs)
                      + f" --out {display_path(out, CHECKOUT_ROOT)}")
    lines = [f"# IAKD study report — {len(runs)} settings", "", PROTOCOL, "", "Settings:", ""]
    lines += [f"- **{label}**: {setting_line(run)}; {seeds_text(run)} (run `{run.name}`)"
              for label, run in named.items()]
    lines += ["", "## Table 1 — methods × settings", "",
              "Test accuracy, mean ± std (n seeds); the teacher is one trained network (n = 1); the best "
              "student-side mean of each setting in bold: the highest mean, not a tested winner (arms ran different "
              "numbers of seeds, and not every pair is tested; the tested differences follow).", "",
              md_table(methods_by_setting(named)), "",
              "### Table 1 — differences", "",
              "Per setting: Δ vs the student alone and vs KD with the 95 % t-interval, paired t-test p, and Holm "
              f"correction across that setting's comparisons (one family per setting). {PAIRED_NOTE}", ""]
    diffs = []
    for label, run in named.items():
        t = table1(run)
        t["setting"] = label
        diffs.append(t)
    lines += [md_table(pd.concat(diffs, ignore_index=True)), ""]
    for label, run in named.items():
        figures = out / "figures" / label
        lines += [f"## Setting {label}: {setting_line(run)}", ""]
        lines += ablation_sections(run, out, figures, figures / "sweep", h="###", with_table1=False)
    commands = [c for run in runs for c in run_commands(run)] + [report_command]
    lines += environment_section(runs[0], commands)  # versions and machine: those of the first setting's run
    return "\n".join(lines)


def captions_once(text: str) -> str:
    """A figure caption the report already printed (the same figure kind in another setting) becomes a pointer to
    the first one."""
    seen: set[str] = set()
    lines = []
    for line in text.split("\n"):
        if line.startswith("*Figure: ") and line in seen:
            line = "*Figure: as described above (same figure kind).*"
        elif line.startswith("*Figure: "):
            seen.add(line)
        lines.append(line)
    return "\n".join(lines)


def _toc_lines(tokens: list[dict], depth: int = 0) -> list[str]:
    out = []
    for t in tokens:
        if t["level"] > 1:
            out.append(f"{'    ' * depth}- [{t['name']}](#{t['id']})")  # (4 spaces: Python-Markdown nests only those)
        out += _toc_lines(t["children"], depth + (t["level"] > 1))
    return out


def with_contents(text: str) -> str:
    """The report with a table of contents after its title: links to the anchors the HTML gives each heading
    (Python-Markdown's ``toc`` ids; repeated titles get ``_1``, ``_2``)."""
    parser = markdown.Markdown(extensions=["toc"], extension_configs={"toc": {"toc_depth": "2-3"}})
    parser.convert(text)
    toc = _toc_lines(parser.toc_tokens)
    if not toc:
        return text
    title, _, rest = text.partition("\n")
    return "\n".join([title, "", "**Contents**", "", *toc, rest])


STYLE = ("body{font-family:sans-serif;font-size:16px;max-width:60em;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;display:block;overflow-x:auto;font-size:90%}"
         "td,th{border:1px solid #ccc;padding:2px 6px}"
         "img{display:block;width:100%;max-width:52em;height:auto}"  # one display width: one font size
         "pre{white-space:pre-wrap;overflow-wrap:anywhere}code{overflow-wrap:anywhere}")


def write_html(text: str, md_path: Path, title: str) -> Path:
    text = with_contents(captions_once(text))
    write_text(md_path, text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "toc"])
    html_path = md_path.with_suffix(".html")
    write_text(html_path, f"<!doctype html><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style>"
                          f"{body}")
    return html_path


def write_report(run: Run) -> tuple[Path, Path]:
    """report.md + report.html in the run folder, every figure they show inside it (an ablation's report draws
    its sweep's figures into ``figures/sweep/``): the folder can be copied or mailed alone."""
    plot_run(run)
    sweep = source_sweep(run)
    if sweep is not None:
        plot_run(sweep, run.path / SWEEP_FIGURES)
    md_path = run.path / "report.md"
    return md_path, write_html(build_report(run), md_path, run.name)


def write_study_report(runs: list[Run], out: Path) -> tuple[Path, Path]:
    """report.md + report.html over several ablation runs in ``out``, with every figure under ``out/figures/``
    (one folder per setting, its sweep's figures in ``sweep/`` below it)."""
    out.mkdir(parents=True, exist_ok=True)
    for label, run in zip(setting_labels(runs), runs, strict=True):
        plot_run(run, out / "figures" / label)
        sweep = source_sweep(run)
        if sweep is not None:
            plot_run(sweep, out / "figures" / label / "sweep")
    md_path = out / "report.md"
    return md_path, write_html(study_report(runs, out), md_path, f"IAKD study: {len(runs)} settings")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="run", help="a run folder (ablation or sweep); several ablation "
                   "folders (one per setting) make one study report")
    p.add_argument("--out", type=Path, help="several runs: the folder for report.md/.html and figures/ "
                   "(default: the runs' common parent folder)")
    args = p.parse_args(argv)
    try:
        runs = [load_run(path) for path in args.runs]
    except NotARunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if len(runs) == 1 and args.out is None:
        md_path, html_path = write_report(runs[0])
    else:
        not_ablations = [r.name for r in runs if r.kind != "ablation"]
        if not_ablations:
            print(f"error: a study report combines ablation runs; {', '.join(not_ablations)} "
                  f"{'is a sweep' if len(not_ablations) == 1 else 'are sweeps'} (give its ablation folder)",
                  file=sys.stderr)
            return 2
        out = args.out or Path(os.path.commonpath([r.path.resolve() for r in runs]))
        md_path, html_path = write_study_report(runs, out)
    print(f"wrote {md_path} and {html_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
