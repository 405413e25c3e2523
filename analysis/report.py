#!/usr/bin/env python
"""Write report.md and report.html for a run (an ablation run also summarises the sweep it came from).

    python analysis/report.py results/ablations/<run>
    python analysis/report.py results/sweeps/<run>

Tables: 1 (methods, paper shape), 2 (schedule), 3 (granularity), 4 (loss terms), sweep summary with the top
trials, published anchor numbers when the setting matches, the environment and the commands that regenerate
everything, and a conclusion computed from the numbers. Figures are made by analysis/plots.py and linked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import markdown
import pandas as pd

from analysis.load import NotARunError, Run, load_run
from analysis.plots import CAPTIONS, plot_run
from analysis.sensitivity import Sensitivity, assess
from analysis.stats import paired_comparison
from analysis.tables import (
    ALPHA,
    POWER,
    anchors_for,
    comparisons_vs_best,
    method_comparisons,
    seed_table,
    sweep_summary,
    table1,
)


def md_table(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False) if len(df) else "_no completed trials for this table_"


def conclusion(run: Run, comparisons: pd.DataFrame, sensitivity: Sensitivity) -> list[str]:
    """The verdicts, quoting Table 1's Holm-adjusted p-values; every sensitivity warning comes first."""
    lines = [f"- **Warning**: {w}." for w in sensitivity.warnings]
    if sensitivity.warnings:
        lines.append("- Read every verdict below with the warning(s) above in mind.")
    rows = comparisons.set_index(["arm", "reference"])
    for ref, name in (("student", "the student trained alone"), ("kd", "conventional KD")):
        if ("iakd_best", ref) not in rows.index:
            continue
        c = rows.loc[("iakd_best", ref)]
        p = c["p_holm"]
        if p != p:
            verdict = "cannot be tested (fewer than 2 paired seeds)"
        elif p < ALPHA:
            verdict = f"significantly {'better' if c['delta'] > 0 else 'worse'} (Holm-adjusted p = {p:.3f})"
        else:
            verdict = f"not significantly different (Holm-adjusted p = {p:.3f}, α = {ALPHA})"
        lines.append(f"- The best IAKD configuration vs {name}: Δ = {c['delta']:+.2f} points "
                     f"(95 % CI [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], n = {int(c['n'])} seeds): {verdict}.")
    wide = seed_table(run)
    if "iakd_best" in wide and "no_swap" in wide:
        pair = wide[["iakd_best", "no_swap"]].dropna()
        c = paired_comparison(pair["iakd_best"], pair["no_swap"])
        lines.append(f"- Swapping itself (best vs the same config with p = 0): Δ = {c['delta']:+.2f} points, "
                     f"paired t-test p = {c['p_ttest']:.3f} (unadjusted; Table 2 gives its Holm-adjusted p), "
                     f"n = {c['n']} seeds.")
    if len(lines) == len(sensitivity.warnings) + bool(sensitivity.warnings):
        lines.append("- No completed ablation arms to compare.")
    lines.append(f"- Holm-adjusted p-values here are those of Table 1: the family is every comparison in it "
                 f"({len(comparisons)} tests).")
    return lines


def sensitivity_section(s: Sensitivity) -> list[str]:
    out = ["## Can this setting detect an effect?", ""]
    if s.control is None:
        out.append("- Positive control (KD vs the student alone): not run (an arm is missing).")
    else:
        c = s.control
        out.append(f"- Positive control, KD vs the student alone: Δ = {c['delta']:+.2f} points (95 % CI "
                   f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], Holm-adjusted p = {_p(c['p_holm'])}, n = {int(c['n'])} "
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
    out += [f"- **Warning**: {w}." for w in s.warnings] or ["- No warnings: the comparisons below can detect "
                                                            "effects of the sizes shown."]
    return out + [""]


def _p(p: float) -> str:
    return "n/a" if p != p else f"{p:.3f}"


SWEEP_FIGURES = Path("figures") / "sweep"  # an ablation report's copy of its sweep's figures


def figure_links(folder: Path, report_dir: Path) -> list[str]:
    """Each figure in ``folder`` (inside the report's folder) as an image with its caption."""
    out = []
    for p in sorted(folder.glob("*.png")):
        caption = CAPTIONS.get(p.stem, p.stem.replace("_", " "))
        out += [f"![{p.stem}]({p.relative_to(report_dir).as_posix()})", "", f"*Figure: {caption}*", ""]
    return out


def search_line(args: dict) -> str:
    """How the sweep searched, from its stored command-line arguments."""
    line = (f"Search: {args.get('sampler', '?')} sampler, {args.get('scheduler', '?')} scheduler, seed "
            f"{args.get('seed', '?')}, objective ")
    if args.get("objective") == "acc+cost":
        return line + ("val accuracy (max) and training seconds (min), two-objective; the best config below is "
                       "the most accurate, the Pareto figure shows the trade-off.")
    return line + "val accuracy (max)."


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} %"


def sweep_section(run: Run, title: str, report_dir: Path, figures: Path) -> list[str]:
    info, top = sweep_summary(run)
    teacher = info["teacher"]
    wall = f"{info['wall_seconds'] / 60:.1f} min" if info["wall_seconds"] else "n/a"
    out = [f"## {title}", "",
           f"Run `{run.name}`: budget {info['budget']}, {info['complete']} complete (full fidelity), "
           f"{info['pruned']} pruned by ASHA, {info['failed']} failed; sweep wall time {wall}. Teacher "
           f"{teacher.get('arch', '?')}: val {pct(teacher.get('val_acc'))}, test {pct(teacher.get('test_acc'))}"
           f"{' (outside weights: ' + teacher['source'] + ')' if teacher.get('source') else ''}.", "",
           search_line(run.manifest.get("args", {})), "",
           f"Best full-fidelity config (by val accuracy): {info['best'] or 'none'}.", "",
           "Top trials (COMPLETE, val accuracy %):", "", md_table(top), ""]
    out += figure_links(figures, report_dir)
    return out


