#!/usr/bin/env python
"""Sweep IAKD configurations: Optuna samples, Ray Tune runs, and only the best complete short runs go on to train
in full (``--scheduler promote``, every preset's default; ``asha`` or ``fifo`` on request).

    python study/run_sweep.py --budget 64                 # the default (laptop) preset, local Ray
    python study/run_sweep.py --budget 64 --method kd     # tune a baseline with the same sampler and budget
    python study/run_sweep.py --resume results/sweeps/laptop-20261201-101500
    python study/run_sweep.py --preset cifar100-resnet56-resnet20 --address auto --gpus-per-trial 0.5

Writes one run folder (trials.parquet, epochs.parquet, schedules.parquet, manifest.json, best_config.json,
optuna.db, trials/ records, ray/). Ctrl-C or SIGTERM stops it (exit 130) and --resume finishes the budget, also
after a hard kill. Open the study with: optuna-dashboard sqlite:///<run>/optuna.db
"""

from __future__ import annotations

from iakd_core.console import guard_startup

guard_startup("before any trial")  # Ctrl-C while the imports below load torch and Ray: one line, exit 130

import argparse
import time
from pathlib import Path
from typing import Any

from analysis.manifest import search_options
from iakd_core.cli import check_output_dir, read_config_file
from iakd_core.config import METHOD_NAMES, TrialConfig
from iakd_core.console import OneLineParser, fail, non_negative_float, positive_int, unknown_preset
from iakd_core.methods import searched_hyperparameters
from iakd_core.presets import DEFAULT_PRESET, PRESETS, preset_config
from iakd_core.units import architecture_granularities
from study.cli import (
    MLFLOW_DEFAULT,
    add_search_options,
    asha_only_conflict,
    exit_now,
    private_ray_environment,
    run_command,
)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=positive_int, default=None,
                   help="number of trials (default 64; with --points, their number)")
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"starting config: {', '.join(PRESETS)} "
                   f"(default {DEFAULT_PRESET})")
    p.add_argument("--method", default="iakd", choices=METHOD_NAMES,
                   help="the method whose declared hyperparameters are searched (default iakd: the swap schedule "
                   "and its optional loss terms; kd: its CE/KD weights and temperature; see iakd_core/methods.py)")
    p.add_argument("--dataset", help="override the preset's dataset (fashion-mnist, cifar10, cifar100, synthetic)")
    p.add_argument("--teacher", help="teacher architecture (e.g. resnet56)")
    p.add_argument("--student", help="student architecture (e.g. resnet20)")
    p.add_argument("--max-epochs", type=positive_int, help="epochs of a full-fidelity trial (preset's default)")
    p.add_argument("--train-size", type=positive_int, help="train subset size")
    p.add_argument("--val-size", type=positive_int, help="validation subset size")
    p.add_argument("--cpus-per-trial", type=positive_int, help="CPUs (= torch threads) per trial")
    p.add_argument("--gpus-per-trial", type=non_negative_float, default=None,
                   help="GPUs per trial (fractions share a GPU; 0 = CPU trials)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial's training")
    add_search_options(p)
    p.add_argument("--objective", choices=("acc", "acc+cost"), default="acc",
                   help="maximise val accuracy, or also minimise training seconds (multi-objective)")
    p.add_argument("--search-optimizer", action="store_true", help="also search learning rate and weight decay")
    p.add_argument("--save-students", action="store_true",
                   help="keep every COMPLETE trial's student in students/ (default: only the best trial's)")
    p.add_argument("--deterministic", action="store_true",
                   help="one trial at a time: same seed -> identical trial configs and metrics")
    p.add_argument("--name", help="run name (default <preset>-<date>-<time>)")
    p.add_argument("--output-dir", default="results/sweeps", help="where run folders go (default results/sweeps)")
    p.add_argument("--resume", metavar="RUN", help="finish the budget of an interrupted or killed run (its folder)")
    p.add_argument("--mlflow", nargs="?", const=MLFLOW_DEFAULT, default=None, metavar="URI",
                   help="also log every trial to MLflow (optional extra: pip install -e '.[mlflow]'); without URI "
                        "a SQLite store mlflow.db in the run folder")
    p.add_argument("--address", help="Ray cluster to use: auto, host:port or ray://host:port "
                   "(default: a private local Ray)")
    p.add_argument("--config", metavar="FILE", help="JSON/YAML base config over the preset (e.g. another "
                   "run's best_config.json); the other flags override it, and the sweep sets method (iakd), epochs "
                   "(--max-epochs), seed (--seed) and threads (--cpus-per-trial) itself")
    p.add_argument("--points", metavar="FILE",
                   help="evaluate these points of the search space first, in this order, instead of the reference "
                   "point (a JSON list of parameter dicts, e.g. study/run_pool.py's configs.json); the sampler "
                   "proposes the rest of --budget")
    p.add_argument("--teacher-weights", metavar="PATH", help="use this teacher state_dict (trained elsewhere) "
                   "instead of training the preset's teacher")
    p.add_argument("--storage", help="Optuna storage URL (default: optuna.db in the run folder)")
    p.add_argument("--data-root", default=None, help="dataset folder (default data; on --resume: the run's)")
    p.add_argument("--teacher-cache", default=None, help="teacher cache folder (default results/teachers; on "
                   "--resume: the run's)")
    return p


