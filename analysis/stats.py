"""Paired comparisons across seeds: mean ± std, Δ with a t-based 95 % CI, paired t-test and Wilcoxon p-values,
Holm correction. All statistics come from scipy / statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests


def mean_std(values) -> tuple[float, float, int]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v)


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and its t-distribution confidence interval."""
    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if len(v) < 2:
        return m, float("nan"), float("nan")
    if np.all(v == v[0]):  # no spread (e.g. two arms bit-identical on every seed): the interval is the point
        return m, m, m
    lo, hi = stats.t.interval(confidence, len(v) - 1, loc=m, scale=stats.sem(v))
    return m, float(lo), float(hi)


def paired_comparison(a, b, confidence: float = 0.95) -> dict[str, float]:
    """a - b on paired seeds: mean Δ, its CI, the std of the paired differences, paired t-test p, Wilcoxon
    signed-rank p."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    delta, lo, hi = mean_ci(d, confidence)
    sd = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    if len(d) < 2:
        p_t = float("nan")
    elif np.allclose(d, d[0]):  # no spread (float noise aside): no t-test; identical arms, or a constant shift
        p_t = 1.0 if np.allclose(d, 0) else 0.0
    else:
        p_t = float(stats.ttest_rel(a, b).pvalue)
    p_w = float(stats.wilcoxon(a, b).pvalue) if len(d) >= 2 and np.any(d != 0) else float("nan")
    return {"delta": delta, "ci_low": lo, "ci_high": hi, "sd": sd, "p_ttest": p_t, "p_wilcoxon": p_w, "n": len(d)}


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values (NaN stays NaN)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def fmt_mean_std(values) -> str:
    m, s, n = mean_std(values)
    return f"{m:.2f} ± {s:.2f} (n={n})" if not math.isnan(s) else f"{m:.2f} (n={n})"


def fmt_delta(c: dict[str, float]) -> str:
    if math.isnan(c["ci_low"]):
        return f"{c['delta']:+.2f}"
    return f"{c['delta']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"


def paired_table(wide: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """``arm - reference`` for each pair on the seeds both completed (``wide``: one column per arm, one row per
    seed); ``p_holm`` = Holm across all rows (the family is the table)."""
    rows = []
    for arm, reference in pairs:
        if arm in wide and reference in wide:
            pair = wide[[arm, reference]].dropna()
            rows.append({"arm": arm, "reference": reference, **paired_comparison(pair[arm], pair[reference])})
    df = pd.DataFrame(rows, columns=["arm", "reference", "delta", "ci_low", "ci_high", "sd", "p_ttest",
                                     "p_wilcoxon", "n"])
    df["p_holm"] = holm(df["p_ttest"]) if len(df) else []
    return df


def seeds_for_halfwidth(sd: float, halfwidth: float, confidence: float = 0.95, most: int = 200) -> int | None:
    """Fewest seeds n whose paired t-interval, at the observed standard deviation ``sd`` of paired differences, is
    at most ``halfwidth`` wide on each side (t_{n-1} · sd / √n ≤ halfwidth); None beyond ``most``."""
    if not sd == sd or sd <= 0:
        return 2
    for n in range(2, most + 1):
        if stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n) <= halfwidth:
            return n
    return None


def minimum_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true paired difference a two-sided paired t-test on ``n`` seeds detects with ``power`` at ``alpha``,
    given the paired differences' standard deviation ``sd`` (statsmodels' t-test power)."""
    from statsmodels.stats.power import TTestPower

    if n < 2 or not sd == sd or sd <= 0:
        return float("nan")
    effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(effect) * sd
