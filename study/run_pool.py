#!/usr/bin/env python
"""The learning-curve pool: random configurations of a preset's IAKD search space, each trained to full fidelity
(validation accuracy after every epoch) and, with the same training seed, as complete shorter runs (their cosine LR
and swap schedules compressed into E epochs, not the first E epochs of a long run). study/run_replay.py replays
trial schedulers on it, at no training cost.

    python study/run_pool.py                                  # laptop: 72 configurations, short runs of 3 and 5
    python study/run_pool.py --preset smoke --size 6 --short 1,2 --output-dir /tmp/pool
    python study/run_pool.py --short 2,3,5                    # adds complete 2-epoch runs to the laptop pool

Writes <output-dir>/<preset>/: configs.json (the points, drawn once by Optuna's RandomSampler), curves.csv (one
row per trained epoch of every COMPLETE run: fidelity, config, epoch, val_acc, epoch_seconds), pool.json (the plan
and each stage's seconds) and runs/e<E>/ (each fidelity is a real sweep: study/run_sweep.py --points configs.json,
random sampler, FIFO). Re-running the same command continues where it stopped (finished stages are skipped, an
interrupted one resumed); a --short list with runs the pool lacks trains only those, and the pool keeps (and its
curves.csv lists) every fidelity it has; Ctrl-C or SIGTERM stops the running stage cleanly (exit 130).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from iakd_core.cli import check_output_dir
from iakd_core.console import OneLineParser, fail, fmt_seconds, positive_int, unknown_preset
from iakd_core.files import write_json
from iakd_core.presets import PRESETS

ROOT = Path(__file__).resolve().parent.parent
PLAN_KEYS = ("preset", "size", "seed", "fidelities")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="laptop", help="setting whose default search space is pooled (default laptop)")
    p.add_argument("--size", type=positive_int, default=72, help="random configurations (default 72)")
    p.add_argument("--short", default="3,5", help="epochs of the complete short runs, comma-separated (default 3,5; "
                   "'none' for none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the configurations' draw and of every run's training")
    p.add_argument("--output-dir", default="results/pool", help="where pools go (default results/pool)")
    p.add_argument("--data-root", help="dataset folder (default data)")
    p.add_argument("--teacher-cache", help="teacher cache folder (default results/teachers)")
    return p


def fidelities(preset: str, short: str) -> list[int]:
    """Full fidelity first (the preset's epochs), then the short runs, each shorter than it."""
    full = PRESETS[preset]["sweep"]["max_epochs"]
    try:
        rest = [] if short.strip() == "none" else [int(x) for x in short.split(",") if x.strip()]
    except ValueError:
        fail(f"--short {short!r}: expected whole numbers of epochs, e.g. 3,5")
    wrong = [e for e in rest if not 1 <= e < full]
    if wrong or len(set(rest)) != len(rest):
        fail(f"--short {short!r}: each must be a distinct number of epochs from 1 to {full - 1} ({preset}'s full "
             f"fidelity is {full})")
    return [full, *sorted(rest)]


def draw_points(preset: str, size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` points of the preset's IAKD search space, drawn uniformly (Optuna's RandomSampler, seeded)."""
    import optuna

    from iakd_core.units import architecture_granularities
    from study.space import SearchSpace

    cfg = PRESETS[preset]["config"]
    space = SearchSpace(list(architecture_granularities(cfg["teacher"], cfg["student"])))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    points = []
    for _ in range(size):
        trial = study.ask()
        space(trial)
        points.append(dict(trial.params))
        study.tell(trial, 0.0)
    return points


def curves(pool_dir: Path, plan: dict[str, Any]) -> pd.DataFrame:
    """Every trained epoch of every finished run: fidelity, config (its index in configs.json = the sweep's trial
    number, since the points are enqueued in order), epoch, val_acc, epoch_seconds, and the run's status."""
    parts = []
    for epochs in plan["fidelities"]:
        run = pool_dir / "runs" / f"e{epochs}"
        if not (run / "epochs.parquet").exists():
            continue
        trials = pd.read_parquet(run / "trials.parquet").set_index("trial_id")
        e = pd.read_parquet(run / "epochs.parquet")
        e = e[e["trial_id"].isin(trials.index[trials["status"] == "COMPLETE"])]
        parts.append(pd.DataFrame({"fidelity": epochs, "config": e["trial_id"].map(trials["trial_number"]),
                                   "epoch": e["epoch"], "val_acc": e["val_acc"],
                                   "epoch_seconds": e["epoch_seconds"]}))
    columns = ["fidelity", "config", "epoch", "val_acc", "epoch_seconds"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns].sort_values(["fidelity", "config", "epoch"])


def main(argv: list[str] | None = None) -> int:
    from study.run_study import Forwarder, stage_status

    args = build_parser().parse_args(argv)
    if args.preset not in PRESETS:
        fail(unknown_preset(args.preset, PRESETS))
    plan = {"preset": args.preset, "size": args.size, "seed": args.seed,
            "fidelities": fidelities(args.preset, args.short)}
    out = Path(args.output_dir)
    check_output_dir(out)
    pool_dir = out.resolve() / args.preset
    record_path = pool_dir / "pool.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {**plan, "stages": {}}
    changed = [f"{k} {record.get(k)!r} (asked: {plan[k]!r})" for k in PLAN_KEYS if record.get(k) != plan[k]
               and not (k == "fidelities" and record[k][0] == plan[k][0])]  # same full fidelity: short runs add
    if changed:
        fail(f"{pool_dir} holds a pool with other settings: {'; '.join(changed)}; re-run with those, or choose "
             "another --output-dir")
    has = record["fidelities"]  # a pool grows by new short runs and keeps what it has (curves: all of them)
    record["fidelities"] = [has[0], *sorted(set(has[1:]) | set(plan["fidelities"][1:]))]
    pool_dir.mkdir(parents=True, exist_ok=True)
    points_file = pool_dir / "configs.json"
    if not points_file.exists():
        write_json(points_file, draw_points(args.preset, args.size, args.seed))
    paths = [f"--{name.replace('_', '-')}={value}" for name, value in
             (("data_root", args.data_root), ("teacher_cache", args.teacher_cache)) if value]
    forwarder = Forwarder()
    started = time.time()
    for index, epochs in enumerate(plan["fidelities"]):
        name = f"e{epochs}"
        run = pool_dir / "runs" / name
        status = stage_status(run)
        head = f"[pool {index + 1}/{len(plan['fidelities'])}] {args.size} configurations x {epochs} epochs"
        if status == "complete":
            print(f"{head}: finished earlier, skipped", flush=True)
            continue
        if status == "new":
            command = ["--preset", args.preset, "--points", str(points_file), "--sampler", "random", "--scheduler",
                       "fifo", "--max-epochs", str(epochs), "--seed", str(args.seed), "--name", name,
                       "--output-dir", str(run.parent), *paths]
        else:
            command = ["--resume", str(run)]
        print(f"{head}: {'starting' if status == 'new' else 'resuming'} | elapsed {fmt_seconds(time.time() - started)}",
              flush=True)
        stage_start = time.time()
        code = forwarder.run([sys.executable, str(ROOT / "study" / "run_sweep.py"), *command])
        entry = record["stages"].setdefault(name, {"seconds": 0.0})
        entry["seconds"] = round(entry["seconds"] + time.time() - stage_start, 1)
        entry["status"] = stage_status(run)
        write_json(record_path, record)
        if code != 0 or entry["status"] != "complete":
            why = "interrupted" if code in (0, 130) or forwarder.interrupted else f"failed (exit {code})"
            print(f"{head}: {why}; re-run the same command to continue", file=sys.stderr, flush=True)
            return 130 if why == "interrupted" else code
    done = [f for f in record["fidelities"] if record["stages"].get(f"e{f}", {}).get("status") == "complete"]
    table = curves(pool_dir, {**record, "fidelities": done})  # (a growth stopped half-way is left out)
    table.to_csv(pool_dir / "curves.csv", index=False, float_format="%.4f")
    spent = fmt_seconds(sum(s["seconds"] for s in record["stages"].values()))
    print(f"pool done: {table.groupby('fidelity')['config'].nunique().to_dict()} configurations per fidelity in "
          f"{spent} -> {pool_dir / 'curves.csv'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
