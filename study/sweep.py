"""The sweep as a run kind: Optuna (TPE by default) proposes IAKD configurations, Ray Tune runs them, and only
the best complete short runs of each bracket train in full (``internals.BracketPromotionSearch``; or a Ray
scheduler stops weak trials: ASHA, promotion against the running cut-off); the Optuna study in the run folder is
the record of which trials exist and how they ended.

Each session (study/runner.py) first reconciles the study with the trial records: a trial whose record is final
but which the study still shows RUNNING (the driver died between the two) is told now, from its record; other
RUNNING trials were cut short and are re-run under their own number (with brackets: a trial whose short run had
ended waits for its bracket instead, and a promoted one re-runs its full run only). The session then asks for the
rest of the budget, every complete bracket decided again from the records (or ASHA knowing the rung values of
every trial finished before).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from analysis.manifest import options
from analysis.summaries import SWAPS, describe_config, trial_iterations
from iakd_core.config import TrialConfig
from iakd_core.console import display_path
from iakd_core.files import write_json

from .cli import RunError, disk_full
from .internals import (
    BracketPromotionSearch,
    FidelityAwareOptunaSearch,
    TPEWithoutPruned,
    preload_asha,
    trial_by_number,
)
from .ledger import TrialRecord, mark_pruned, read, read_all, record_path
from .progress import Progress
from .runner import Session, Tables, student_file, train_and_report, trial_resources
from .schedulers import hedge_bracket, make_scheduler, synchronous
from .space import SearchSpace, reference_point, to_trial_config
from .tables import result_tables, trial_row

METRIC = "val_acc"
COST = "train_seconds_total"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
STATUS = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "FAIL": "ERROR", "RUNNING": "INTERRUPTED"}


def record_key(number: int) -> str:
    return f"t{number:04d}"


def trial_folder(trial) -> str:
    """Ray Tune's folder of a sweep trial, named by its Optuna number (the one numbering of the tables, the
    report and optuna-dashboard) instead of Ray's own counter."""
    return f"trial-{record_key(trial.config['trial_number'])}-{trial.trial_id}"


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    if name == "tpe-complete":
        return TPEWithoutPruned(seed=seed, multivariate=True, group=True)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)


def storage_url(run_dir: Path, manifest: dict[str, Any]) -> str:
    """The study's storage: a user-given URL, else ``optuna.db`` in *this* run folder (a copy uses its own)."""
    return manifest.get("storage") or f"sqlite:///{run_dir / 'optuna.db'}"


def objectives(manifest: dict[str, Any]) -> tuple[list[str], list[str]]:
    two = options(manifest).objective == "acc+cost"
    return ([METRIC, COST], ["max", "min"]) if two else ([METRIC], ["max"])


def create_study(run_dir: Path, manifest: dict[str, Any], storage: Any = None) -> optuna.Study:
    """The run's study (created, or loaded when it exists; in ``storage`` if given), named, with metric names and
    the facts a dashboard user needs as study attributes."""
    metrics, modes = objectives(manifest)
    study = optuna.create_study(storage=storage or storage_url(run_dir, manifest), study_name=manifest["study_name"],
                                directions=["maximize" if m == "max" else "minimize" for m in modes],
                                load_if_exists=True)
    study.set_metric_names(["val_acc" if m == METRIC else "train_seconds" for m in metrics])
    cfg = manifest["base_config"]
    for key, value in {"preset": manifest["preset"], "dataset": cfg["dataset"], "teacher": cfg["teacher"],
                       "student": cfg["student"], "granularities": manifest["granularities"],
                       "seed": options(manifest).seed, "command": manifest["command"]}.items():
        study.set_user_attr(key, value)
    return study


def load_study(run_dir: Path, manifest: dict[str, Any]) -> optuna.Study:
    return optuna.load_study(study_name=manifest["study_name"], storage=storage_url(run_dir, manifest))


TUNE_KEYS = ("trial_number", "phase")  # what the search adds to a sampled point in a Tune trial's config


