"""One runner for every kind of run (sweep, ablation): launch or resume a run folder, one Ray Tune session at a
time, then the result files.

A run folder holds ``manifest.json``, the trial records (``trials/``, study/ledger.py), the Optuna study (sweeps)
and Tune's session folders (``ray/session-<k>/``). Every launch or ``--resume`` is one *session*: a fresh
``tune.Tuner`` over the work that is left, computed from the records and the study, never from Tune's saved
experiment state. Hence:

* after SIGKILL at any moment, ``--resume`` finishes the budget with every trial accounted for once, and a trial
  whose record says it finished is never trained again;
* SIGINT and SIGTERM stop the session (exit 130), trials cut short are ``INTERRUPTED`` in the tables and are
  re-run by ``--resume``; "complete" is decided from the trials, not from ``Tuner.fit`` returning;
* a run folder is relocatable: the manifest stores paths as given (the study as ``optuna.db`` in the folder), and
  every session resolves them again, so resuming a copy never touches the original.

A run kind (``study.sweep.SWEEP``, ``study.ablation.ABLATION``) says what a session trains and how its tables
are built; the runner does the rest.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from analysis.manifest import VERSION as MANIFEST_VERSION
from analysis.manifest import ManifestError, version
from iakd_core import run_trial
from iakd_core.config import TrialConfig
from iakd_core.data import load_splits
from iakd_core.factors import reproducibility_factors
from iakd_core.files import write_json
from iakd_core.targets import prepare_kd_targets
from iakd_core.teacher import get_teacher
from iakd_core.train import pick_device, resolve_precision

from .cli import INTERRUPTED, MLFLOW_DEFAULT, RunError
from .ledger import Recorder
from .progress import Progress
from .tables import environment, now, write_tables


@dataclass
class Session:
    """What one Tune session runs: ``remaining`` trials of ``trainable`` under ``tune_config``."""

    trainable: Any
    tune_config: Any
    remaining: int
    progress: Progress
    param_space: dict[str, Any] | None = None


@dataclass
class Tables:
    trials: pd.DataFrame
    epochs: pd.DataFrame
    complete: bool  # every trial of the budget finished (COMPLETE, PRUNED or ERROR)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial key -> full TrialConfig dict


class RunKind(Protocol):
    name: str
    script: str

    def session(self, run_dir: Path, manifest: dict[str, Any], base: dict[str, Any]) -> Session: ...

    def tables(self, run_dir: Path, manifest: dict[str, Any], base: dict[str, Any]) -> Tables: ...

    def finish(self, run_dir: Path, manifest: dict[str, Any], tables: Tables) -> list[str]: ...


# ---- the trainable's side -----------------------------------------------------------------------------------------
def train_and_report(config: dict[str, Any], run_dir: str, key: str, params: dict[str, Any] | None = None,
                     short_epochs: int | None = None, phase: str | None = None) -> None:
    """One trial through ``iakd_core.run_trial``: record and report every epoch. The last epoch is reported after
    the record's final line is written, together with the final metrics (test accuracy when asked). A trial that
    trains to its end leaves its last-epoch student in ``students/<key>.pt``. ``params``: the sampled point, first
    in the record. ``short_epochs`` (a promoting sweep): first a complete run of that many epochs (its schedules and
    LR compressed into them), reported as iterations 1..E; the scheduler stops the trial there unless it promotes
    it, and then the full run follows as iterations E+1.. (``epoch`` counts iterations, ``run_epoch`` the epoch
    within its run, ``fidelity`` the run's length). ``phase`` (synchronous brackets, ``internals.
    BracketPromotionSearch``): ``short`` trains only the short run; ``full`` only the full run, continuing the
    record of the short run."""
    from ray import tune

    try:
        recorder = Recorder(run_dir, key, params, keep_epochs=(short_epochs or 0) if phase == "full" else 0)
    except ValueError as err:  # a full run whose short run is not in the record: the trial fails, and says why
        Recorder(run_dir, key, params).error(one_line(err))
        raise
    full = TrialConfig.from_dict(config).epochs
    offset = short_epochs or 0
    last: dict[str, Any] = {}

    def reporter(fidelity: int, start: int):
        running = {"val_acc_best": -math.inf, "train_seconds_total": 0.0}

        def report(metrics: dict[str, Any]) -> None:
            running["val_acc_best"] = max(running["val_acc_best"], metrics["val_acc"])
            running["train_seconds_total"] += metrics["epoch_seconds"]
            metrics = {**metrics, **running, "timestamp": time.time()}
            if short_epochs:
                metrics.update(run_epoch=metrics["epoch"], fidelity=fidelity, epoch=start + metrics["epoch"])
            recorder.epoch(metrics)
            if metrics["epoch"] < offset + full:
                tune.report(metrics)
            else:
                last.update(metrics)

        return report

    try:
        if short_epochs and phase != "full":  # the complete short run: no student kept, no test set, diagnostic
            run_trial({**config, "epochs": short_epochs, "evaluate_test": False, "compat_epochs": []},  # at its end
                      reporter(short_epochs, 0))
            if phase == "short":
                return
        final = run_trial(config, reporter(full, offset), student_file=student_file(run_dir, key))
    except Exception as err:
        recorder.error(one_line(err))
        raise
    recorder.final(final)
    tune.report({**last, **({"test_acc": final["test_acc"]} if "test_acc" in final else {})})


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def student_file(run_dir: str | Path, key: str) -> Path:
    return Path(run_dir) / "students" / f"{key}.pt"


def one_line(error: BaseException | str) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


# ---- the driver's side --------------------------------------------------------------------------------------------
def resolve_paths(manifest: dict[str, Any], data_root: str | None = None, teacher_cache: str | None = None
                  ) -> dict[str, Any]:
    """The base config with this session's absolute paths (Tune runs trials in other working directories)."""
    base = dict(manifest["base_config"])
    base["data_root"] = str(Path(data_root or base["data_root"]).expanduser().resolve())
    base["teacher_cache"] = str(Path(teacher_cache or base["teacher_cache"]).expanduser().resolve())
    if base.get("teacher_weights"):
        base["teacher_weights"] = str(Path(base["teacher_weights"]).expanduser().resolve())
    return base


