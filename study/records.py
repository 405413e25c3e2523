"""Result files of a run folder (the contract analysis/ reads; schema in docs/results.md).

``trials.parquet`` (one row per trial), ``epochs.parquet`` (one row per trial and epoch), ``manifest.json``,
``best_config.json``. Written atomically (temporary file, then rename) so a reader never sees half a table.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from iakd_core.config import TrialConfig
from iakd_core.schedules import mean_probability, schedule_value

from .space import to_trial_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def write_table(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp.parquet")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)


def write_tables(run_dir: Path, trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
    write_table(trials, run_dir / "trials.parquet")
    write_table(epochs, run_dir / "epochs.parquet")
    write_table(schedule_curves(trials), run_dir / "schedules.parquet")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    import optuna
    import ray
    import torch

    return {
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
                     "optuna": optuna.__version__, "pandas": pd.__version__},
        "machine": {"host": socket.gethostname(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "cuda": torch.cuda.is_available(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "git_commit": git_commit(),
    }


def new_manifest(kind: str, args: dict[str, Any], base_config: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "args": args,
            "base_config": base_config, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "running",
            **environment()}


def trial_status(error: Any, epochs: int, max_epochs: int, tune_status: str = "TERMINATED") -> str:
    if error is not None:
        return "ERROR"
    if tune_status not in ("TERMINATED", "ERROR"):  # still pending/running when the run was interrupted
        return "INTERRUPTED"
    return "COMPLETE" if epochs >= max_epochs else "PRUNED"


def tune_statuses(grid) -> dict[str, str]:
    """Tune's own status per trial id (TERMINATED, ERROR, RUNNING, PENDING, PAUSED)."""
    return {t.trial_id: t.status for t in grid._experiment_analysis.trials}


def _reason(error: Any) -> str | None:
    if error is None:
        return None
    text = str(error).strip().splitlines()
    last = [line for line in text if line.strip()]
    return (last[-1] if last else type(error).__name__)[:300]


Resolver = Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]


def sweep_resolver(base: dict[str, Any]) -> Resolver:
    """Sampled sweep params -> (full TrialConfig dict, extra columns)."""

    def resolve(sampled: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        config = TrialConfig.from_dict({**base, **to_trial_config(sampled)}).to_dict()
        return config, {"use_kd": bool(sampled.get("use_kd", config["kd_weight"] > 0)),
                        "use_student_ce": bool(sampled.get("use_student_ce", config["student_ce_weight"] > 0))}

    return resolve


EPOCH_COLUMNS = ("train_acc", "val_acc", "val_loss", "lr", "epoch_seconds", "eval_seconds", "images_per_second",
                 "val_acc_best", "train_seconds_total", "timestamp")


def collect(grid, resolve: Resolver, max_epochs: int, optuna_states: dict[str, dict] | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trials and epochs tables from a Ray ``ResultGrid``."""
    trial_rows, epoch_frames = [], []
    statuses = tune_statuses(grid)
    for result in grid:
        df = result.metrics_dataframe if result.metrics_dataframe is not None else pd.DataFrame()
        trial_id, number = trial_id_and_number(result.path)
        config, extra = resolve(dict(result.config))
        epochs = int(df["training_iteration"].max()) if "training_iteration" in df else 0
        row: dict[str, Any] = {
            "trial_id": trial_id, "trial_number": number, **extra,
            "status": trial_status(result.error, epochs, max_epochs, statuses.get(trial_id, "TERMINATED")),
            "reason": _reason(result.error),
            "epochs": epochs,
            "val_acc_last": float(df["val_acc"].iloc[-1]) if epochs else float("nan"),
            "val_acc_best": float(df["val_acc"].max()) if epochs else float("nan"),
            "train_seconds": float(df["epoch_seconds"].sum()) if epochs else 0.0,
            "eval_seconds": float(df["eval_seconds"].sum()) if epochs else 0.0,
            "images_per_second": float(df["images_per_second"].mean()) if epochs else float("nan"),
            "swap_mean_p": _mean_p(config),
        }
        if "test_acc" in df and epochs:
            row["test_acc"] = float(df["test_acc"].iloc[-1])
        for key, value in config.items():
            row.setdefault(key, value)
        if optuna_states and trial_id in optuna_states:
            row.update(optuna_states[trial_id])
        trial_rows.append(row)
        if epochs:
            keep = [c for c in df.columns if c == "epoch" or c.startswith(("loss", "swap_")) or c in EPOCH_COLUMNS]
            frame = df[keep].copy()
            frame.insert(0, "trial_id", trial_id)
            epoch_frames.append(frame)
    trials = pd.DataFrame(trial_rows)
    if len(trials):
        trials = trials.sort_values("trial_number").reset_index(drop=True)
    epochs_df = pd.concat(epoch_frames, ignore_index=True) if epoch_frames else pd.DataFrame(
        columns=["trial_id", "epoch", "val_acc"])
    return trials, epochs_df


def schedule_curves(trials: pd.DataFrame, points: int = 51) -> pd.DataFrame:
    """p(t) of every IAKD trial on a grid of t (so analysis/ can draw schedules without importing the core)."""
    rows = []
    for row in trials.itertuples():
        config = row._asdict()
        if config.get("method") != "iakd":
            continue
        params = _schedule_params(config)
        for i in range(points):
            t = i / (points - 1)
            rows.append({"trial_id": row.trial_id, "t": t,
                         "p": schedule_value(config["swap_schedule"], t, **params)})
    return pd.DataFrame(rows, columns=["trial_id", "t", "p"])


TRIAL_DIR = re.compile(r"_(?P<id>[0-9a-f]{5}_(?P<index>\d{5})|[0-9a-f]{8})_(?P<n>\d+)_")


def trial_id_and_number(trial_dir: str) -> tuple[str, int]:
    """Tune names trial folders ``<trainable>_<trial id>_<n>_<params>_<date>``: searcher trials have 8-hex ids
    and n counting from 1 in ask order; grid trials have ``<5 hex>_<5-digit index>`` ids and n from 0. Returns
    (trial id, 1-based number)."""
    match = TRIAL_DIR.search(Path(trial_dir).name)
    if match is None:
        raise ValueError(f"unexpected Tune trial folder name {trial_dir!r}")
    return match["id"], int(match["n"]) + (1 if match["index"] is not None else 0)


def _schedule_params(config: dict[str, Any]) -> dict[str, float]:
    return {p: config[f"swap_{p}"] for p in ("p0", "p1", "step_at", "ramp_k")
            if config.get(f"swap_{p}") is not None and config[f"swap_{p}"] == config[f"swap_{p}"]}


def _mean_p(config: dict[str, Any]) -> float:
    if config["method"] != "iakd":
        return 0.0
    return mean_probability(config["swap_schedule"], **_schedule_params(config))


def optuna_states(storage_url: str, study_name: str) -> dict[str, dict[str, Any]]:
    """Per Tune trial id: the Optuna trial number and state, read back from the study's storage."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage_url)
    return {t.user_attrs["tune_trial_id"]: {"optuna_number": t.number, "optuna_state": t.state.name}
            for t in study.get_trials(deepcopy=False) if "tune_trial_id" in t.user_attrs}