def sampled_point(config: dict[str, Any]) -> dict[str, Any]:
    """A Tune trial's config without what the search added: the sampled point."""
    return {k: v for k, v in config.items() if k not in TUNE_KEYS}


def sweep_config(base: dict[str, Any], sampled: dict[str, Any]) -> dict[str, Any]:
    """Base config + sampled parameters -> the trial's full, validated config."""
    params = sampled_point(sampled)
    return TrialConfig.from_dict({**base, **to_trial_config(params)}).to_dict()


def sweep_trial(config: dict[str, Any], base: dict[str, Any], run_dir: str, short_epochs: int | None = None) -> None:
    """Ray Tune trainable: one sampled configuration, recorded (with the point itself) under its Optuna number; in a
    promoting sweep its complete short run first (with synchronous brackets, ``config["phase"]``: the short run or
    the full run, as two Tune trials)."""
    train_and_report(sweep_config(base, config), run_dir, record_key(config["trial_number"]), sampled_point(config),
                     short_epochs=short_epochs, phase=config.get("phase"))


def report_curve(study: optuna.Study, number: int, record: TrialRecord, metrics: list[str]) -> optuna.trial.Trial:
    """Report trial ``number``'s recorded curve into the study (steps it had reported keep their values)."""
    live = trial_by_number(study, number)
    live.set_user_attr("epochs", len(record.epochs))
    if len(metrics) == 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for e in record.epochs:
                live.report(e[METRIC], e["epoch"])
    return live


def tell_from_record(study: optuna.Study, number: int, record: TrialRecord, metrics: list[str]) -> bool:
    """Tell the study how trial ``number`` ended, as its record says (its curve, then COMPLETE, PRUNED or FAIL);
    False when the record says it has not ended."""
    if not record.finished and record.pruned is None or disk_full(record.error):
        return False  # not ended (or ended by a full disk, not by its configuration): re-run it
    report_curve(study, number, record, metrics)
    if record.error is not None:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    elif record.final is None:
        study.tell(number, state=optuna.trial.TrialState.PRUNED)
    else:
        last = record.epochs[-1]
        study.tell(number, [last[m] for m in metrics] if len(metrics) > 1 else last[METRIC])
    return True


def reconcile(study: optuna.Study, records: dict[str, TrialRecord], metrics: list[str]) -> list[int]:
    """Tell the study what ended trials' records say; return the numbers of RUNNING trials to re-run."""
    adopt = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        record = records.get(record_key(t.number))
        if record is None or not tell_from_record(study, t.number, record, metrics):
            adopt.append(t.number)
    return adopt


DAMAGED = ("malformed", "not a database")  # SQLite's words for a damaged file (not for a locked or missing one)


def damaged(err: BaseException) -> str | None:
    """SQLite's message when ``err`` (or an error it was raised from: Optuna wraps them) says the file is damaged."""
    while err is not None:
        if any(word in str(err) for word in DAMAGED):
            return str(getattr(err, "orig", None) or err).splitlines()[0]
        err = err.__cause__ or err.__context__
    return None


