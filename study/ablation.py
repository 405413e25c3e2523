"""The ablation: the sweep's best config against baselines and one-factor-at-a-time variants, on fresh seeds, at
full fidelity, each evaluated once on the official test set (the only place the test set is used).

Arms (all on the same seeds):
  student, kd, fitnet, at  every conventional method of the registry (``presets.METHOD_DEFAULTS``), with its
                           literature weights, no IAKD terms
  iakd_paper_default       constant p = 0.5, one unit per stage, CE only
  iakd_best                the sweep's best full-fidelity config
  iakd_best_plus_kd        best + the KD term with KD's literature weight and T    (if the best has no KD term)
  constant_mean_p          best, schedule -> constant at the same mean p           (if the best is not constant)
  no_swap                  best, p = 0 (no teacher unit ever swapped in)
  granularity_<g>          best, at each other supported granularity
  teacher_bn_<mode>        best, with the other BatchNorm mode of swapped-in teacher units (eval / batch)
  minus_kd                 best without its KD term                                (if it has one)
  minus_student_ce         best without its student-only CE term                   (if it has one)
  minus_bn_recalibration   best without BN recalibration before evaluation         (if it uses it)
Each arm's factor (the table it belongs to) is recorded in the trials table, so analysis/ needs no list of arms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iakd_core.config import TrialConfig
from iakd_core.hybrid import TEACHER_BN_MODES
from iakd_core.presets import METHOD_DEFAULTS, NO_EXTRA_TERMS, method_overrides
from iakd_core.schedules import mean_probability

from .ledger import TrialRecord, read_all
from .progress import Progress
from .records import result_tables, trial_row
from .runner import Session, Tables, train_and_report, trial_resources

CONVENTIONAL = tuple(m for m in METHOD_DEFAULTS if m != "iakd")  # student, kd, fitnet, at

# Which table each arm belongs to (an arm may serve several; iakd_best is the reference row of every ablation).
FACTORS = {
    **{m: "method" for m in CONVENTIONAL}, "iakd_paper_default": "method", "iakd_best": "method",
    "iakd_best_plus_kd": "method", "constant_mean_p": "schedule", "no_swap": "schedule",
    "minus_kd": "loss", "minus_student_ce": "loss", "minus_bn_recalibration": "loss",
}


def ablation_arms(best: dict[str, Any], granularities: list[int]) -> dict[str, dict[str, Any]]:
    """Arm name -> config overrides applied on top of the best config."""
    cfg = TrialConfig.from_dict(best)
    arms: dict[str, dict[str, Any]] = {
        m: method_overrides(m) for m in CONVENTIONAL}
    arms["iakd_paper_default"] = {"method": "iakd", **NO_EXTRA_TERMS, **METHOD_DEFAULTS["iakd"]}
    arms["iakd_best"] = {}
    if cfg.kd_weight == 0:
        arms["iakd_best_plus_kd"] = {k: METHOD_DEFAULTS["kd"][k] for k in ("kd_weight", "kd_temperature")}
    if cfg.swap_schedule != "constant":
        arms["constant_mean_p"] = {"swap_schedule": "constant",
                                   "swap_p0": round(mean_probability(cfg.swap_schedule, **cfg.schedule_params()), 6)}
    arms["no_swap"] = {"swap_schedule": "constant", "swap_p0": 0.0}
    for g in granularities:
        if g != cfg.units_per_stage:
            arms[f"granularity_{g}"] = {"units_per_stage": g}
    for mode in TEACHER_BN_MODES:
        if mode != cfg.teacher_bn:
            arms[f"teacher_bn_{mode}"] = {"teacher_bn": mode}
    if cfg.kd_weight > 0:
        arms["minus_kd"] = {"kd_weight": 0.0}
    if cfg.student_ce_weight > 0:
        arms["minus_student_ce"] = {"student_ce_weight": 0.0}
    if cfg.bn_recalibration_batches > 0:
        arms["minus_bn_recalibration"] = {"bn_recalibration_batches": 0}
    return arms


def factor_of(arm: str) -> str:
    for prefix in ("granularity", "teacher_bn"):
        if arm.startswith(prefix + "_"):
            return prefix
    return FACTORS[arm]


def arm_config(base: dict[str, Any], arms: dict[str, dict[str, Any]], arm: str, seed: int) -> dict[str, Any]:
    """The full config of one (arm, seed): the best config with the arm's overrides, evaluated on test once."""
    return TrialConfig.from_dict({**base, **arms[arm], "seed": seed, "evaluate_test": True}).to_dict()


def record_key(arm: str, seed: int) -> str:
    return f"{arm}-seed{seed}"


def grid(manifest: dict[str, Any]) -> list[tuple[str, int]]:
    """Every (arm, seed) of the run, arms in table order, all arms on the same seeds."""
    return [(arm, seed) for arm in manifest["arms"] for seed in manifest["seeds"]]


def ablation_trial(config: dict[str, Any], base: dict[str, Any], arms: dict[str, dict[str, Any]],
                   run_dir: str) -> None:
    """Ray Tune trainable: one (arm, seed) point of the grid; its last report carries the test accuracy."""
    arm, seed = config["point"]["arm"], config["point"]["seed"]
    train_and_report(arm_config(base, arms, arm, seed), run_dir, record_key(arm, seed))


def describe_point(config: dict[str, Any]) -> str:
    return f"{config['point']['arm']} seed {config['point']['seed']}"


class AblationKind:
    name = "ablation"
    script = "run_ablation.py"

    def session(self, run_dir: Path, manifest: dict[str, Any], base: dict[str, Any]) -> Session:
        from ray import tune

        records = read_all(run_dir)
        todo = [{"arm": a, "seed": s} for a, s in grid(manifest)
                if not records.get(record_key(a, s), TrialRecord()).finished]
        done = [records[record_key(a, s)] for a, s in grid(manifest) if record_key(a, s) in records
                and records[record_key(a, s)].finished]
        settings = manifest["settings"]
        trainable = tune.with_resources(
            tune.with_parameters(ablation_trial, base=base, arms=manifest["arms"], run_dir=str(run_dir)),
            trial_resources(settings))
        progress = Progress(manifest["budget"], settings["max_epochs"], describe_point, done=len(done),
                            failed=sum(r.error is not None for r in done))
        tune_config = tune.TuneConfig(max_concurrent_trials=settings["concurrency"], reuse_actors=True)
        return Session(trainable, tune_config, len(todo), progress, param_space={"point": tune.grid_search(todo)})

    def tables(self, run_dir: Path, manifest: dict[str, Any], base: dict[str, Any]) -> Tables:
        records = read_all(run_dir)
        rows, configs = [], {}
        for arm, seed in grid(manifest):
            key = record_key(arm, seed)
            record = records.get(key, TrialRecord())
            configs[key] = config = arm_config(manifest["base_config"], manifest["arms"], arm, seed)
            status = "COMPLETE" if record.final else "ERROR" if record.error else "INTERRUPTED"
            rows.append(trial_row(key, status, record, config, arm=arm, factor=factor_of(arm),
                                  test_acc=(record.final or {}).get("test_acc", float("nan"))))
        trials, epochs = result_tables(rows, records)
        return Tables(trials, epochs, complete=bool(len(trials)) and (trials["status"] != "INTERRUPTED").all(),
                      configs=configs)

    def finish(self, run_dir: Path, manifest: dict[str, Any], tables: Tables) -> list[str]:
        return []


ABLATION = AblationKind()
