#!/usr/bin/env python
"""P4: search efficiency at equal budget. TPE + ASHA vs random search + FIFO, each over several sweep seeds.

    python bench/bench_search.py [--preset laptop] [--budget 24] [--seeds 3] [--output-dir DIR] [--equal-compute]

Runs, for each sweep seed, one `study/run_sweep.py` per strategy (paired: both strategies see the same seed,
the strategies alternate so an interrupted run still holds whole pairs). Prints, per strategy, the best
full-fidelity (COMPLETE) val accuracy of each seed and its mean, the trial-epochs used and the wall time; then
the mean paired difference of the bests and the ratio of trial-epochs (TPE+ASHA / random+FIFO). Goal:
TPE+ASHA mean best >= random+FIFO mean best and fewer trial-epochs; exits 1 if missed. Long: 2 x seeds sweeps
(about 15 min per seed on 2 cores at the defaults). Rerunning with the same --output-dir reuses the sweeps
that finished and runs only the missing ones.

It also prints, for information, how well ASHA's rungs predict the final accuracy (Spearman's rho over the
fully trained random+FIFO trials). --equal-compute adds, for information (not part of the goal), TPE+ASHA at
equal *compute*: per seed, a sweep with budget / (measured trial-epochs ratio) trials, so it spends about the
trial-epochs random+FIFO spent.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from iakd_core.console import fail

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = (("tpe", "asha"), ("random", "fifo"))


def sweep(preset: str, budget: int, seed: int, sampler: str, scheduler: str, out: Path,
          tag: str = "") -> tuple[pd.DataFrame, float]:
    """Run one sweep (or reuse a finished one in ``out``); return its trials table and wall seconds."""
    run = out / f"{sampler}-{scheduler}{tag}-s{seed}"
    manifest = run / "manifest.json"
    saved = json.loads(manifest.read_text()) if manifest.exists() else None
    if saved is not None and saved.get("budget") != budget:
        fail(f"{run} was run with another budget; use another --output-dir")
    if saved is None or saved.get("status") != "complete":
        if run.exists():
            fail(f"{run} holds an unfinished sweep; delete it or resume it with study/run_sweep.py --resume {run}")
        subprocess.run([sys.executable, str(ROOT / "study" / "run_sweep.py"), "--preset", preset, "--budget",
                        str(budget), "--seed", str(seed), "--sampler", sampler, "--scheduler", scheduler,
                        "--output-dir", str(out), "--name", run.name], check=True, cwd=ROOT)
        saved = json.loads(manifest.read_text())
    return pd.read_parquet(run / "trials.parquet"), float(saved["wall_seconds"])


def rung_fidelity(out: Path, seeds: int) -> str:
    """How well ASHA's rungs predict the final result: Spearman's rho between val accuracy at each rung epoch and
    at the last epoch, over the fully trained random+FIFO trials."""
    from scipy.stats import spearmanr

    runs = [out / f"random-fifo-s{seed}" for seed in range(seeds)]
    settings = json.loads((runs[0] / "manifest.json").read_text())["settings"]
    epochs = pd.concat([pd.read_parquet(r / "epochs.parquet").assign(run=r.name) for r in runs])
    acc = epochs.pivot_table(index=["run", "trial_id"], columns="epoch", values="val_acc")
    last, rung, parts = settings["max_epochs"], settings["grace_epochs"], []
    while rung < last:
        rho = spearmanr(acc[rung], acc[last]).statistic
        parts.append(f"epoch {rung} vs {last}: rho {rho:.2f}")
        rung *= settings["reduction_factor"]
    return f"ASHA rung fidelity over {len(acc)} fully trained random+FIFO trials: " + ", ".join(parts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="laptop")
    p.add_argument("--budget", type=int, default=24)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--output-dir", type=Path, default=None,
                   help="folder for the sweeps (default results/bench/search-<time>); reused if it exists")
    p.add_argument("--equal-compute", action="store_true",
                   help="also run TPE+ASHA with as many trials as match random+FIFO's trial-epochs (information)")
    args = p.parse_args()
    out = args.output_dir or ROOT / "results" / "bench" / f"search-{time.strftime('%Y%m%d-%H%M%S')}"
    rows = []

    def add(strategy: str, budget: int, seed: int, t: pd.DataFrame, wall: float) -> None:
        rows.append({"strategy": strategy, "budget": budget, "seed": seed,
                     "best": float(t.loc[t["status"] == "COMPLETE", "val_acc_last"].max()),
                     "complete": int((t["status"] == "COMPLETE").sum()),
                     "trial_epochs": int(t["epochs"].sum()), "wall_s": wall})

    for seed in range(args.seeds):
        for sampler, scheduler in STRATEGIES:
            add(f"{sampler}+{scheduler}", args.budget, seed,
                *sweep(args.preset, args.budget, seed, sampler, scheduler, out))
    by = {s: g.set_index("seed") for s, g in pd.DataFrame(rows).groupby("strategy")}
    tpe, rnd = by["tpe+asha"], by["random+fifo"]
    if args.equal_compute:
        n = math.ceil(args.budget * rnd["trial_epochs"].sum() / tpe["trial_epochs"].sum())
        for seed in range(args.seeds):
            add(f"tpe+asha n={n}", n, seed, *sweep(args.preset, n, seed, "tpe", "asha", out, tag=f"-n{n}"))
    df = pd.DataFrame(rows)
    df.to_csv(out / "p4.csv", index=False)
    print(df.to_string(index=False))
    for name, g in df.groupby("strategy", sort=False):
        print(f"{name}: best per seed {[round(b, 2) for b in g['best']]}, mean {g['best'].mean():.2f}, "
              f"trial-epochs {g['trial_epochs'].sum()}, wall {g['wall_s'].sum() / 60:.1f} min")
    diff = (tpe["best"] - rnd["best"]).tolist()
    ratio = tpe["trial_epochs"].sum() / rnd["trial_epochs"].sum()
    ok = statistics.mean(diff) >= 0 and ratio < 1
    print(f"P4 best (TPE+ASHA - random+FIFO) = {statistics.mean(diff):+.2f} points (per seed "
          f"{[round(d, 2) for d in diff]}); trial-epochs ratio {ratio:.3f}; wall ratio "
          f"{tpe['wall_s'].sum() / rnd['wall_s'].sum():.3f} ({'met' if ok else 'MISSED'})")
    print(rung_fidelity(out, args.seeds) + " (information)")
    if args.equal_compute:
        eq = df[df["strategy"].str.startswith("tpe+asha n=")].set_index("seed")
        print(f"equal compute (information): TPE+ASHA with {eq['budget'].iloc[0]} trials - random+FIFO = "
              f"{(eq['best'] - rnd['best']).mean():+.2f} points (per seed "
              f"{[round(d, 2) for d in (eq['best'] - rnd['best'])]}); trial-epochs ratio "
              f"{eq['trial_epochs'].sum() / rnd['trial_epochs'].sum():.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