def open_study(run_dir: Path, manifest: dict[str, Any], records: dict[str, TrialRecord]) -> optuna.Study:
    """The run's study, created or loaded. An ``optuna.db`` of the run folder that is damaged, or missing or behind
    trial records that exist, is kept aside as ``optuna.db.damaged-<time>`` and the study rebuilt from the records
    (each holds its point, its curve and how it ended): every ended trial as it ended, a trial that was running
    left RUNNING to be re-run, numbers kept; a number without a record is left RUNNING with the point it was given
    (``--points``, the reference point) or none, and re-run. Built aside and moved in place at the end."""
    numbers = sorted(int(k[1:]) for k in records if re.fullmatch(r"t\d+", k))
    try:
        study = create_study(run_dir, manifest)
        asked = len(study.get_trials(deepcopy=False))
        if not numbers or max(numbers) < asked or manifest.get("storage"):
            return study
        reason = f"it holds {asked} trials but the records go up to trial {max(numbers)}"
    except Exception as err:
        reason = damaged(err)
        if reason is None:
            raise
    if manifest.get("storage"):
        raise RunError(f"the study storage {manifest['storage']} is damaged ({reason}); repair or restore it")
    missing = [n for n in numbers if records[record_key(n)].params is None]
    if missing:
        raise RunError(f"{run_dir / 'optuna.db'} is damaged ({reason}) and the trial records cannot rebuild it "
                       f"(trial {missing[0]}'s record has no parameters: written before records kept them); "
                       "restore optuna.db from a backup")
    building = run_dir / "optuna.db.rebuilding"
    building.unlink(missing_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{building}")
    study = create_study(run_dir, manifest, storage)
    space = SearchSpace(manifest["granularities"], options(manifest).search_optimizer, sweep_method(manifest))
    metrics, _ = objectives(manifest)
    points = manifest.get("points") or [reference_point(sweep_method(manifest))]
    ended = 0
    for number in range(max(numbers, default=-1) + 1):
        record = records.get(record_key(number))
        point = record.params if record is not None else (points[number] if number < len(points) else None)
        if point is not None:
            study.enqueue_trial(point)
        trial = study.ask()
        if point is not None:
            space(trial)  # the point, with the distributions the space gives it
        if record is not None:
            ended += tell_from_record(study, number, record, metrics)
    for point in points[max(numbers, default=-1) + 1:]:
        study.enqueue_trial(point)
    storage.engine.dispose()
    aside = run_dir / f"optuna.db.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    for suffix in ("", "-journal", "-wal", "-shm"):
        if (run_dir / f"optuna.db{suffix}").exists():
            os.replace(run_dir / f"optuna.db{suffix}", aside.with_name(aside.name + suffix))
    os.replace(building, run_dir / "optuna.db")
    print(f"{run_dir / 'optuna.db'} was damaged ({reason}): kept as {aside.name} (if it existed); the study was "
          f"rebuilt from {len(numbers)} trial records ({ended} ended, the rest re-run)", file=sys.stderr, flush=True)
    return create_study(run_dir, manifest)


def note_pruned(run_dir: str, number: int, epochs: int) -> None:
    mark_pruned(run_dir, record_key(number), epochs)


def short_value(record: TrialRecord | None, short: int) -> float | None:
    """The final value of the record's complete short run (None: no complete short run in it)."""
    run = [e for e in (record.epochs if record else [])[:short] if e.get("fidelity") == short]
    return float(run[-1][METRIC]) if len(run) == short else None


def recorded_short(run_dir: Path, short: int, number: int) -> float | None:
    path = record_path(run_dir, record_key(number))
    return short_value(read(path), short) if path.exists() else None


def short_outcomes(study: optuna.Study, records: dict[str, TrialRecord], short: int) -> dict[int, float | None]:
    """Trial number -> the final value of its complete short run, for every asked trial that has one (None: a
    trial that failed before its short run ended): what a synchronous bracket is decided on."""
    values: dict[int, float | None] = {}
    for t in study.get_trials(deepcopy=False):
        value = short_value(records.get(record_key(t.number)), short)
        if value is not None or t.state == optuna.trial.TrialState.FAIL:
            values[t.number] = value
    return values


def failed_on_full_disk(run_dir: Path, number: int) -> bool:
    """Whether trial ``number`` failed because the disk is full (its record says so, or less than 1 MiB is free)."""
    path = record_path(run_dir, record_key(number))
    if path.exists() and disk_full(read(path).error):
        return True
    return shutil.disk_usage(run_dir).free < 2**20


def pruned_at_decision(run_dir: str, progress: Progress, number: int, epochs: int) -> None:
    """A bracket's loser: noted in its record, counted by the live view."""
    progress.ended(pruned=True)
    note_pruned(run_dir, number, epochs)


def bracket(manifest: dict[str, Any], number: int) -> int:
    """The scheduler bracket of trial ``number``: 1 in a hedged ASHA sweep's unpruned bracket, else 0."""
    searched = options(manifest)
    hedge = manifest["settings"].get("hedge") if searched.scheduler == "asha" else None
    return hedge_bracket(searched.seed, number, hedge) if hedge else 0


def sweep_method(manifest: dict[str, Any]) -> str:
    """The method a sweep searches (runs made before ``--method`` existed searched IAKD)."""
    return options(manifest).method


def describe(config: dict[str, Any], method: str = "iakd") -> str:
    """A sampled point (or a table row) as the report summarises configs."""
    return describe_config({"method": method, **to_trial_config(config)})


class SweepKind:
    name = "sweep"
    script = "run_sweep.py"

    def session(self, run_dir: Path, manifest: dict[str, Any], base: dict[str, Any]) -> Session:
        from ray import tune
        from ray.tune.search import ConcurrencyLimiter

        searched, settings = options(manifest), manifest["settings"]
        records = read_all(run_dir)
        study = open_study(run_dir, manifest, records)  # a session killed at any point leaves it consistent
        first = not study.get_trials(deepcopy=False)  # nothing asked yet: begin with --points or the reference
        metrics, modes = objectives(manifest)
        adopt = reconcile(study, records, metrics)
        finished = study.get_trials(deepcopy=False, states=FINISHED)
        method = sweep_method(manifest)
        complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(complete, key=lambda t: t.values[0], default=None)
        show = functools.partial(describe, method=method)
        bracketed = synchronous(searched.scheduler, settings)  # the searcher promotes; Tune runs what it hands out
        values = short_outcomes(study, records, settings["short_epochs"]) if bracketed else {}
        progress = Progress(manifest["budget"], trial_iterations(settings), show, done=len(finished),
                            pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in finished),
                            failed=sum(t.state == optuna.trial.TrialState.FAIL for t in finished),
                            best=(best.values[0], show(best.params)) if best else None,
                            short_runs=sum(v is not None for v in values.values()) if bracketed else None)
        remaining = manifest["budget"] - len(finished)
        common = dict(
            space=SearchSpace(manifest["granularities"], searched.search_optimizer, method),
            metric=metrics if len(metrics) > 1 else METRIC, mode=modes if len(modes) > 1 else modes[0],
            points_to_evaluate=(manifest.get("points") or [reference_point(method)]) if first else None,
            sampler=make_sampler(searched.sampler, searched.seed + len(manifest["sessions"])),
            seed=searched.seed, storage=optuna.storages.RDBStorage(storage_url(run_dir, manifest)),
            study_name=manifest["study_name"], max_epochs=trial_iterations(settings),
            full_disk=functools.partial(failed_on_full_disk, run_dir))
        if bracketed:
            from ray.tune.schedulers import FIFOScheduler

            for number in adopt:  # a short run that ended as the last session was killed: its curve, as reported
                if number in values:
                    report_curve(study, number, records[record_key(number)].with_epochs(settings["short_epochs"]),
                                 metrics)
            asked = sum(t.state != optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False))
            search = BracketPromotionSearch(
                **common, short=settings["short_epochs"], size=settings["bracket"],
                reduction_factor=settings["reduction_factor"], budget=manifest["budget"], values=values,
                rerun=[n for n in adopt if n not in values], proposals=manifest["budget"] - asked,
                recorded_short=functools.partial(recorded_short, run_dir, settings["short_epochs"]),
                on_pruned=functools.partial(pruned_at_decision, str(run_dir), progress))
            progress.done_at_start = progress.counts["done"]  # (losers of brackets decided again just now)
            scheduler, samples = FIFOScheduler(), 2 * remaining  # (an upper bound: the searcher says FINISHED)
        else:
            search = FidelityAwareOptunaSearch(**common, adopt=adopt,
                                               on_pruned=functools.partial(note_pruned, str(run_dir)))
            passed = {t.number: max(t.intermediate_values, default=0) for t in study.get_trials(deepcopy=False)
                      if t.number in adopt}  # re-run trials keep the rungs their interrupted attempts passed
            scheduler = make_scheduler(searched.scheduler, settings, searched.seed, passed)
            if searched.scheduler in ("asha", "promote"):  # earlier sessions' trials in its bracket, as if seen
                preload_asha(scheduler, {str(t.number): [e[METRIC] for e in records[record_key(t.number)].epochs]
                                         for t in finished if record_key(t.number) in records
                                         and bracket(manifest, t.number) == 0})
            samples = remaining
        trainable = tune.with_resources(tune.with_parameters(sweep_trial, base=base, run_dir=str(run_dir),
                                                             short_epochs=settings.get("short_epochs")),
                                        trial_resources(settings))
        limiter = ConcurrencyLimiter(search, max_concurrent=settings["concurrency"], batch=searched.deterministic)
        tune_config = tune.TuneConfig(search_alg=limiter, scheduler=scheduler, num_samples=samples,
                                      max_concurrent_trials=settings["concurrency"], reuse_actors=True,
                                      trial_dirname_creator=trial_folder)
        return Session(trainable, tune_config, remaining, progress)

    def tables(self, run_dir: Path, manifest: dict[str, Any], base: dict[str, Any]) -> Tables:
        base = manifest["base_config"]  # paths as given: the tables stay true wherever the folder moves
        study = load_study(run_dir, manifest)
        records = read_all(run_dir)
        rows, configs = [], {}
        asked = [t for t in study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.WAITING]
        for t in asked:
            key = record_key(t.number)
            configs[key] = config = sweep_config(base, t.params)
            rows.append(trial_row(
                key, STATUS[t.state.name], records.get(key, TrialRecord()), config, trial_number=t.number,
                tune_trial_id=t.user_attrs.get("tune_trial_id"), optuna_state=t.state.name,
                bracket=bracket(manifest, t.number),
                use_kd=bool(t.params.get("use_kd", config["kd_weight"] > 0)),
                use_student_ce=bool(t.params.get("use_student_ce", config["student_ce_weight"] > 0))))
        trials, epochs = result_tables(rows, records)
        finished = sum(t.state in FINISHED for t in asked)
        return Tables(trials, epochs, complete=finished == manifest["budget"], configs=configs)

    def finish(self, run_dir: Path, manifest: dict[str, Any], tables: Tables) -> list[str]:
        t = tables.trials
        complete = t[t["status"] == "COMPLETE"] if len(t) else t
        if not len(complete):
            return ["no COMPLETE trial yet: no best configuration"]
        best = complete.loc[complete["val_acc_last"].idxmax()]
        kept = student_file(run_dir, best["trial_id"])
        if not options(manifest).save_students:  # only the best trial's student stays
            for path in kept.parent.glob("*.pt"):
                if path != kept:
                    path.unlink(missing_ok=True)
        facts = {"trial_number": int(best["trial_number"]), "val_acc": float(best["val_acc_last"]),
                 "student": str(kept.relative_to(run_dir)) if kept.exists() else None,
                 "config": tables.configs[best["trial_id"]]}
        swapping = complete[complete["swap_mean_p"] >= SWAPS]
        if sweep_method(manifest) == "iakd" and len(swapping):  # what swapping itself does at its best
            top = swapping.loc[swapping["val_acc_last"].idxmax()]
            facts["best_swapping"] = {"trial_number": int(top["trial_number"]), "val_acc": float(top["val_acc_last"]),
                                      "swap_mean_p": float(top["swap_mean_p"]),
                                      "config": tables.configs[top["trial_id"]]}
        write_json(run_dir / "best_config.json", facts)
        where = display_path(run_dir)
        if sweep_method(manifest) == "iakd":
            ablate = f"python study/run_ablation.py {where}"
        else:
            ablate = f"python study/run_ablation.py <an IAKD sweep of this setting> --tuned {where}"
        return [f"best: val_acc {best['val_acc_last']:.2f}% (trial {int(best['trial_number'])}: "
                f"{describe(best.to_dict(), sweep_method(manifest))})",
                f"next: {ablate}   (the best config on fresh seeds, test set once)",
                f"      python analysis/report.py {where}   (report.md/.html with every figure)",
                f"      optuna-dashboard --host 127.0.0.1 sqlite:///{where}/optuna.db   (pip install optuna-dashboard)"]


SWEEP = SweepKind()