def environment_section(run: Run, sweep: Run | None) -> list[str]:
    m = run.manifest
    v = ", ".join(f"{k} {val}" for k, val in m.get("versions", {}).items())
    mach = m.get("machine", {})
    lines = ["## Environment and how to regenerate", "",
             f"- versions: {v}", f"- machine: {mach.get('cpus')} CPUs, CUDA: {mach.get('cuda')}, "
             f"{mach.get('platform')}", f"- git commit: {m.get('git_commit')}",
             f"- dataset: {m.get('dataset', {}).get('name')} (train {m.get('dataset', {}).get('train')}, val "
             f"{m.get('dataset', {}).get('val')}, checksum {m.get('dataset', {}).get('checksum')})", "",
             "Commands (in order):", "", "```bash"]
    for source in (sweep, run):
        if source is not None:
            lines.append(f"python study/{source.manifest.get('command', '')}")
    lines += ["python analysis/plots.py", f"python analysis/report.py {display_path(run.path)}", "```", ""]
    return lines


def display_path(path: Path) -> str:
    """A path relative to the project root when it lies inside it (reports stay valid in any clone)."""
    root = Path(__file__).resolve().parent.parent
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def source_sweep(run: Run) -> Run | None:
    """The sweep an ablation came from: at its recorded path, else beside the ablation (a moved/cloned folder)."""
    source = run.manifest.get("source_sweep") if run.kind == "ablation" else None
    if not source:
        return None
    # recorded relative to the ablation folder (older runs: absolute); else a sibling of the same name
    for candidate in (run.path / source, Path(source), run.path.parent / Path(source).name):
        try:
            return load_run(candidate)
        except NotARunError:
            continue
    return None


def build_report(run: Run) -> str:
    sweep = source_sweep(run)
    cfg = run.manifest.get("base_config", {})
    lines = [f"# IAKD report — {run.name}", "",
             f"Setting: {cfg.get('dataset')}, teacher {cfg.get('teacher')} → student {cfg.get('student')}, "
             f"{cfg.get('epochs')} epochs. All accuracies are top-1 %. Sweep and selection use the validation "
             "split carved from the official training set; the official test set is used once per ablation "
             "trial, at the end.", ""]
    if run.kind == "ablation":
        seeds = run.manifest.get("seeds", [])
        comparisons = method_comparisons(run)
        sensitivity = assess(run, comparisons)
        if run.manifest.get("source_sweep_status", "complete") != "complete":
            lines += [f"**The sweep behind this ablation had not finished its budget** (status "
                      f"{run.manifest['source_sweep_status']!r}); its best configuration may not be the best of "
                      "the full search (run with --allow-incomplete).", ""]
        lines += sensitivity_section(sensitivity)
        lines += ["## Conclusion", ""] + conclusion(run, comparisons, sensitivity) + [
                  "", "## Table 1 — methods", "",
                  f"Test accuracy, mean ± std (n seeds) over seeds {seeds}; Δ with 95 % t-interval; paired t-test "
                  "p; Holm correction across all comparisons of the table.", "", md_table(table1(run)), ""]
        anchors = anchors_for(run)
        lines += ["### Published anchor numbers", ""]
        if len(anchors):
            lines += ["Same setting as published (CIFAR-100 top-1 %; IAKD's own paper numbers are not available "
                      "here: n/a).", "", md_table(anchors), ""]
        else:
            lines += ["No published numbers exist for this setting (published anchors cover the CIFAR-100 "
                      "presets only); IAKD's own paper numbers: n/a.", ""]
        for number, (factor, title) in enumerate((("schedule", "schedule"), ("granularity", "granularity"),
                                                  ("loss", "loss terms and BN recalibration"),
                                                  ("teacher_bn", "BatchNorm mode of swapped-in teacher units")), 2):
            lines += [f"## Table {number} — {title} ablation", "",
                      md_table(comparisons_vs_best(run, factor)), ""]
        lines += figure_links(run.path / "figures", run.path) + [""]
        if sweep is not None:
            lines += sweep_section(sweep, "Sweep summary", run.path, run.path / SWEEP_FIGURES) + [""]
    else:
        lines += sweep_section(run, "Sweep summary", run.path, run.path / "figures") + [""]
    lines += environment_section(run, sweep)
    return "\n".join(lines)


def write_report(run: Run) -> tuple[Path, Path]:
    """report.md + report.html in the run folder, every figure they show inside it (an ablation's report draws
    its sweep's figures into ``figures/sweep/``): the folder can be copied or mailed alone."""
    plot_run(run)
    sweep = source_sweep(run)
    if sweep is not None:
        plot_run(sweep, run.path / SWEEP_FIGURES)
    text = build_report(run)
    md_path, html_path = run.path / "report.md", run.path / "report.html"
    md_path.write_text(text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    html_path.write_text(f"<!doctype html><meta charset='utf-8'><title>{run.name}</title>"
                         "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
                         "table{border-collapse:collapse;display:block;overflow-x:auto;font-size:90%}"
                         "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style>"
                         f"{body}")
    return md_path, html_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a run folder (ablation or sweep)")
    args = p.parse_args(argv)
    try:
        run = load_run(args.run)
    except NotARunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    md_path, html_path = write_report(run)
    print(f"wrote {md_path} and {html_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
