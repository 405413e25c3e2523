#!/usr/bin/env python
"""How much of the paper reconstruction's gap to the student is the student's BatchNorm statistics?

Trains, on each preset and seed, the student alone and the paper reconstruction (constant p = 0.5, one unit per
stage, CE on the hybrid) with the student's statistics clean (``student_bn=clean``, the default) and as the hybrid
sees them (``hybrid``, the behaviour before the option existed); each evaluated once on the test set. Prints per
arm the test accuracy and, at the last epoch, the validation accuracy with the running statistics and after a
student-only recalibration, then the paired differences (95 % t-interval) that answer the question.

    python bench/probe_student_bn.py                              # laptop and laptop-wrn, seeds 1000-1002
    python bench/probe_student_bn.py --presets laptop --seeds 5 --workers 2 --out probe.csv
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

ARMS = {"student": {"method": "student"}, "paper_clean": {"method": "iakd", "student_bn": "clean"},
        "paper_hybrid": {"method": "iakd", "student_bn": "hybrid"}}


def config(preset: str, arm: str, seed: int, teacher_cache: str) -> dict:
    from iakd_core.presets import preset_config

    overrides = dict(ARMS[arm])
    method = overrides.pop("method")
    return preset_config(preset, method, seed=seed, evaluate_test=True, teacher_cache=teacher_cache, threads=1,
                         **overrides)


def one(job: tuple[str, str, int, str]) -> dict:
    preset, arm, seed, cache = job
    from iakd_core import run_trial

    history = []
    start = time.perf_counter()
    final = run_trial(config(preset, arm, seed, cache), history.append)
    last = history[-1]
    return {"preset": preset, "arm": arm, "seed": seed, "test_acc": final["test_acc"], "val_acc": last["val_acc"],
            "val_acc_recal": last.get("val_acc_recal"), "train_acc": last["train_acc"],
            "seconds": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="laptop,laptop-wrn")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--teacher-cache", default="results/teachers")
    p.add_argument("--out", type=Path, default=Path("results/probe_student_bn.csv"))
    args = p.parse_args()
    presets = [x for x in args.presets.split(",") if x]
    import torch

    from iakd_core.config import TrialConfig
    from iakd_core.teacher import get_teacher

    torch.set_num_threads(os.cpu_count() or 1)
    for preset in presets:  # every teacher trained (or found) once, on every core, before the trials
        get_teacher(TrialConfig.from_dict(config(preset, "paper_clean", 0, args.teacher_cache)))
    jobs = [(preset, arm, 1000 + i, args.teacher_cache) for preset in presets for i in range(args.seeds)
            for arm in ARMS]
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for row in pool.map(one, jobs):
            rows.append(row)
            print(f"{row['preset']} {row['arm']} seed {row['seed']}: test {row['test_acc']:.2f} val "
                  f"{row['val_acc']:.2f} recal {row['val_acc_recal']} ({row['seconds']:.0f}s)", flush=True)
    df = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    from analysis.stats import paired_comparison

    for preset, part in df.groupby("preset", sort=False):
        wide = part.pivot(index="seed", columns="arm", values="test_acc")
        print(f"\n{preset}: test accuracy, mean over {len(wide)} seeds")
        print(part.groupby("arm", sort=False)[["test_acc", "val_acc", "val_acc_recal", "train_acc"]].mean()
              .round(2).to_string())
        for a, b in (("paper_clean", "student"), ("paper_hybrid", "student"), ("paper_clean", "paper_hybrid")):
            c = paired_comparison(wide[a], wide[b])
            print(f"  {a} - {b}: {c['delta']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] (p {c['p_ttest']:.3f})")


if __name__ == "__main__":
    main()
