#!/usr/bin/env python
"""What a promoting sweep would have cost with another reduction factor: each recorded sweep's short-run results
replayed, in the order they arrived, through Ray's own scheduler (study.replay.check_recorded) built with each
reduction factor. No training: seconds.

    python bench/promotion_cost.py results/sweeps/<run> [more runs] [--rf 3 4 5 6]

Prints per run and reduction factor the trials promoted to full fidelity and the trial-epochs (short runs plus
promoted full runs) as a ratio to FIFO's. At the recorded factor the replay must reproduce the sweep's own
decisions (``matches_recorded``: trials whose replayed decision is the recorded one); at the others it is an
estimate, because a sampler such as TPE would have proposed other configurations after other results. Why it
matters (bench/README.md, P1): under TPE the proposals improve, so more of them clear the running cut-off than 1/rf.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from analysis.manifest import options
from iakd_core.console import OneLineParser, fail


def promotions(run: Path, rf: float) -> tuple[pd.Series, int]:
    """Per trial whether the run's short-run results, replayed with reduction factor ``rf``, promote it; and the
    trial-epochs that would cost (short runs plus promoted full runs)."""
    from study.replay import check_recorded

    manifest = json.loads((run / "manifest.json").read_text())
    settings = manifest["settings"]
    trials, epochs = pd.read_parquet(run / "trials.parquet"), pd.read_parquet(run / "epochs.parquet")
    short = settings["short_epochs"]
    short_runs = epochs[epochs["epoch"] <= short]  # what a trial reports up to the promotion decision
    table = check_recorded(trials, short_runs, {**manifest, "settings": {**settings, "reduction_factor": rf}})
    promoted = table["replayed"].isna()  # not stopped at the rung: it would have gone on
    return promoted, len(table) * short + int(promoted.sum()) * settings["max_epochs"]


def main() -> int:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="finished promoting sweep folders")
    p.add_argument("--rf", nargs="+", type=float, default=[3, 4, 5, 6], help="reduction factors to replay")
    args = p.parse_args()
    rows = []
    for run in args.runs:
        try:
            manifest = json.loads((run / "manifest.json").read_text())
            searched = options(manifest)
        except (OSError, ValueError) as err:  # (a ManifestError is a ValueError: a newer contract)
            fail(f"{run} is not a sweep folder this code can read ({err})")
        if searched.scheduler != "promote":
            fail(f"{run} is not a promoting sweep (scheduler {searched.scheduler}): nothing to replay")
        trials = pd.read_parquet(run / "trials.parquet").set_index("trial_id")
        settings = manifest["settings"]
        for rf in args.rf:
            promoted, trial_epochs = promotions(run, rf)
            row = {"run": run.name, "sampler": searched.sampler, "trials": len(promoted), "rf": rf,
                   "promoted": int(promoted.sum()),
                   "trial_epochs_vs_fifo": round(trial_epochs / (len(promoted) * settings["max_epochs"]), 3)}
            if rf == settings["reduction_factor"]:  # the sweep's own factor: the replay must match its decisions
                recorded = trials.loc[promoted.index, "status"].eq("COMPLETE")
                row["matches_recorded"] = f"{int((recorded == promoted).sum())}/{len(promoted)}"
            rows.append(row)
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
