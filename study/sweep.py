"""Run (or resume) a sweep: data and teacher once in the driver, then Ray Tune + Optuna + ASHA, then the files."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from iakd_core.config import TrialConfig
from iakd_core.data import load_splits
from iakd_core.teacher import get_teacher
from iakd_core.train import pick_device, resolve_precision

from .engine import METRIC, FidelityAwareOptunaSearch, Progress, describe, start_ray, tune_trial
from .records import collect, new_manifest, optuna_states, sweep_resolver, trial_id_and_number, write_json, write_tables
from .run_sweep import parse_faults
from .space import REFERENCE_POINT, SearchSpace


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)


def faulty_trial(config: dict[str, Any], base: dict[str, Any], faults: dict[int, str]) -> None:
    """``tune_trial`` with harness-test faults injected by trial index (``--inject-fault``)."""
    _, index = trial_id_and_number(tune.get_context().get_trial_dir())
    tune_trial(config, {**base, "fault": faults.get(index, "none")})


def trainable(base: dict[str, Any], settings: dict[str, Any], faults: dict[int, str]):
    fn = tune.with_parameters(faulty_trial, base=base, faults=faults) if faults else tune.with_parameters(
        tune_trial, base=base)
    resources = {"cpu": settings["cpus_per_trial"]}
    if settings.get("gpus_per_trial"):
        resources["gpu"] = settings["gpus_per_trial"]
    return tune.with_resources(fn, resources)


def prepare(base: dict[str, Any]) -> dict[str, Any]:
    """Load the data and train-or-load the teacher once, in the driver; returns the teacher's metadata."""
    cfg = TrialConfig.from_dict(base)
    data = load_splits(cfg)
    start = time.perf_counter()

    def progress(m: dict[str, Any]) -> None:
        print(f"teacher {cfg.teacher} epoch {m['epoch']}/{cfg.teacher_epochs}: val_acc {m['val_acc']:.2f}% "
              f"({time.perf_counter() - start:.0f}s)", file=sys.stderr, flush=True)

    _, meta, cached = get_teacher(cfg, data, progress=progress)
    print(f"teacher {cfg.teacher}: val_acc {meta['val_acc']:.2f}% ({'cached' if cached else 'trained'}), "
          f"data {data.identity['name']} train {data.identity['train']} / val {data.identity['val']}",
          file=sys.stderr, flush=True)
    device = pick_device(cfg.device)
    return {"teacher": {"key": meta["key"], "arch": meta["arch"], "val_acc": meta["val_acc"],
                        "test_acc": meta["test_acc"], "cached": cached, "train_size": meta["dataset"]["train"],
                        "epochs": meta["epochs"], "precision": meta.get("precision")},
            "dataset": data.identity,
            "runtime": {"device": str(device), "precision": resolve_precision(cfg.precision, device),
                        "channels_last": cfg.channels_last}}


