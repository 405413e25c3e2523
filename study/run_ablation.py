#!/usr/bin/env python
"""Ablate a sweep's best IAKD config: baselines and one-factor-at-a-time variants on fresh seeds, each evaluated
once on the official test set.

    python study/run_ablation.py results/sweeps/<run>             # the preset's seeds (laptop 5), every arm
    python study/run_ablation.py results/sweeps/<run> --seeds 5 --arms student,kd,iakd_best
    python study/run_ablation.py --resume results/ablations/<run>
    python study/run_ablation.py --resume results/ablations/<run> --more-seeds 20   # the key arms' seeds + 20

Writes results/ablations/<sweep name>-ablation/ (trials.parquet with arm, factor, seed, test_acc, …; epochs.parquet;
manifest.json; trials/ records). Seeds are <sweep seed> + 1000 + i: never a seed the sweep trained with. Ctrl-C or
SIGTERM stops it (exit 130); --resume runs only the (arm, seed) trials that have not finished. --more-seeds N
(with --resume) gives the arms the verdict rests on (student, kd, kd_tuned, iakd_best, iakd_best_swapping where
the run has them, or --arms) N more seeds each, the next after their last, and runs them: the way to reach a CI
the first seeds could not (the report says how many a comparison needs from its observed spread).
"""

from __future__ import annotations

from iakd_core.console import guard_startup

guard_startup("before any trial")  # Ctrl-C while the imports below load torch and Ray: one line, exit 130

import argparse
import json
import os
import sys
from pathlib import Path

from analysis.manifest import options
from iakd_core.cli import check_output_dir
from iakd_core.console import OneLineParser, did_you_mean, fail, positive_int
from iakd_core.files import write_json
from iakd_core.presets import DEFAULT_SEEDS, STUDY_PRESETS, ablation_seeds
from study.cli import MLFLOW_DEFAULT, exit_now, private_ray_environment, run_command

SEED_OFFSET = 1000  # ablation seeds = sweep seed + SEED_OFFSET + i: never a seed the sweep trained with


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", nargs="?", help="the sweep run folder whose best config is ablated")
    p.add_argument("--seeds", type=positive_int,
                   help="seeds per arm (default: the sweep's preset's, enough for a paired 95 %% CI of about ±0.5 "
                   f"points vs the student: {', '.join(f'{p} {ablation_seeds(p)}' for p in STUDY_PRESETS)}; "
                   f"{DEFAULT_SEEDS} for others)")
    p.add_argument("--arms", help="comma-separated subset of arms (default: all that apply; --list-arms shows them)")
    p.add_argument("--list-arms", action="store_true",
                   help="print the arms that apply to this sweep (factor, compared with, label) and exit")
    p.add_argument("--tuned", action="append", default=[], metavar="SWEEP",
                   help="a finished sweep of a baseline method (run_sweep.py --method kd) on the same setting: "
                   "adds the arm <method>_tuned, its best config on the ablation's seeds (repeatable)")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="ablate a sweep that did not finish its budget (the report says so)")
    p.add_argument("--name", help="run name (default <sweep name>-ablation)")
    p.add_argument("--output-dir", default="results/ablations", help="where run folders go")
    p.add_argument("--concurrency", type=positive_int, help="trials at once (default: the sweep's)")
    p.add_argument("--cpus-per-trial", type=positive_int, help="CPUs per trial (default: the sweep's)")
    p.add_argument("--mlflow", nargs="?", const=MLFLOW_DEFAULT, default=None, metavar="URI",
                   help="also log every trial to MLflow (optional extra: pip install -e '.[mlflow]'); without URI "
                        "a SQLite store mlflow.db in the run folder (write --mlflow=URI before the sweep folder)")
    p.add_argument("--address", help="Ray cluster address (default: a private local Ray)")
    p.add_argument("--resume", metavar="RUN", help="finish an interrupted ablation run")
    p.add_argument("--more-seeds", type=positive_int, metavar="N",
                   help="with --resume: N more seeds for the key arms (student, kd, kd_tuned, iakd_best, "
                   "iakd_best_swapping where the run has them) or for --arms, then run them")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the sweep's)")
    p.add_argument("--teacher-cache", default=None, help="teacher cache folder (default: the sweep's)")
    return p


