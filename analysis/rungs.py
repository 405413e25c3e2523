"""How well a sweep's early-stopping rungs rank its trials, from its own files (scipy for the statistics).

ASHA compares trials at its rungs (``summaries.rung_epochs``) and stops all but the top 1/reduction_factor there.
That is only sound when a trial's value at a rung ranks it as its final value would. For every rung, over the
trials that reached full fidelity (every trial of a FIFO sweep; the survivors of an ASHA sweep):

* Spearman's rho between the value at the rung and the final value;
* top-k recall: the share of the final top k whose value at the rung clears that rung's cut-off, the value a trial
  needs to be in the top 1/reduction_factor of every trial that reached the rung (the cut-off the finished sweep
  would apply; pruned trials count, since ASHA compared against them);
* the final top-k trials the rung would cut now, which the report turns into a warning with what to pass instead.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from .load import Run
from .summaries import rung_epochs, trial_iterations

TOP_K = 3


def rung_settings(run: Run) -> dict | None:
    """The sweep's scheduler settings (None for runs that record none)."""
    settings = run.manifest.get("settings") or {}
    needed = ("max_epochs", "grace_epochs", "reduction_factor")
    return settings if all(k in settings for k in needed) else None


def hedge_trials(run: Run) -> set[str]:
    """The trials of a hedged ASHA sweep's unpruned bracket (``bracket`` 1; study/schedulers.py): an unbiased
    sample for the rungs' reliability, since no rung decided whether they reach full fidelity. Empty otherwise."""
    t = run.trials
    return set(t.loc[t["bracket"] == 1, "trial_id"]) if "bracket" in t else set()


def measured_on(run: Run) -> str:
    """Which trials the reliability is measured on, in words."""
    if hedge_trials(run):
        return "the trials of the hedge bracket (never stopped early, so not selected by the rungs they judge)"
    return "the trials that reached full fidelity"


def curves(run: Run) -> pd.DataFrame:
    """trial_id x epoch -> validation accuracy (every trial, pruned ones included)."""
    e = run.epochs
    if not len(e) or "val_acc" not in e:
        return pd.DataFrame()
    return e.pivot_table(index="trial_id", columns="epoch", values="val_acc")


def rung_reliability(run: Run, k: int = TOP_K) -> pd.DataFrame:
    """One row per rung: epoch, n (trials at full fidelity), spearman, p, kept (share of all trials that reached
    the rung which its cut-off keeps), top-k recall, and the final top-k trial numbers the rung would cut."""
    settings = rung_settings(run)
    wide = curves(run)
    columns = ["rung epoch", "n", "spearman", "p", f"top-{k} recall", "would cut"]
    if settings is None or not len(wide):
        return pd.DataFrame(columns=columns)
    top = trial_iterations(settings)
    final = wide[top].dropna() if top in wide else pd.Series(dtype=float)
    hedge = hedge_trials(run)
    if hedge:
        final = final[final.index.isin(hedge)]
    number = run.trials.set_index("trial_id")["trial_number"] if "trial_number" in run.trials else None
    rows = []
    for rung in rung_epochs(settings):
        if rung not in wide:
            continue
        reached = wide[rung].dropna()
        keep = max(1, math.floor(len(reached) / settings["reduction_factor"]))
        cutoff = reached.nlargest(keep).min() if len(reached) else math.nan
        both = pd.concat([wide.loc[final.index, rung], final], axis=1, keys=["rung", "final"]).dropna()
        rho, p = stats.spearmanr(both["rung"], both["final"]) if len(both) >= 3 else (math.nan, math.nan)
        best = both["final"].nlargest(min(k, len(both)))
        cut = [t for t in best.index if both.loc[t, "rung"] < cutoff]
        rows.append({"rung epoch": rung, "n": len(both), "spearman": rho, "p": p,
                     f"top-{k} recall": (len(best) - len(cut)) / len(best) if len(best) else math.nan,
                     "would cut": ", ".join(str(int(number[t])) if number is not None else t for t in cut)})
    return pd.DataFrame(rows, columns=columns)


def rung_warnings(run: Run, table: pd.DataFrame | None = None) -> list[str]:
    """One warning per rung that would cut a final top trial, with what to pass instead."""
    table = rung_reliability(run) if table is None else table
    settings = rung_settings(run) or {}
    fifo = run.options.scheduler == "fifo"
    out = []
    for row in table.to_dict("records"):
        if row["would cut"]:
            later = [r for r in rung_epochs(settings) if r > row["rung epoch"]]
            if settings.get("short_epochs"):  # promotion: a longer complete short run, still below the full one
                longer = min(2 * settings["short_epochs"], settings["max_epochs"] - 1)
                first = f"--short-epochs {longer}" if longer > settings["short_epochs"] else "a longer short run"
            else:
                first = f"--grace-epochs {later[0]}" if later else "a later first rung"
            what = (f"keep --scheduler fifo (ASHA with this rung would have misled), or try {first}" if fifo else
                    f"for a search whose result matters pass {first} or --scheduler fifo")
            out.append(f"the rung at epoch {row['rung epoch']} would cut final top-{TOP_K} trial(s) "
                       f"{row['would cut']} (Spearman ρ {row['spearman']:.2f} with the final value over "
                       f"{row['n']} trials): {what}")
    return out
