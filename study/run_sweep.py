#!/usr/bin/env python
"""Sweep IAKD configurations: Optuna samples, Ray Tune runs, ASHA stops weak trials early.

    python study/run_sweep.py --budget 64                 # the default (laptop) preset, local Ray
    python study/run_sweep.py --resume results/sweeps/laptop-20261201-101500
    python study/run_sweep.py --preset cifar100-resnet56-resnet20 --address auto --gpus-per-trial 0.5

Writes one run folder (trials.parquet, epochs.parquet, manifest.json, best_config.json, optuna.db, ray/).
Open the study with: optuna-dashboard sqlite:///<run>/optuna.db
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python study/run_sweep.py` from a checkout

from iakd_core.cli import fail  # noqa: E402
from iakd_core.config import ConfigError, TrialConfig  # noqa: E402
from iakd_core.presets import DEFAULT_PRESET, PRESETS, preset_config  # noqa: E402
from iakd_core.units import IncompatiblePairError, architecture_granularities  # noqa: E402

SAMPLERS = ("tpe", "random", "qmc")
SCHEDULERS = ("asha", "fifo")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage dump -> the project's one-line error, exit 2
        fail(message)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=positive_int, default=64, help="number of trials (default 64)")
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"starting config: {', '.join(PRESETS)} "
                   f"(default {DEFAULT_PRESET})")
    p.add_argument("--dataset", help="override the preset's dataset (fashion-mnist, cifar10, cifar100, synthetic)")
    p.add_argument("--teacher", help="teacher architecture (e.g. resnet56)")
    p.add_argument("--student", help="student architecture (e.g. resnet20)")
    p.add_argument("--max-epochs", type=positive_int, help="epochs of a full-fidelity trial (preset's default)")
    p.add_argument("--grace-epochs", type=positive_int, help="ASHA: epochs before a trial can be stopped")
    p.add_argument("--train-size", type=positive_int, help="train subset size")
    p.add_argument("--val-size", type=positive_int, help="validation subset size")
    p.add_argument("--concurrency", type=positive_int, help="trials at once (preset's default; 1 in "
                   "--deterministic mode)")
    p.add_argument("--cpus-per-trial", type=positive_int, help="CPUs (= torch threads) per trial")
    p.add_argument("--gpus-per-trial", type=float, default=None, help="GPUs per trial (fractions share a GPU)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial's training")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler (default tpe)")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="asha", help="trial scheduler (default asha)")
    p.add_argument("--objective", choices=("acc", "acc+cost"), default="acc",
                   help="maximise val accuracy, or also minimise training seconds (multi-objective)")
    p.add_argument("--search-optimizer", action="store_true", help="also search learning rate and weight decay")
    p.add_argument("--deterministic", action="store_true",
                   help="one trial at a time: same seed -> identical trial configs and metrics")
    p.add_argument("--name", help="run name (default <preset>-<date>-<time>)")
    p.add_argument("--output-dir", default="results/sweeps", help="where run folders go (default results/sweeps)")
    p.add_argument("--resume", metavar="RUN", help="finish the budget of an interrupted run (its folder)")
    p.add_argument("--address", help="Ray cluster to use: auto, host:port or ray://host:port "
                   "(default: a private local Ray)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///<run>/optuna.db)")
    p.add_argument("--data-root", default="data", help="dataset folder (default data)")
    p.add_argument("--teacher-cache", default="results/teachers", help="teacher cache folder")
    p.add_argument("--inject-fault", default="", help=argparse.SUPPRESS)  # tests: "3:nan@1,5:raise@2"
    return p


def parse_faults(text: str) -> dict[int, str]:
    faults = {}
    for item in filter(None, text.split(",")):
        index, _, fault = item.partition(":")
        faults[int(index)] = fault
    return faults


def writable_dir(path: Path) -> bool:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def resolve_setup(args: argparse.Namespace) -> tuple[dict[str, Any], list[int], dict[str, Any]]:
    """Validate everything that can be checked before anything is written. Returns (base config, granularities,
    sweep settings); any problem -> one-line error, exit 2."""
    if args.preset not in PRESETS:
        fail(f"unknown preset {args.preset!r}; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[args.preset]
    settings = dict(preset["sweep"])
    for key in ("max_epochs", "grace_epochs", "concurrency", "cpus_per_trial", "gpus_per_trial"):
        if getattr(args, key, None) is not None:
            settings[key] = getattr(args, key)
    if args.deterministic:
        settings["concurrency"] = 1
    settings.setdefault("gpus_per_trial", 0)
    settings["grace_epochs"] = min(settings["grace_epochs"], settings["max_epochs"])
    overrides = dict(dataset=args.dataset, teacher=args.teacher, student=args.student, train_size=args.train_size,
                     val_size=args.val_size, epochs=settings["max_epochs"], seed=args.seed,
                     threads=settings["cpus_per_trial"], data_root=str(Path(args.data_root).resolve()),
                     teacher_cache=str(Path(args.teacher_cache).resolve()))
    if settings["gpus_per_trial"] > 0:
        overrides["device"] = "cuda"
    try:
        base = preset_config(args.preset, "iakd", **overrides)
        cfg = TrialConfig.from_dict(base)
        granularities = list(architecture_granularities(cfg.teacher, cfg.student))
    except (ConfigError, IncompatiblePairError, ValueError) as err:
        fail(str(err))
    return cfg.to_dict(), granularities, settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from study.sweep import resume_sweep, run_sweep  # heavy imports (ray, torch) only after the arguments are fine

    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "manifest.json").is_file() or not (run_dir / "ray").is_dir():
            fail(f"{run_dir} is not a sweep run folder (no manifest.json and ray/ in it); pass a folder that "
                 "run_sweep.py created")
        return resume_sweep(run_dir.resolve(), args)
    base, granularities, settings = resolve_setup(args)
    name = args.name or f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(args.output_dir).resolve() / name
    if not writable_dir(run_dir.parent):
        fail(f"cannot write to {run_dir.parent}; choose another --output-dir")
    if run_dir.exists():
        fail(f"{run_dir} already exists; choose another --name, or --resume it")
    try:
        parse_faults(args.inject_fault)
    except ValueError:
        fail(f"--inject-fault {args.inject_fault!r}: use INDEX:nan@EPOCH or INDEX:raise@EPOCH, comma-separated")
    try:
        return run_sweep(run_dir, args, base, granularities, settings)
    except BaseException:
        if run_dir.exists() and not (run_dir / "ray").exists():  # failed before any trial: leave nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


if __name__ == "__main__":
    raise SystemExit(main())
