"""Can this setting detect an effect? The positive control, the smallest detectable difference, and the warnings
a conclusion must repeat. Computed from an ablation run's files (statistics from scipy/statsmodels via stats.py).

* Positive control: KD vs the student alone, from Table 1's family (same Holm-adjusted p as the table). It passes
  when the 95 % CI of the paired difference lies above 0 and the Holm-adjusted p < α.
* Minimum detectable paired difference: for each comparison vs the student, the true difference a two-sided
  paired t-test on the seeds used detects at α = 0.05 with power 0.8, from that comparison's observed standard
  deviation of paired differences; the 95 % CI half-width is the resolution actually achieved.
* Warnings: the positive control fails; the teacher is not better than the student (test accuracy); an arm is
  within 2x chance accuracy; a single seed of an otherwise learning arm ended within 2x chance (a diverged run:
  its mean and CI carry it); a comparison a verdict rests on (``VERDICT_ARMS`` vs the student) is resolved less
  finely than the seed counts aim at (``CI_HALFWIDTH``), with the seeds its observed spread needs and the command
  that adds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from iakd_core.console import display_path
from iakd_core.presets import CI_HALFWIDTH, VERDICT_ARMS

from .load import CHECKOUT_ROOT, Run
from .stats import minimum_detectable_difference, seeds_for_halfwidth
from .tables import ALPHA, POWER, method_comparisons, seed_table

CHANCE_FACTOR = 2.0


@dataclass
class Sensitivity:
    control: dict | None  # the KD - student row of Table 1's family (None: an arm is missing)
    control_passes: bool
    detectable: pd.DataFrame  # arm, n, sd, mde, ci_halfwidth (vs the student)
    teacher_test_acc: float | None
    student_test_acc: float | None
    chance: float | None
    warnings: list[str] = field(default_factory=list)


def assess(run: Run, comparisons: pd.DataFrame | None = None) -> Sensitivity:
    comparisons = method_comparisons(run) if comparisons is None else comparisons
    wide = seed_table(run)
    vs_student = comparisons[comparisons["reference"] == "student"]
    rows = vs_student[vs_student["arm"] == "kd"]
    control = rows.iloc[0].to_dict() if len(rows) else None
    passes = bool(control and control["delta"] > 0 and control["ci_low"] > 0 and control["p_holm"] < ALPHA)
    detectable = pd.DataFrame({
        "arm": vs_student["arm"], "n": vs_student["n"], "sd": vs_student["sd"],
        "mde": [minimum_detectable_difference(sd, n, ALPHA, POWER) for sd, n in zip(vs_student["sd"],
                                                                                   vs_student["n"], strict=True)],
        "ci_halfwidth": (vs_student["ci_high"] - vs_student["ci_low"]) / 2})
    teacher = run.manifest.get("teacher", {}).get("test_acc")
    student = float(wide["student"].mean()) if "student" in wide else None
    classes = run.manifest.get("dataset", {}).get("classes")
    chance = 100.0 / classes if classes else None
    warnings = []
    if control is None:
        warnings.append("no positive control: the ablation lacks the student or the KD arm, so nothing shows that "
                        "this setting can detect distillation at all")
    elif not passes:
        warnings.append(f"the positive control failed: KD vs the student alone is {control['delta']:+.2f} points "
                        f"(95 % CI [{control['ci_low']:+.2f}, {control['ci_high']:+.2f}], Holm-adjusted p = "
                        f"{control['p_holm']:.3f}); a setting in which KD is not measurably better than the student "
                        "cannot support conclusions about IAKD")
    if teacher is not None and student is not None and teacher <= student:
        warnings.append(f"the teacher ({teacher:.2f} % test) is not better than the student alone ({student:.2f} %): "
                        "there is nothing to distil")
    if chance is not None:
        low = [f"{arm} ({wide[arm].mean():.1f} %)" for arm in wide if wide[arm].mean() <= CHANCE_FACTOR * chance]
        if low:
            warnings.append(f"{', '.join(low)} within {CHANCE_FACTOR:g}x chance accuracy ({chance:.0f} %): such an "
                            "arm barely learned, and differences against it say little")
        diverged = [f"{arm} seed {seed} ({acc:.1f} %)" for arm in wide if wide[arm].mean() > CHANCE_FACTOR * chance
                    for seed, acc in wide[arm].dropna().items() if acc <= CHANCE_FACTOR * chance]
        if diverged:
            warnings.append(f"{', '.join(diverged)} ended within {CHANCE_FACTOR:g}x chance accuracy ({chance:.0f} %): "
                            "that run diverged; its arm's mean, spread and CI include it, so read that arm's row "
                            "with this in mind")
    warnings += resolution_warnings(run, detectable)
    return Sensitivity(control, passes, detectable, teacher, student, chance, warnings)


def seeds_to_resolve(run: Run, most: int) -> int:
    """Seeds per verdict arm (and the student) that resolve every verdict comparison to ±``CI_HALFWIDTH``, sized
    from the paired spread on every seed finished so far (an internal pilot: the spread alone decides, never the
    difference), at most ``most`` and at least the run's own seed count."""
    planned = len(run.manifest.get("seeds", []))
    detectable = assess(run).detectable  # the paired sd of each comparison vs the student (NaN under 2 seeds)
    sds = detectable.loc[detectable["arm"].isin(VERDICT_ARMS), "sd"].dropna()
    needs = [seeds_for_halfwidth(float(sd), CI_HALFWIDTH) or most for sd in sds]
    return max(planned, min(max(needs, default=planned), most))


def resolution_warnings(run: Run, detectable: pd.DataFrame) -> list[str]:
    """A verdict comparison whose CI is wider than ``CI_HALFWIDTH``: the seeds its spread needs, and how to add
    them (the arms alike, so they stay paired)."""
    wide = detectable[detectable["arm"].isin(VERDICT_ARMS) & (detectable["ci_halfwidth"] > CI_HALFWIDTH)]
    if not len(wide):
        return []
    needs = {arm: seeds_for_halfwidth(sd, CI_HALFWIDTH) for arm, sd in zip(wide["arm"], wide["sd"], strict=True)}
    parts = [f"{arm} − student ±{hw:.2f} (n = {n}, sd of paired Δ {sd:.2f}: ≈ "
             f"{needs[arm] if needs[arm] else 'over 200'} seeds needed)"
             for arm, hw, n, sd in zip(wide["arm"], wide["ci_halfwidth"], wide["n"], wide["sd"], strict=True)]
    most = max((n for n in needs.values() if n), default=None)
    have = int(wide["n"].min())
    present = [arm for arm in VERDICT_ARMS if arm in set(detectable["arm"])]
    add = (f"; to resolve it, `python study/run_ablation.py --resume {display_path(run.path, CHECKOUT_ROOT)} "
           f"--more-seeds {most - have}` gives the student and {', '.join(present)} that many more seeds each"
           if most and most > have else "")
    return [f"a comparison the verdict rests on is resolved less finely than the ±{CI_HALFWIDTH} points the seed "
            f"counts aim at (95 % CI half-width): {'; '.join(parts)}; its verdict can miss effects of that size"
            + add]