def run_sweep(run_dir: Path, args: argparse.Namespace, base: dict[str, Any], granularities: list[int],
              settings: dict[str, Any]) -> int:
    run_dir.mkdir(parents=True)
    storage_url = args.storage or f"sqlite:///{run_dir / 'optuna.db'}"
    study_name = f"iakd-{run_dir.name}"
    manifest = new_manifest("sweep", vars(args), base)
    manifest.update(settings=settings, granularities=granularities, storage=storage_url, study_name=study_name,
                    preset=args.preset, seed=args.seed, budget=args.budget)
    write_json(run_dir / "manifest.json", manifest)
    manifest.update(prepare(base))
    write_json(run_dir / "manifest.json", manifest)

    start_ray(args.address, num_gpus=None)
    objective = [METRIC, "train_seconds_total"] if args.objective == "acc+cost" else METRIC
    modes = ["max", "min"] if args.objective == "acc+cost" else "max"
    search = FidelityAwareOptunaSearch(
        space=SearchSpace(granularities, args.search_optimizer), metric=objective, mode=modes,
        points_to_evaluate=[dict(REFERENCE_POINT)], sampler=make_sampler(args.sampler, args.seed),
        seed=args.seed, storage=optuna.storages.RDBStorage(storage_url), study_name=study_name,
        max_epochs=settings["max_epochs"])
    search = ConcurrencyLimiter(search, max_concurrent=settings["concurrency"], batch=args.deterministic)
    if args.scheduler == "asha":
        scheduler = ASHAScheduler(metric=METRIC, mode="max", time_attr="training_iteration",
                                  max_t=settings["max_epochs"], grace_period=settings["grace_epochs"],
                                  reduction_factor=settings["reduction_factor"])
    else:
        scheduler = FIFOScheduler()
    tuner = tune.Tuner(
        trainable(base, settings, parse_faults(args.inject_fault)),
        tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=args.budget,
                                    max_concurrent_trials=settings["concurrency"], reuse_actors=True),
        run_config=tune.RunConfig(name="ray", storage_path=str(run_dir), verbose=0,
                                  callbacks=[Progress(args.budget, settings["max_epochs"])],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    return finish(run_dir, manifest, tuner, sweep_resolver(base))


def resume_sweep(run_dir: Path, args: argparse.Namespace) -> int:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    saved = argparse.Namespace(**manifest["args"])
    start_ray(args.address or saved.address)
    print(f"resuming {run_dir.name}: budget {manifest['budget']}", file=sys.stderr, flush=True)
    tuner = tune.Tuner.restore(str(run_dir / "ray"), trainable(manifest["base_config"], manifest["settings"],
                                                                parse_faults(saved.inject_fault)),
                               resume_unfinished=True, resume_errored=False, restart_errored=False)
    manifest.setdefault("resumed", []).append(time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return finish(run_dir, manifest, tuner, sweep_resolver(manifest["base_config"]))


def finish(run_dir: Path, manifest: dict[str, Any], tuner: tune.Tuner, resolve) -> int:
    """Run the tuner; then (also after an interrupt) write the tables, best config (sweeps) and manifest."""
    started = time.time()
    interrupted = False
    try:
        grid = tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
        grid = tune.Tuner.restore(str(run_dir / "ray"), lambda config: None).get_results()
    sweep = manifest["kind"] == "sweep"
    states = optuna_states(manifest["storage"], manifest["study_name"]) if sweep else None
    trials, epochs = collect(grid, resolve, manifest["settings"]["max_epochs"], states)
    write_tables(run_dir, trials, epochs)
    complete = trials[trials["status"] == "COMPLETE"] if len(trials) else trials
    if sweep and len(complete):
        best = complete.loc[complete["val_acc_last"].idxmax()]
        best_config = {k: best[k] for k in TrialConfig.__dataclass_fields__ if k in best}
        write_json(run_dir / "best_config.json", {"trial_id": best["trial_id"], "val_acc": best["val_acc_last"],
                                                  "config": _plain(best_config)})
    finished = (len(trials) == manifest["budget"] and not interrupted
                and not (trials["status"] == "INTERRUPTED").any())
    if sweep and finished:
        manifest["orphaned_optuna_trials"] = fail_orphans(manifest["storage"], manifest["study_name"])
    manifest.update(status="complete" if finished else "interrupted", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    wall_seconds=round(manifest.get("wall_seconds", 0) + time.time() - started, 1),
                    counts=trials["status"].value_counts().to_dict() if len(trials) else {})
    write_json(run_dir / "manifest.json", manifest)
    counts = ", ".join(f"{v} {k.lower()}" for k, v in manifest["counts"].items())
    print(f"{'done' if finished else 'interrupted'}: {len(trials)}/{manifest['budget']} trials ({counts}) in "
          f"{manifest['wall_seconds']:.0f}s -> {run_dir}", file=sys.stderr, flush=True)
    if sweep and len(complete):
        print(f"best: val_acc {best['val_acc_last']:.2f}% ({describe(best.to_dict())})", file=sys.stderr)
    if not finished:
        command = "run_sweep.py" if sweep else "run_ablation.py"
        print(f"resume with: python study/{command} --resume {run_dir}", file=sys.stderr)
        return 130
    return 0


def fail_orphans(storage_url: str, study_name: str) -> list[int]:
    """After a hard kill, the study can hold RUNNING trials that Tune's last saved state never knew (asked after
    it was saved; Tune re-asks for them on resume). Once the budget is finished, mark them FAIL so the study
    holds no phantom running trials. Returns their numbers."""
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    orphans = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in orphans:
        study._storage.set_trial_user_attr(t._trial_id, "orphaned", "asked before a hard kill; re-asked on resume")
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    return [t.number for t in orphans]


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in values.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and v != v:
            v = None
        out[k] = v
    return out