def resolve_setup(args: argparse.Namespace) -> tuple[dict[str, Any], list[int], dict[str, Any]]:
    """Validate everything that can be checked before anything is written. Returns (base config, granularities,
    sweep settings); any problem -> one-line error, exit 2."""
    if args.preset not in PRESETS:
        fail(unknown_preset(args.preset, PRESETS))
    settings = dict(PRESETS[args.preset]["sweep"])
    for key in ("max_epochs", "grace_epochs", "reduction_factor", "hedge", "short_epochs", "bracket", "concurrency",
                "cpus_per_trial", "gpus_per_trial"):
        if getattr(args, key, None) is not None:
            settings[key] = getattr(args, key)
    if args.deterministic:
        settings["concurrency"] = 1
    settings.setdefault("gpus_per_trial", 0)
    settings["grace_epochs"] = min(settings["grace_epochs"], settings["max_epochs"])
    preset_scheduler = settings.pop("scheduler", "asha")  # (the run's scheduler is recorded once: in its options)
    args.scheduler = args.scheduler or preset_scheduler
    if conflict := asha_only_conflict(args, args.scheduler):
        fail(conflict)
    if args.scheduler == "promote":  # (settings["short_epochs"] marks a promoting sweep everywhere downstream)
        if args.short_epochs is None and (args.max_epochs is not None or not settings.get("short_epochs")):
            settings["short_epochs"] = max(1, settings["max_epochs"] // 5)  # the presets' rule, for another length
        if settings["short_epochs"] >= settings["max_epochs"]:
            fail(f"--short-epochs {settings['short_epochs']} must be below the full fidelity ({settings['max_epochs']} "
                 "epochs): a short run is a complete shorter run (or pass --scheduler fifo)")
    else:
        settings.pop("short_epochs", None)
        settings.pop("bracket", None)
    overrides = dict(dataset=args.dataset, teacher=args.teacher, student=args.student, train_size=args.train_size,
                     val_size=args.val_size, epochs=settings["max_epochs"], seed=args.seed,
                     threads=settings["cpus_per_trial"], data_root=args.data_root or "data",
                     teacher_cache=args.teacher_cache or "results/teachers")
    from analysis.summaries import rung_epochs

    # the diagnostic runs where ASHA compares, and at the end (a promoting sweep: at the end of each run)
    overrides["compat_epochs"] = () if settings.get("short_epochs") else rung_epochs(settings)
    if settings["gpus_per_trial"] > 0:
        overrides["device"] = "cuda"
    if args.teacher_weights:
        overrides["teacher_weights"] = args.teacher_weights
    base = preset_config(args.preset, args.method)
    if args.config:  # the sweep owns the method (--method), epochs (--max-epochs), seed (--seed), threads
        base.update(read_config_file(args.config), method=args.method)
    cfg = TrialConfig.from_dict(base, **{k: v for k, v in overrides.items() if v is not None})
    if args.method != "iakd" and not searched_hyperparameters(args.method) and not args.search_optimizer:
        fail(f"method {args.method!r} declares no hyperparameter to search; add --search-optimizer to tune its "
             "learning rate and weight decay")
    granularities = architecture_granularities(cfg.teacher, cfg.student) if args.method == "iakd" else ()
    return cfg.to_dict(), list(granularities), settings


def read_points(path: str, base: dict[str, Any], space) -> list[dict[str, Any]]:
    """``--points``: a JSON list of points of the search space, each checked against the space and by building its
    trial config."""
    import json

    from study.space import realise
    from study.sweep import sweep_config

    try:
        points = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        fail(f"--points {path}: cannot read a JSON list from it ({err}); pass a file like run_pool.py's "
             "configs.json")
    if not isinstance(points, list) or not points or not all(isinstance(x, dict) for x in points):
        fail(f"--points {path}: expected a non-empty JSON list of parameter dicts")
    for i, point in enumerate(points):
        try:
            outside = sorted(set(point) - set(realise(space, point)))
        except (ValueError, TypeError) as err:  # a choice the space does not offer, a null value
            fail(f"--points {path}: point {i} does not fit this search space ({err})")
        if outside:
            fail(f"--points {path}: point {i} sets {', '.join(outside)}, which this search space does not ask "
                 "for (check --method, --search-optimizer and the point's own choices)")
        try:
            sweep_config(base, point)
        except Exception as err:  # ConfigError: a value out of its valid range
            fail(f"--points {path}: point {i} is not a valid configuration: {err}")
    return points


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    private_ray_environment(args.address, args.resume)  # before anything below imports Ray
    from study.runner import launch, resume
    from study.sweep import SWEEP

    if args.resume:
        return resume(SWEEP, Path(args.resume).resolve(), args.address, args.data_root, args.teacher_cache)
    base, granularities, settings = resolve_setup(args)
    if args.points:
        from study.space import SearchSpace

        points = read_points(args.points, base, SearchSpace(granularities, args.search_optimizer, args.method))
    else:
        points = None
    budget = args.budget or (len(points) if points else 64)
    if settings.get("bracket"):  # (0: promotion against Ray's running cut-off)
        from study.schedulers import bracket_size

        settings["bracket"] = bracket_size(settings["bracket"], budget)
    method = "" if args.method == "iakd" else f"{args.method}-"
    name = args.name or f"{args.preset}-{method}{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(args.output_dir)
    check_output_dir(out)
    run_dir = out.resolve() / name
    if run_dir.exists():
        fail(f"{run_dir} already exists; choose another --name, or --resume it")
    manifest = {"args": vars(args), "options": search_options(args).record(), "base_config": base,
                "preset": args.preset, "budget": budget, "settings": settings, "points": points,
                "granularities": granularities, "storage": args.storage, "study_name": f"iakd-{name}",
                "address": args.address, "name": name, "mlflow": args.mlflow}
    return launch(SWEEP, run_dir, manifest, args.address)


if __name__ == "__main__":
    exit_now(run_command(main))
