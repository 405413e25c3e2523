"""Result files of a run folder (the contract analysis/ reads; schema in docs/results.md).

``trials.parquet`` (one row per trial), ``epochs.parquet`` (one row per trial and epoch), ``schedules.parquet``,
``manifest.json``, ``best_config.json``. Written atomically (temporary file, then rename) so a reader never sees
half a table; built from the trial records (study/ledger.py) by the run kinds (study/sweep.py, study/ablation.py).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd

from iakd_core.files import write_parquet
from iakd_core.schedules import mean_probability, schedule_params, schedule_value

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def write_tables(run_dir: Path, trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
    write_parquet(trials, run_dir / "trials.parquet")
    write_parquet(epochs, run_dir / "epochs.parquet")
    write_parquet(schedule_curves(trials), run_dir / "schedules.parquet")


def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """The checkout's commit, ``+dirty`` when a file outside ``results/`` differs from it (what runs write under
    ``results/``, e.g. a study regenerating the committed reference, is output, not code)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", ":(exclude)results"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
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


def schedule_curves(trials: pd.DataFrame, points: int = 51) -> pd.DataFrame:
    """p(t) of every IAKD trial on a grid of t (so analysis/ can draw schedules without importing the core)."""
    rows = []
    for row in trials.itertuples():
        config = row._asdict()
        if config.get("method") != "iakd":
            continue
        params = schedule_params(config)
        for i in range(points):
            t = i / (points - 1)
            rows.append({"trial_id": row.trial_id, "t": t,
                         "p": schedule_value(config["swap_schedule"], t, **params)})
    return pd.DataFrame(rows, columns=["trial_id", "t", "p"])


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def mean_swap_probability(config: dict[str, Any]) -> float:
    if config["method"] != "iakd":
        return 0.0
    return mean_probability(config["swap_schedule"], **schedule_params(config))


EPOCH_COLUMNS = ("epoch", "loss", "train_acc", "val_acc", "val_acc_recal", "val_loss", "lr", "epoch_seconds",
                 "eval_seconds", "images_per_second", "val_acc_best", "train_seconds_total", "timestamp",
                 "fidelity", "run_epoch")


def epoch_frame(key_column: str, key: Any, epochs: list[dict[str, Any]]) -> pd.DataFrame:
    """One trial's epochs table rows from its record: the documented columns, every loss term, swap rate and
    compatibility figure."""
    df = pd.DataFrame(epochs)
    keep = [c for c in df.columns if c in EPOCH_COLUMNS or c.startswith(("loss_", "swap_", "compat_"))]
    df = df[keep].copy()
    df.insert(0, key_column, key)
    return df


def trial_row(key: str, status: str, record, config: dict[str, Any], **columns: Any) -> dict[str, Any]:
    """One ``trials.parquet`` row: the key, the run kind's own ``columns``, the status, what the trial's record
    says (summary of its epochs, error, precision used, where its KD targets came from), then every config key."""
    row = {"trial_id": key, **columns, "status": status, "reason": record.error if status == "ERROR" else None,
           **trial_summary(record.epochs if status != "INTERRUPTED" else []),
           "swap_mean_p": mean_swap_probability(config), "precision": (record.final or {}).get("precision"),
           "kd_targets_source": (record.final or {}).get("kd_targets")}
    row.update({k: v for k, v in config.items() if k not in row})
    return row


def result_tables(rows: list[dict[str, Any]], records: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``trials.parquet`` and ``epochs.parquet`` from the rows and the records of their trials (the epochs of an
    interrupted trial are left out: it runs again from scratch)."""
    frames = [epoch_frame("trial_id", r["trial_id"], records[r["trial_id"]].epochs) for r in rows
              if r["status"] != "INTERRUPTED" and r["trial_id"] in records and records[r["trial_id"]].epochs]
    epochs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["trial_id", "epoch"])
    return pd.DataFrame(rows), epochs


def trial_summary(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-trial columns computed from its epochs."""
    if not epochs:
        return {"epochs": 0, "val_acc_last": float("nan"), "short_val_acc": float("nan"),
                "val_acc_best": float("nan"), "train_seconds": 0.0,
                "eval_seconds": 0.0, "images_per_second": float("nan")}
    short = [e for e in epochs if e.get("fidelity") is not None and e["fidelity"] == epochs[0]["fidelity"]]
    promoting = epochs[0].get("fidelity") is not None
    last_run = [e for e in epochs if e.get("fidelity") == epochs[-1].get("fidelity")]  # a promoted trial: its full run
    return {"epochs": int(epochs[-1]["epoch"]), "val_acc_last": float(epochs[-1]["val_acc"]),
            "short_val_acc": float(short[-1]["val_acc"]) if promoting else float("nan"),
            "val_acc_best": float(max(e["val_acc"] for e in last_run)),
            "train_seconds": float(sum(e["epoch_seconds"] for e in epochs)),
            "eval_seconds": float(sum(e["eval_seconds"] for e in epochs)),
            "images_per_second": float(sum(e["images_per_second"] for e in epochs) / len(epochs))}
