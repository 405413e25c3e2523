"""Per-trial records, written by the trial itself: ``<run>/trials/<key>.jsonl``.

The trainable appends one line per epoch (the metrics it is about to report), then one ``final`` line (or an
``error`` line) *before* its last report, so a trial that finished has a final line even if the driver is killed
the next instant. The driver builds ``trials.parquet`` / ``epochs.parquet`` from these records and from the Optuna
study (sweeps), never from Ray Tune's experiment state: a resumed run reconciles with what really happened.
Keys: sweeps ``t<optuna number>``, ablations ``<arm>-seed<seed>``. A sweep trial's record starts with the point of
the search space it trains (a ``params`` line), and the driver appends a ``pruned`` line when the scheduler stops
it, so the records alone can rebuild a damaged Optuna study (study/sweep.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FOLDER = "trials"


@dataclass
class TrialRecord:
    epochs: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    error: str | None = None
    params: dict[str, Any] | None = None
    pruned: int | None = None  # the epoch at which the scheduler stopped it

    def with_epochs(self, n: int) -> TrialRecord:
        """The record as it stood after its first ``n`` epochs."""
        return TrialRecord(self.epochs[:n], None, None, self.params, None)

    @property
    def finished(self) -> bool:
        """Trained to the end (``final``) or failed (``error``): nothing left to run."""
        return self.final is not None or self.error is not None


class Recorder:
    """Writes one trial's record; starting it again (a re-run) starts the record afresh, except for its first
    ``keep_epochs`` epochs (a promotion's full run continues the record of its complete short run)."""

    def __init__(self, run_dir: str | Path, key: str, params: dict[str, Any] | None = None,
                 keep_epochs: int = 0) -> None:
        self.path = record_path(run_dir, key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = read(self.path).epochs[:keep_epochs] if keep_epochs and self.path.exists() else []
        if len(kept) < keep_epochs:
            raise ValueError(f"{self.path} holds {len(kept)} of the {keep_epochs} epochs its continuation needs")
        lines = ([_line("params", {"values": params})] if params is not None else []) + [_line("epoch", m)
                                                                                          for m in kept]
        fresh = self.path.with_suffix(".new")  # (a kill never leaves a continued record without its short run)
        fresh.write_text("".join(lines))
        os.replace(fresh, self.path)

    def _write(self, kind: str, values: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(_line(kind, values))

    def epoch(self, metrics: dict[str, Any]) -> None:
        self._write("epoch", metrics)

    def final(self, metrics: dict[str, Any]) -> None:
        self._write("final", metrics)

    def error(self, reason: str) -> None:
        self._write("error", {"reason": reason})


def record_path(run_dir: str | Path, key: str) -> Path:
    return Path(run_dir) / FOLDER / f"{key}.jsonl"


def mark_pruned(run_dir: str | Path, key: str, epochs: int) -> None:
    """The driver's note that the scheduler stopped this trial after ``epochs`` (the trial no longer writes)."""
    with open(record_path(run_dir, key), "a") as f:
        f.write(json.dumps({"kind": "pruned", "epochs": epochs}) + "\n")


def _line(kind: str, values: dict[str, Any]) -> str:
    return json.dumps({"kind": kind, **values}, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def read(path: Path) -> TrialRecord:
    record = TrialRecord()
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        kind = entry.pop("kind", None)
        if kind == "epoch":
            record.epochs.append(entry)
        elif kind == "final":
            record.final = entry
        elif kind == "error":
            record.error = entry.get("reason")
        elif kind == "params":
            record.params = entry.get("values")
        elif kind == "pruned":
            record.pruned = entry.get("epochs")
    return record


def read_all(run_dir: str | Path) -> dict[str, TrialRecord]:
    folder = Path(run_dir) / FOLDER
    return {p.stem: read(p) for p in sorted(folder.glob("*.jsonl"))} if folder.is_dir() else {}