def prepare(base: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Load the data, train-or-load the teacher and build-or-load the KD-target table (``iakd_core.targets``; for
    CPU trials) once, in the driver (all cores); returns manifest facts."""
    cfg = TrialConfig.from_dict(base)
    device = pick_device(cfg.device)
    data = load_splits(cfg)
    start = time.perf_counter()

    def progress(m: dict[str, Any]) -> None:
        print(f"teacher {cfg.teacher} epoch {m['epoch']}/{cfg.teacher_epochs}: val_acc {m['val_acc']:.2f}% "
              f"({time.perf_counter() - start:.0f}s)", file=sys.stderr, flush=True)

    import torch

    def table_progress(done: int, forms: int, seconds: float) -> None:
        if done % 10 == 0 or done == forms:
            print(f"kd targets: {done}/{forms} augmented forms of {len(data.train)} images ({seconds:.0f}s)",
                  file=sys.stderr, flush=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # the driver works alone: use every core
    try:
        teacher, meta, cached = get_teacher(cfg, data, progress=progress)
        print(f"teacher {cfg.teacher}: val_acc {meta['val_acc']:.2f}% ({'cached' if cached else 'trained'}), "
              f"data {data.identity['name']} train {data.identity['train']} / val {data.identity['val']}",
              file=sys.stderr, flush=True)
        # trials without GPUs run on CPU (Ray hides the GPUs from them), whatever the driver sees
        table = None if settings.get("gpus_per_trial") else prepare_kd_targets(
            cfg, teacher, meta, data, torch.device("cpu"), table_progress)
    finally:
        torch.set_num_threads(threads)
    if table is not None:
        print(f"kd targets: table {'x'.join(map(str, table['shape']))} ({'cached' if table['cached'] else 'built'}"
              f", {table['seconds']:.0f}s): KD trials look the teacher's logits up", file=sys.stderr, flush=True)
    return {"teacher": {"key": meta.get("key"), "arch": meta["arch"], "val_acc": meta["val_acc"],
                        "test_acc": meta.get("test_acc"), "cached": cached,
                        "train_size": None if meta.get("source") else meta["dataset"]["train"],
                        "epochs": meta.get("epochs"), "precision": meta.get("precision"),
                        "source": meta.get("source"), "factors": meta.get("factors")},
            "dataset": data.identity,
            "runtime": {"device": str(device), "precision": resolve_precision(cfg.precision, device),
                        "channels_last": cfg.channels_last, "kd_targets": table,
                        "factors": {**reproducibility_factors(device, resolve_precision(cfg.precision, device)),
                                    "threads": cfg.threads}}}


def start_ray(address: str | None, settings: dict[str, Any]) -> None:
    """A private, quiet local Ray on this machine (default) or a connection to ``address``; then check that the
    cluster can hold one trial (CPUs, GPUs), else :class:`RunError`."""
    import logging
    import warnings

    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("ray", "ray.tune", "ray.train"):  # trial errors are recorded in the tables, not dumped here
        logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Ray tables, only our progress lines
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours (install_signal_handlers) decides what an interrupt is
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        else:
            temp_dir = os.path.join(tempfile.gettempdir(), f"iakdray{os.getuid()}")  # AF_UNIX paths stay short
            from .internals import init_local_ray

            init_local_ray(temp_dir, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                           configure_logging=True)
            ip = ray.util.get_node_ip_address()
            if not ipaddress.ip_address(ip).is_loopback:
                print(f"warning: the private Ray listens on {ip}, not on loopback only (Ray was imported before "
                      "study.cli.private_ray_environment could switch its cluster mode off); run the command as a "
                      "script, or pass --address to use a cluster you started", file=sys.stderr, flush=True)
    resources = ray.cluster_resources()
    cpus, gpus = settings["cpus_per_trial"], settings.get("gpus_per_trial") or 0
    if resources.get("CPU", 0) < cpus:
        raise RunError(f"--cpus-per-trial {cpus} but the Ray cluster has {resources.get('CPU', 0):g} CPUs; pass "
                       f"at most {int(resources.get('CPU', 0))}")
    if gpus > resources.get("GPU", 0):
        raise RunError(f"--gpus-per-trial {gpus:g} but the Ray cluster has {resources.get('GPU', 0):g} GPUs; pass "
                       "--gpus-per-trial 0 (CPU trials), or start Ray on machines with GPUs")


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM both interrupt the session (after ``ray.init``, which replaces a SIGTERM handler)."""

    def interrupt(signum, frame):
        if INTERRUPTED.is_set():  # a second signal while the tables are being written: let them finish
            print("stopping: writing the tables", file=sys.stderr, flush=True)
            return
        INTERRUPTED.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def trial_resources(settings: dict[str, Any]) -> dict[str, float]:
    resources = {"cpu": settings["cpus_per_trial"]}
    if settings.get("gpus_per_trial"):
        resources["gpu"] = settings["gpus_per_trial"]
    return resources


def launch(kind: RunKind, run_dir: Path, manifest: dict[str, Any], address: str | None) -> int:
    """Create the run folder and run its first session (a folder that fails before any trial is removed). Ray
    starts first, so a cluster that cannot hold a trial is reported before anything is written or trained."""
    check_mlflow(manifest.get("mlflow"))
    start_ray(address, manifest["settings"])
    install_signal_handlers()
    run_dir.mkdir(parents=True)
    manifest = {"kind": kind.name, "version": MANIFEST_VERSION, "command": " ".join([Path(sys.argv[0]).name,
                                                                                   *sys.argv[1:]]), **manifest,
                "started": now(), "status": "running", "sessions": [], **environment()}
    write_json(run_dir / "manifest.json", manifest)
    try:
        manifest.update(prepare(resolve_paths(manifest), manifest["settings"]))
    except BaseException:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    write_json(run_dir / "manifest.json", manifest)
    return run_session(kind, run_dir, manifest)


def resume(kind: RunKind, run_dir: Path, address: str | None, data_root: str | None = None,
           teacher_cache: str | None = None) -> int:
    manifest = read_manifest(run_dir, kind.name)
    check_mlflow(manifest.get("mlflow"))
    start_ray(address or manifest.get("address"), manifest["settings"])
    install_signal_handlers()
    prepare(resolve_paths(manifest, data_root, teacher_cache), manifest["settings"])
    print(f"resuming {run_dir.name}: budget {manifest['budget']}", file=sys.stderr, flush=True)
    return run_session(kind, run_dir, manifest, data_root, teacher_cache)


# Config keys added after runs were made, with the value those runs had (a resumed or ablated old run keeps it).
ADDED_KEYS = {"student_bn": "hybrid"}


def with_added_keys(config: dict[str, Any]) -> dict[str, Any]:
    """A config recorded before ``ADDED_KEYS`` existed, completed with the values it ran with."""
    return {**ADDED_KEYS, **config}


def read_manifest(run_dir: Path, kind: str) -> dict[str, Any]:
    """The run's manifest; a base config recorded before a key was added gets the value it ran with."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        raise RunError(f"{run_dir} is not {article(kind)} {kind} run folder (no readable manifest.json); pass a "
                       f"folder that run_{kind}.py created") from None
    if manifest.get("kind") != kind:
        other = manifest.get("kind", "unknown")
        raise RunError(f"{run_dir} is not {article(kind)} {kind} run folder (its manifest says kind {other!r}); "
                       f"resume it with run_{other}.py --resume")
    try:
        version(manifest)
    except ManifestError as err:
        raise RunError(f"{run_dir}: {err}") from None
    manifest["base_config"] = with_added_keys(manifest.get("base_config", {}))
    return manifest


def run_session(kind: RunKind, run_dir: Path, manifest: dict[str, Any], data_root: str | None = None,
                teacher_cache: str | None = None) -> int:
    from ray import tune

    base = resolve_paths(manifest, data_root, teacher_cache)
    session = kind.session(run_dir, manifest, base)
    number = len(manifest["sessions"])
    manifest["sessions"].append({"started": now(), "remaining": session.remaining})
    write_json(run_dir / "manifest.json", manifest)
    started = time.time()
    callbacks = [session.progress, *mlflow_callbacks(run_dir, manifest)]
    try:  # an interrupt during start-up that Python swallowed where it landed (a fork callback) is still noted:
        if session.remaining > 0 and not INTERRUPTED.is_set():  # no trial starts after it
            tune.Tuner(session.trainable, param_space=session.param_space, tune_config=session.tune_config,
                       run_config=tune.RunConfig(name=f"session-{number}", storage_path=str(run_dir / "ray"),
                                                 verbose=0, callbacks=callbacks,
                                                 failure_config=tune.FailureConfig(max_failures=0))).fit()
    except KeyboardInterrupt:
        INTERRUPTED.set()
    if INTERRUPTED.is_set():  # stop the trials still running before their records are read
        import ray

        ray.shutdown()
    return finish(kind, run_dir, manifest, base, started)


def mlflow_tracking_uri(run_dir: Path, uri: str) -> str:
    return f"sqlite:///{(run_dir / MLFLOW_DEFAULT).resolve()}" if uri == MLFLOW_DEFAULT else uri


def check_mlflow(uri: str | None) -> None:
    """Fail before anything is written when ``--mlflow`` is asked for but MLflow is not installed."""
    if uri is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise RunError("--mlflow needs MLflow, which is not installed: pip install -e '.[mlflow]' (or drop "
                       "--mlflow)") from None


def mlflow_callbacks(run_dir: Path, manifest: dict[str, Any]) -> list:
    """Ray Tune's MLflow logger (one MLflow run per trial: its config, every reported metric) when asked for."""
    uri = manifest.get("mlflow")
    if uri is None:
        return []
    check_mlflow(uri)
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return [MLflowLoggerCallback(tracking_uri=mlflow_tracking_uri(run_dir, uri),
                                 experiment_name=f"iakd-{manifest.get('name', run_dir.name)}", save_artifact=False)]


def finish(kind: RunKind, run_dir: Path, manifest: dict[str, Any], base: dict[str, Any], started: float) -> int:
    tables = kind.tables(run_dir, manifest, base)
    write_tables(run_dir, tables.trials, tables.epochs)
    lines = kind.finish(run_dir, manifest, tables)
    session = manifest["sessions"][-1]
    session.update(ended=now(), seconds=round(time.time() - started, 1))
    counts = tables.trials["status"].value_counts().to_dict() if len(tables.trials) else {}
    manifest.update(status="complete" if tables.complete else "interrupted", ended=now(), counts=counts,
                    wall_seconds=round(sum(s.get("seconds", 0) for s in manifest["sessions"]), 1))
    write_json(run_dir / "manifest.json", manifest)
    text = ", ".join(f"{v} {k.lower()}" for k, v in counts.items())
    finished = sum(v for k, v in counts.items() if k != "INTERRUPTED")
    print(f"{'done' if tables.complete else 'interrupted'}: {finished}/{manifest['budget']} trials finished "
          f"({text}) in {manifest['wall_seconds']:.0f}s -> {run_dir}", file=sys.stderr, flush=True)
    for line in lines:
        print(line, file=sys.stderr)
    if tables.complete:
        return 0
    print(f"resume with: python study/{kind.script} --resume {run_dir}", file=sys.stderr, flush=True)
    return 130

