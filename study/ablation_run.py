"""Run (or resume) an ablation through Ray Tune: a grid of (arm, seed), FIFO, full fidelity."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ray import tune

from .ablation import ablation_resolver, ablation_trial
from .engine import Progress, start_ray
from .records import new_manifest, write_json
from .sweep import finish, prepare


def _trainable(base: dict[str, Any], arms: dict[str, dict[str, Any]], settings: dict[str, Any]):
    resources = {"cpu": settings["cpus_per_trial"]}
    if settings.get("gpus_per_trial"):
        resources["gpu"] = settings["gpus_per_trial"]
    return tune.with_resources(tune.with_parameters(ablation_trial, base=base, arms=arms), resources)


def run_ablation(run_dir: Path, args: argparse.Namespace, sweep_dir: Path, sweep_manifest: dict[str, Any],
                 best: dict[str, Any], arms: dict[str, dict[str, Any]]) -> int:
    settings = dict(sweep_manifest["settings"])
    if args.concurrency:
        settings["concurrency"] = args.concurrency
    if args.cpus_per_trial:
        settings["cpus_per_trial"] = args.cpus_per_trial
    base = {**best["config"], "threads": settings["cpus_per_trial"], "data_root": str(Path(args.data_root).resolve()),
            "teacher_cache": str(Path(args.teacher_cache).resolve())}
    seeds = [int(sweep_manifest["seed"]) + 1000 + i for i in range(args.seeds)]
    run_dir.mkdir(parents=True)
    manifest = new_manifest("ablation", vars(args), base)
    manifest.update(source_sweep=str(sweep_dir), source_best=best, arms=arms, seeds=seeds, settings=settings,
                    preset=sweep_manifest.get("preset"), budget=len(arms) * len(seeds),
                    granularities=sweep_manifest["granularities"])
    write_json(run_dir / "manifest.json", manifest)
    manifest.update(prepare(base))
    write_json(run_dir / "manifest.json", manifest)
    start_ray(args.address or sweep_manifest["args"].get("address"))
    tuner = tune.Tuner(
        _trainable(base, arms, settings),
        param_space={"arm": tune.grid_search(list(arms)), "seed": tune.grid_search(seeds)},
        tune_config=tune.TuneConfig(max_concurrent_trials=settings["concurrency"], reuse_actors=True),
        run_config=tune.RunConfig(name="ray", storage_path=str(run_dir), verbose=0,
                                  callbacks=[Progress(manifest["budget"], settings["max_epochs"],
                                                      metric="test_acc",
                                                      label=lambda c: f"{c['arm']} seed {c['seed']}")],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    return finish(run_dir, manifest, tuner, ablation_resolver(base, arms))


def resume_ablation(run_dir: Path, args: argparse.Namespace) -> int:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    start_ray(args.address)
    print(f"resuming {run_dir.name}: {manifest['budget']} trials", file=sys.stderr, flush=True)
    tuner = tune.Tuner.restore(str(run_dir / "ray"), _trainable(manifest["base_config"], manifest["arms"],
                                                                 manifest["settings"]),
                               resume_unfinished=True, resume_errored=False, restart_errored=False)
    manifest.setdefault("resumed", []).append(time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return finish(run_dir, manifest, tuner, ablation_resolver(manifest["base_config"], manifest["arms"]))
