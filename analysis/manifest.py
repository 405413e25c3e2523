"""The run contract: what a run folder's ``manifest.json`` holds, in one typed definition.

The study writes a manifest when it launches a run (``study/runner.py`` adds ``version``; the sweep's command
records its ``options`` through :func:`search_options`), and everyone who later needs to know how a sweep searched
(resume, the ablation, the replay, the report, bench scripts) reads :func:`options`. ``args`` (argparse's
namespace, every option as given) stays in the manifest for the record, but nothing reads it: a renamed CLI flag
changes what is recorded there, never what is read. Manifests written before ``version`` existed (version 1) are
read from their ``args`` with the defaults of their day. ``FIELDS`` lists every key a finished run's manifest has,
with what it means; ``docs/results.md`` describes each of them (tests/test_manifest.py and the end-to-end tests
check real runs against both; every committed manifest is checked to stay readable).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

VERSION = 2  # 1: runs before this module (no `version`, no `options`: read from `args`)


class ManifestError(ValueError):
    """A manifest this code cannot read (written by a newer version, or not a sweep's where one is needed)."""


@dataclass(frozen=True)
class SearchOptions:
    """How a sweep was asked to search: the options that later readers act on."""

    method: str = "iakd"  # the method searched (run_sweep.py --method); version 1 runs before the option: iakd
    sampler: str = "tpe"  # Optuna sampler (study.schedulers.SAMPLERS)
    scheduler: str = "asha"  # asha, promote or fifo; version 1 runs before --scheduler: asha
    seed: int = 0  # the sweep seed (sampler, hedge brackets; ablation seeds derive from it; version 1: also `seed`)
    objective: str = "acc"  # acc, or acc+cost (two objectives: accuracy and training seconds)
    search_optimizer: bool = False  # lr and weight decay searched too
    save_students: bool = False  # every COMPLETE trial's student kept, not only the best's
    deterministic: bool = False  # one trial at a time, proposals in order: a seed repeats the sweep exactly

    def record(self) -> dict[str, Any]:
        return asdict(self)


def search_options(args: Any) -> SearchOptions:
    """The options of a sweep command's parsed arguments (attribute access: a renamed flag fails here, loudly)."""
    return SearchOptions(method=args.method, sampler=args.sampler, scheduler=args.scheduler, seed=int(args.seed),
                         objective=args.objective, search_optimizer=bool(args.search_optimizer),
                         save_students=bool(args.save_students), deterministic=bool(args.deterministic))


def version(manifest: dict[str, Any]) -> int:
    """The manifest's contract version; a newer one than this code knows is refused (one line)."""
    found = int(manifest.get("version", 1))
    if found > VERSION:
        raise ManifestError(f"this run's manifest has contract version {found}, newer than this code's {VERSION}; "
                            "update the harness (git pull) to read it")
    return found


def options(manifest: dict[str, Any]) -> SearchOptions:
    """How the sweep searched, from a manifest of any version."""
    if manifest.get("kind", "sweep") != "sweep":
        raise ManifestError(f"a {manifest.get('kind')} run records no search options; read its sweep's manifest")
    if version(manifest) >= 2:
        return SearchOptions(**manifest["options"])
    args = manifest.get("args") or {}
    known = {f.name for f in fields(SearchOptions)}
    recorded = {k: v for k, v in args.items() if k in known and v is not None}
    return SearchOptions(**recorded)


# Every key of a finished run's manifest (docs/results.md says what each holds).
COMMON_FIELDS = ("kind", "version", "command", "args", "base_config", "preset", "budget", "settings",
                 "granularities", "address", "name", "mlflow", "started", "ended", "status", "sessions",
                 "wall_seconds", "counts", "teacher", "dataset", "runtime", "versions", "machine", "git_commit")
SWEEP_FIELDS = COMMON_FIELDS + ("options", "points", "storage", "study_name")
ABLATION_FIELDS = COMMON_FIELDS + ("seeds", "arms", "source_best", "source_sweep", "source_sweep_status",
                                   "tuned_sweeps", "sweep_budget", "tuned_budgets",
                                   "more_seeds", "top_ups")  # the last two only once topped up (--more-seeds)
FIELDS = {"sweep": SWEEP_FIELDS, "ablation": ABLATION_FIELDS}