# What a tuned baseline's sweep must share with the IAKD sweep: the data, the pair, the fidelity and the
# optimisation recipe it was not asked to search.
SAME_SETTING = ("dataset", "train_size", "val_size", "split_seed", "image_size", "teacher", "student", "epochs",
                "teacher_epochs", "teacher_train_size", "batch_size", "lr_schedule", "lr_milestones", "lr_gamma",
                "momentum", "nesterov")


def tuned_best(path: Path, sweep: dict, read_manifest) -> tuple[str, dict, int]:
    """(method, best config, budget) of a finished baseline sweep on the IAKD sweep's setting; else one line,
    exit 2."""
    manifest = read_manifest(path, "sweep")
    method = options(manifest).method
    if method == "iakd":
        fail(f"--tuned {path} is an IAKD sweep; give a baseline's sweep (run_sweep.py --method kd)")
    if manifest.get("status") != "complete":
        fail(f"--tuned {path} has not finished its budget: resume it with run_sweep.py --resume {path}")
    ours, theirs = sweep["base_config"], manifest["base_config"]
    differs = [f"{k} {theirs.get(k)!r} vs {ours.get(k)!r}" for k in SAME_SETTING if ours.get(k) != theirs.get(k)]
    if options(manifest).search_optimizer != options(sweep).search_optimizer:
        differs.append("--search-optimizer in one sweep only")
    if differs:
        fail(f"--tuned {path} was run on another setting ({', '.join(differs)}); tune the baseline on the IAKD "
             "sweep's preset with the same search options")
    try:
        best = json.loads((path / "best_config.json").read_text())
    except (OSError, ValueError):
        fail(f"--tuned {path} has no COMPLETE trial, so no best configuration")
    return method, best["config"], int(manifest["budget"])


