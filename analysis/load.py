"""Read run folders (see docs/results.md). Pure file reading: no Ray, no torch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.manifest import ManifestError, SearchOptions, options, version

CHECKOUT_ROOT = Path(__file__).resolve().parent.parent.as_posix()  # this checkout's root
RESULTS = Path(CHECKOUT_ROOT) / "results"


class NotARunError(ValueError):
    """A folder without the files of a run."""


@dataclass
class Run:
    path: Path
    manifest: dict
    trials: pd.DataFrame
    epochs: pd.DataFrame
    schedules: pd.DataFrame

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "sweep")

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def options(self) -> SearchOptions:
        """How a sweep searched (analysis/manifest.py); a sweep's run only."""
        return options(self.manifest)


def load_run(path: str | Path) -> Run:
    path = Path(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        version(manifest)  # a newer contract is refused before anything is read by this one's rules
        trials = pd.read_parquet(path / "trials.parquet")
    except ManifestError as err:
        raise NotARunError(f"{path}: {err}") from None
    except (OSError, ValueError) as err:
        raise NotARunError(f"{path} is not a run folder (needs manifest.json and trials.parquet): {err}") from None
    epochs_path, sched_path = path / "epochs.parquet", path / "schedules.parquet"
    epochs = pd.read_parquet(epochs_path) if epochs_path.exists() else pd.DataFrame()
    schedules = pd.read_parquet(sched_path) if sched_path.exists() else pd.DataFrame(columns=["trial_id", "t", "p"])
    return Run(path, manifest, trials, epochs, schedules)


def find_runs(root: str | Path = RESULTS) -> list[Path]:
    """Every run folder below ``root`` (a folder holding manifest.json and trials.parquet)."""
    return sorted(p.parent for p in Path(root).rglob("trials.parquet") if (p.parent / "manifest.json").exists())


def load_anchors() -> pd.DataFrame:
    return pd.read_csv(Path(__file__).resolve().parent / "anchors.csv")
