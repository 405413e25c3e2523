#!/usr/bin/env python
"""Ablate a sweep's best IAKD config: baselines and one-factor-at-a-time variants on fresh seeds, each evaluated
once on the official test set.

    python study/run_ablation.py results/sweeps/<run>             # 3 seeds, every arm
    python study/run_ablation.py results/sweeps/<run> --seeds 5 --arms student,kd,iakd_best
    python study/run_ablation.py --resume results/ablations/<run>

Writes results/ablations/<sweep name>-ablation/ (trials.parquet with arm, factor, seed, test_acc, …; epochs.parquet;
manifest.json). Seeds are <sweep seed> + 1000 + i: never a seed the sweep trained with.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iakd_core.cli import fail  # noqa: E402
from study.run_sweep import OneLineParser, positive_int, writable_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", nargs="?", help="the sweep run folder whose best config is ablated")
    p.add_argument("--seeds", type=positive_int, default=5,
                   help="seeds per arm (default 5: enough for a paired 95 %% CI of about ±0.5 points on the "
                   "laptop preset)")
    p.add_argument("--arms", help="comma-separated subset of arms (default: all that apply)")
    p.add_argument("--name", help="run name (default <sweep name>-ablation)")
    p.add_argument("--output-dir", default="results/ablations", help="where run folders go")
    p.add_argument("--concurrency", type=positive_int, help="trials at once (default: the sweep's)")
    p.add_argument("--cpus-per-trial", type=positive_int, help="CPUs per trial (default: the sweep's)")
    p.add_argument("--address", help="Ray cluster address (default: a private local Ray)")
    p.add_argument("--resume", metavar="RUN", help="finish an interrupted ablation run")
    p.add_argument("--data-root", default="data", help="dataset folder (default data)")
    p.add_argument("--teacher-cache", default="results/teachers", help="teacher cache folder")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    if args.resume:
        run_dir = Path(args.resume)
        manifest_path = run_dir / "manifest.json"
        if not manifest_path.is_file() or json.loads(manifest_path.read_text()).get("kind") != "ablation":
            fail(f"{run_dir} is not an ablation run folder (no ablation manifest.json in it)")
        from study.ablation_run import resume_ablation

        return resume_ablation(run_dir.resolve(), args)
    if not args.sweep:
        fail("give the sweep run folder to ablate (or --resume an ablation run)")
    sweep_dir = Path(args.sweep).resolve()
    try:
        sweep_manifest = json.loads((sweep_dir / "manifest.json").read_text())
        best = json.loads((sweep_dir / "best_config.json").read_text())
    except (OSError, ValueError):
        fail(f"{sweep_dir} is not a finished sweep run folder (needs manifest.json and best_config.json)")
    if sweep_manifest.get("kind") != "sweep":
        fail(f"{sweep_dir} is not a sweep run folder")
    from study.ablation import ablation_arms

    arms = ablation_arms(best["config"], sweep_manifest["granularities"])
    if args.arms:
        wanted = [a.strip() for a in args.arms.split(",") if a.strip()]
        unknown = sorted(set(wanted) - set(arms))
        if unknown:
            fail(f"unknown or inapplicable arm(s) {unknown}; this sweep's arms: {', '.join(arms)}")
        arms = {a: arms[a] for a in wanted}
    run_dir = Path(args.output_dir).resolve() / (args.name or f"{sweep_dir.name}-ablation")
    if not writable_dir(run_dir.parent):
        fail(f"cannot write to {run_dir.parent}; choose another --output-dir")
    if run_dir.exists():
        fail(f"{run_dir} already exists; choose another --name, or --resume it")
    from study.ablation_run import run_ablation

    try:
        return run_ablation(run_dir, args, sweep_dir, sweep_manifest, best, arms)
    except BaseException:
        if run_dir.exists() and not (run_dir / "ray").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


if __name__ == "__main__":
    raise SystemExit(main())
