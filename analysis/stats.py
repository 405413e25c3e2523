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
    lo, hi = stats.t.interval(confidence, len(v) - 1, loc=m, scale=stats.sem(v))
    return m, float(lo), float(hi)


def paired_comparison(a, b, confidence: float = 0.95) -> dict[str, float]:
    """a - b on paired seeds: mean Δ, its CI, paired t-test p, Wilcoxon signed-rank p."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    delta, lo, hi = mean_ci(d, confidence)
    if len(d) < 2 or np.allclose(d, d[0]):
        p_t = float("nan") if len(d) < 2 else (1.0 if d[0] == 0 else 0.0)
    else:
        p_t = float(stats.ttest_rel(a, b).pvalue)
    p_w = float(stats.wilcoxon(a, b).pvalue) if len(d) >= 2 and np.any(d != 0) else float("nan")
    return {"delta": delta, "ci_low": lo, "ci_high": hi, "p_ttest": p_t, "p_wilcoxon": p_w, "n": len(d)}


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


def paired_table(trials: pd.DataFrame, arms: list[str], reference: str, metric: str = "test_acc") -> pd.DataFrame:
    """Each arm vs ``reference`` on the seeds both completed; Holm across the rows."""
    wide = trials.pivot_table(index="seed", columns="arm", values=metric)
    rows = []
    for arm in arms:
        if arm not in wide or reference not in wide:
            continue
        pair = wide[[arm, reference]].dropna()
        c = paired_comparison(pair[arm], pair[reference])
        rows.append({"arm": arm, "reference": reference, **c})
    df = pd.DataFrame(rows)
    if len(df):
        df["p_holm"] = holm(df["p_ttest"])
    return df
