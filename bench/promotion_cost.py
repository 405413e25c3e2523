#!/usr/bin/env python
"""What a promoting sweep would have cost with another reduction factor: each recorded sweep's short-run results
replayed, in the order they arrived, through Ray's own scheduler (study.replay.check_recorded) built with each
reduction factor. No training: seconds.

    python bench/promotion_cost.py results/sweeps/<run> [more runs] [--rf 3 4 5 6]

Prints per run and reduction factor the trials promoted to full fidelity and the trial-epochs (short runs plus
promoted full runs) as a ratio to FIFO's. At the recorded factor the replay reproduces the sweep's own decisions
(checked and printed); at the others it is an estimate, because a sampler such as TPE would have proposed other
configurations after other results. Why it matters (bench/README.md, P1): under TPE the proposals improve, so more
of them clear the running cut-off than 1/rf.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from analysis.manifest import options
from iakd_core.console import OneLineParser, fail


def promotions(run: Path, rf: float) -> tuple[int, int, int]:
    """(trials, promoted, trial-epochs) of the run's short-run results replayed with reduction factor ``rf``."""
    from study.replay import check_recorded

    manifest = json.loads((run / "manifest.json").read_text())
    settings = manifest["settings"]
    trials, epochs = pd.read_parquet(run / "trials.parquet"), pd.read_parquet(run / "epochs.parquet")
    short = settings["short_epochs"]
    short_runs = epochs[epochs["epoch"] <= short]  # what a trial reports up to the promotion decision
    table = check_recorded(trials, short_runs, {**manifest, "settings": {**settings, "reduction_factor": rf}})
    promoted = int(table["replayed"].isna().sum())  # not stopped at the rung: it would have gone on
    return len(table), promoted, len(table) * short + promoted * settings["max_epochs"]


def main() -> int:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="finished promoting sweep folders")
    p.add_argument("--rf", nargs="+", type=float, default=[3, 4, 5, 6], help="reduction factors to replay")
    args = p.parse_args()
    rows = []
    for run in args.runs:
        try:
            manifest = json.loads((run / "manifest.json").read_text())
        except (OSError, ValueError) as err:
            fail(f"{run} is not a sweep folder ({err})")
        if options(manifest).scheduler != "promote":
            fail(f"{run} is not a promoting sweep (scheduler {options(manifest).scheduler}): nothing to replay")
        trials = pd.read_parquet(run / "trials.parquet")
        recorded = int((trials["status"] == "COMPLETE").sum())
        fifo = len(trials) * manifest["settings"]["max_epochs"]
        for rf in args.rf:
            n, promoted, trial_epochs = promotions(run, rf)
            rows.append({"run": run.name, "sampler": options(manifest).sampler, "trials": n, "rf": rf,
                         "promoted": promoted, "trial_epochs_vs_fifo": round(trial_epochs / fifo, 3),
                         "recorded_promoted": recorded if rf == manifest["settings"]["reduction_factor"] else None})
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
