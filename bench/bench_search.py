#!/usr/bin/env python
"""P4: search efficiency at equal budget. TPE + ASHA vs random search + FIFO, each over several sweep seeds.

    python bench/bench_search.py [--preset laptop] [--budget 24] [--seeds 3]

Prints, per strategy, the best full-fidelity val accuracy of each seed and its mean, and the trial-epochs used;
then the ratio of trial-epochs (TPE+ASHA / random+FIFO). Goal: TPE+ASHA mean best >= random+FIFO mean best and
fewer trial-epochs. Exits 1 if the goal is missed. Long: 2 x seeds sweeps.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def sweep(preset: str, budget: int, seed: int, sampler: str, scheduler: str, out: Path) -> pd.DataFrame:
    name = f"{sampler}-{scheduler}-s{seed}"
    subprocess.run([sys.executable, str(ROOT / "study" / "run_sweep.py"), "--preset", preset, "--budget",
                    str(budget), "--seed", str(seed), "--sampler", sampler, "--scheduler", scheduler,
                    "--output-dir", str(out), "--name", name], check=True, cwd=ROOT)
    return pd.read_parquet(out / name / "trials.parquet")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="laptop")
    p.add_argument("--budget", type=int, default=24)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    out = ROOT / "results" / "bench" / f"search-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = {}
    for sampler, scheduler in (("tpe", "asha"), ("random", "fifo")):
        bests, epochs = [], 0
        for seed in range(args.seeds):
            t = sweep(args.preset, args.budget, seed, sampler, scheduler, out)
            bests.append(float(t.loc[t["status"] == "COMPLETE", "val_acc_last"].max()))
            epochs += int(t["epochs"].sum())
        summary[(sampler, scheduler)] = (bests, epochs)
        print(f"{sampler}+{scheduler}: best per seed {[round(b, 2) for b in bests]}, mean "
              f"{statistics.mean(bests):.2f}, trial-epochs {epochs}")
    (tb, te), (rb, re_) = summary[("tpe", "asha")], summary[("random", "fifo")]
    ratio = te / re_
    ok = statistics.mean(tb) >= statistics.mean(rb) and ratio < 1
    print(f"P4 best (TPE+ASHA - random+FIFO) = {statistics.mean(tb) - statistics.mean(rb):+.2f} points; "
          f"trial-epochs ratio {ratio:.3f} ({'met' if ok else 'MISSED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