def add_seeds(run_dir: Path, count: int, arms: str | None, read_manifest) -> None:
    """Top an ablation run up with ``count`` more seeds for its key arms (or ``arms``), written to its manifest
    before anything runs; a bad request changes nothing (one line, exit 2)."""
    from study.ablation import KEY_ARMS, top_up
    from study.tables import git_commit

    manifest = read_manifest(run_dir, "ablation")
    wanted = [a.strip() for a in arms.split(",") if a.strip()] if arms else [a for a in KEY_ARMS
                                                                             if a in manifest["arms"]]
    unknown = [a for a in wanted if a not in manifest["arms"]]
    if not wanted:
        fail(f"{run_dir.name} has none of the key arms ({', '.join(KEY_ARMS)}); name the arms to top up with --arms "
             f"(its arms: {', '.join(manifest['arms'])})")
    if unknown:
        fail(f"--arms {','.join(unknown)}: not an arm of {run_dir.name}{did_you_mean(unknown[0], manifest['arms'])}; "
             f"its arms: {', '.join(manifest['arms'])}")
    seeds = top_up(manifest, wanted, count, " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), git_commit())
    manifest["status"] = "interrupted"  # until its new seeds have run: a kill before then leaves it resumable
    write_json(run_dir / "manifest.json", manifest)
    print(f"{run_dir.name}: {', '.join(wanted)} get seeds {seeds[0]}-{seeds[-1]} ({count} each); budget now "
          f"{manifest['budget']}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    private_ray_environment(args.address, args.resume)  # before anything below imports Ray
    from study.ablation import ABLATION, ablation_arms, arm_facts
    from study.runner import launch, read_manifest, resume, with_added_keys

    if args.more_seeds and not args.resume:
        fail("--more-seeds adds seeds to a finished or interrupted ablation: give it with --resume RUN")
    if args.resume and args.more_seeds:
        add_seeds(Path(args.resume).resolve(), args.more_seeds, args.arms, read_manifest)
    if args.resume:
        return resume(ABLATION, Path(args.resume).resolve(), args.address, args.data_root, args.teacher_cache)
    if not args.sweep:
        fail("give the sweep run folder to ablate (or --resume an ablation run)")
    sweep_dir = Path(args.sweep).resolve()
    sweep = read_manifest(sweep_dir, "sweep")
    if sweep.get("status") != "complete" and not args.allow_incomplete:
        fail(f"{sweep_dir} has not finished its budget (status {sweep.get('status')!r}): resume it with "
             f"run_sweep.py --resume {args.sweep}, or pass --allow-incomplete")
    if options(sweep).method != "iakd":
        fail(f"{sweep_dir} is a sweep of {options(sweep).method!r}; ablate an IAKD sweep and pass this one as "
             f"--tuned {args.sweep}")
    try:
        best = json.loads((sweep_dir / "best_config.json").read_text())
    except (OSError, ValueError):
        fail(f"{sweep_dir} has no COMPLETE (full-fidelity) trial, so there is no best configuration to ablate")
    best["config"] = with_added_keys(best["config"])
    tuned, tuned_budgets = {}, {}
    for path in args.tuned:
        method, config, budget = tuned_best(Path(path).resolve(), sweep, read_manifest)
        if method in tuned:
            fail(f"--tuned names two sweeps of {method!r}; give one per method")
        tuned[method], tuned_budgets[method] = config, budget
    swapping = (best.get("best_swapping") or {}).get("config")
    swapping = with_added_keys(swapping) if swapping else None
    arms = ablation_arms(best["config"], sweep["granularities"], tuned, swapping)
    if args.list_arms:
        for arm in arms:
            factor, versus, label = arm_facts(arm)
            print(f"{arm:<28} {factor:<12} {'vs ' + versus if versus else '':<24} {label}")
        return 0
    if args.arms:
        wanted = [a.strip() for a in args.arms.split(",") if a.strip()]
        unknown = sorted(set(wanted) - set(arms))
        if unknown:
            fail(f"unknown or inapplicable arm(s) {unknown}{did_you_mean(unknown[0], arms)}; this sweep's arms: "
                 f"{', '.join(arms)}")
        arms = {a: arms[a] for a in wanted}
    out = Path(args.output_dir)
    check_output_dir(out)
    run_dir = out.resolve() / (args.name or f"{sweep_dir.name}-ablation")
    if run_dir.exists():
        fail(f"{run_dir} already exists; choose another --name, or --resume it")
    settings = dict(sweep["settings"])
    settings["concurrency"] = args.concurrency or settings["concurrency"]
    settings["cpus_per_trial"] = args.cpus_per_trial or settings["cpus_per_trial"]
    base = {**best["config"], "threads": settings["cpus_per_trial"],
            "data_root": args.data_root or sweep["base_config"]["data_root"],
            "teacher_cache": args.teacher_cache or sweep["base_config"]["teacher_cache"]}
    seeds = [options(sweep).seed + SEED_OFFSET + i for i in range(args.seeds or ablation_seeds(sweep.get("preset")))]
    manifest = {"args": vars(args), "base_config": base, "preset": sweep.get("preset"), "seeds": seeds,
                "arms": arms, "budget": len(arms) * len(seeds), "settings": settings,
                "granularities": sweep["granularities"], "source_best": best, "address": args.address,
                "source_sweep": os.path.relpath(sweep_dir, run_dir), "source_sweep_status": sweep.get("status"),
                "tuned_sweeps": {m: os.path.relpath(Path(p).resolve(), run_dir) for m, p in
                                 zip(tuned, args.tuned, strict=True)},
                "sweep_budget": sweep.get("budget"), "tuned_budgets": tuned_budgets,
                "name": run_dir.name, "mlflow": args.mlflow}
    return launch(ABLATION, run_dir, manifest, args.address)


if __name__ == "__main__":
    exit_now(run_command(main))
