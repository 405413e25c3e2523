#!/usr/bin/env python
"""Does the fast precision change accuracy? The preset's student and KD arms, trained in fp32 and in bf16 on the
same seeds, through ``iakd_core.run_trial``; prints each run and the paired bf16 - fp32 difference with its 95 % CI.

    python bench/bench_accuracy_precision.py [--preset laptop] [--seeds 3] [--workers 2]

The teacher is trained (or loaded from the cache) first with every core; then runs go ``--workers`` at a time,
one thread each, like the sweep's trials. The verdict "inside the noise" means the CI of the paired difference
contains 0 and the mean difference is smaller than the seed-to-seed standard deviation of fp32 itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
from scipy import stats

from iakd_core.config import TrialConfig
from iakd_core.presets import preset_config
from iakd_core.teacher import get_teacher
from iakd_core.trial import run_trial

SEED_OFFSET = 2000  # seeds no ablation or sweep uses


def one(job: tuple[str, str, str, int]) -> dict:
    preset, method, precision, seed = job
    metrics = run_trial(preset_config(preset, method, precision=precision, seed=seed, evaluate_test=True, threads=1))
    return {"method": method, "precision": metrics["precision"], "asked": precision, "seed": seed,
            "val_acc": metrics["val_acc"], "test_acc": metrics["test_acc"],
            "images_per_second": round(metrics["images_per_second"])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="laptop")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    get_teacher(TrialConfig.from_dict(preset_config(args.preset, "kd")))
    jobs = [(args.preset, m, prec, SEED_OFFSET + s) for s in range(args.seeds) for m in ("student", "kd")
            for prec in ("fp32", "bf16")]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = []
        for row in pool.map(one, jobs):
            print(row, flush=True)
            rows.append(row)
    runs = pd.DataFrame(rows)
    if (runs.loc[runs["asked"] == "bf16", "precision"] != "bf16").any():
        print("note: bf16 was asked but not used (no native bf16 here?)", file=sys.stderr)
    print()
    failed = False
    for metric in ("val_acc", "test_acc"):
        wide = runs.pivot_table(index=["method", "seed"], columns="asked", values=metric)
        for method, part in wide.groupby(level="method"):
            diff = (part["bf16"] - part["fp32"]).to_numpy()
            sd_fp32 = float(np.std(part["fp32"], ddof=1))
            mean = float(diff.mean())
            half = float(stats.t.ppf(0.975, len(diff) - 1) * stats.sem(diff)) if len(diff) > 1 else float("nan")
            inside = abs(mean) <= half and abs(mean) <= sd_fp32
            failed |= not inside
            print(f"{metric} {method}: fp32 {part['fp32'].mean():.2f} +- {sd_fp32:.2f}, bf16 {part['bf16'].mean():.2f}"
                  f" +- {np.std(part['bf16'], ddof=1):.2f} (n={len(diff)}); bf16 - fp32 {mean:+.2f} "
                  f"[{mean - half:+.2f}, {mean + half:+.2f}] -> "
                  f"{'inside the noise' if inside else 'OUTSIDE the noise'}")
    speed = runs.groupby(["method", "asked"])["images_per_second"].mean().unstack()
    print("\ntrain img/s per run (1 thread, 2 at once):\n" + speed.round(0).to_string())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
