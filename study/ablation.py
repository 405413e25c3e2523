"""The ablation: the sweep's best config against baselines, the paper reconstruction and its bracket, and
one-factor-at-a-time variants, on fresh seeds, at full fidelity, each evaluated once on the official test set (the
only place the test set is used).

Arms (all on the same seeds; ``ARMS`` says which table each belongs to, what it is compared with and its label):
  student, kd, fitnet, at   every conventional method of the registry, with its literature values
  <method>_tuned            a method's own sweep's best (``--tuned SWEEP``; the study tunes KD with IAKD's budget)
  iakd_paper_default        the paper reconstruction: constant p = 0.5, one unit per stage, CE on the hybrid
  iakd_paper_final_student  + a final student-only phase (p = 0 for the last quarter of training)
  iakd_paper_student_ce     + CE of a student-only pass (weight 1)
  paper_student_bn_hybrid   the reconstruction with the student's statistics as the hybrid sees them
  paper_bn_recalibration    the reconstruction with BN recalibration before evaluation
  iakd_best                 the sweep's best full-fidelity config
  iakd_best_plus_kd         best + the KD term with KD's literature weight and T    (if the best has no KD term)
  iakd_best_swapping        the sweep's best config that swaps (mean p >= SWAPS)   (if the best barely swaps)
  constant_mean_p           best, schedule -> constant at the same mean p           (if the best is not constant)
  no_swap                   best, p = 0 (no teacher unit ever swapped in)
  granularity_<g>           best, at each other supported granularity
  teacher_bn_<mode>         best, with the other BatchNorm mode of swapped-in teacher units (eval / batch)
  student_bn_<mode>         best, with the other mode of the student's statistics (clean / hybrid)
  minus_kd                  best without its KD term                                (if it has one)
  minus_student_ce          best without its student-only CE term                   (if it has one)
  minus_bn_recalibration    best without BN recalibration before evaluation         (if it uses it)
Each arm's factor, reference arm and label are recorded in the trials table, so analysis/ needs no list of arms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.summaries import BARELY_SWAPS, SWAPS
from iakd_core.config import TrialConfig, fields_where
from iakd_core.console import display_path
from iakd_core.hybrid import STUDENT_BN_MODES, TEACHER_BN_MODES
from iakd_core.methods import METHODS, method_overrides, optional_terms_off
from iakd_core.presets import VERDICT_ARMS
from iakd_core.schedules import mean_probability

from .ledger import TrialRecord, read_all
from .progress import Progress
from .runner import Session, Tables, train_and_report, trial_resources
from .tables import result_tables, trial_row

CONVENTIONAL = tuple(m for m in METHODS if m != "iakd")  # student, kd, fitnet, at
PAPER = "iakd_paper_default"
PAPER_LABEL = "IAKD, paper reconstruction (constant p = 0.5, one unit per stage, CE on the hybrid)"

# arm -> (factor: the table it belongs to, versus: the arm it is compared with there, label). Arms named by a
# pattern (granularity_<g>, teacher_bn_<mode>, student_bn_<mode>, <method>_tuned) are described in ``arm_facts``.
ARMS: dict[str, tuple[str, str | None, str]] = {
    "student": ("method", None, "student alone"),
    "kd": ("method", None, "KD, literature values"),
    "fitnet": ("method", None, "FitNet, literature values"),
    "at": ("method", None, "AT, literature values"),
    PAPER: ("method", None, PAPER_LABEL),
    "iakd_paper_final_student": ("method", None, "IAKD, paper reconstruction + final student-only phase "
                                                 "(p = 0 for the last 25 %)"),
    "iakd_paper_student_ce": ("method", None, "IAKD, paper reconstruction + student-only CE (weight 1)"),
    "iakd_best": ("method", None, "IAKD, the sweep's best"),
    "iakd_best_plus_kd": ("method", None, "IAKD, the sweep's best + KD (literature weight and T)"),
    "iakd_best_swapping": ("method", None, f"IAKD, the sweep's best that swaps (mean p ≥ {SWAPS:g})"),
    "paper_student_bn_hybrid": ("paper", PAPER, "paper reconstruction, student BN statistics as the hybrid sees "
                                                "them (student_bn=hybrid)"),
    "paper_bn_recalibration": ("paper", PAPER, "paper reconstruction + BN recalibration (32 batches)"),
    "constant_mean_p": ("schedule", "iakd_best", "best, constant schedule at the same mean p"),
    "no_swap": ("schedule", "iakd_best", "best, p = 0 (never swapped)"),
    "minus_kd": ("loss", "iakd_best", "best without its KD term"),
    "minus_student_ce": ("loss", "iakd_best", "best without its student-only CE term"),
    "minus_bn_recalibration": ("loss", "iakd_best", "best without BN recalibration"),
}

# The readings of the paper a researcher would try, as overrides of the reconstruction.
PAPER_VARIANTS: dict[str, dict[str, Any]] = {
    "iakd_paper_final_student": {"swap_schedule": "step", "swap_p1": 0.0, "swap_step_at": 0.75},
    "iakd_paper_student_ce": {"student_ce_weight": 1.0},
    "paper_student_bn_hybrid": {"student_bn": "hybrid"},
    "paper_bn_recalibration": {"bn_recalibration_batches": 32},
}

# What a tuned arm takes from its sweep's best config: what that sweep searched (the method's declared
# hyperparameters, the optimizer's when it searched them); every other key is the ablation's.
TUNED_KEYS = fields_where("loss", "optimisation") - {"epochs", "batch_size"}


def arm_facts(arm: str) -> tuple[str, str | None, str]:
    """(factor, versus, label) of an arm."""
    if arm in ARMS:
        return ARMS[arm]
    for prefix, factor in (("granularity_", "granularity"), ("teacher_bn_", "batchnorm"),
                           ("student_bn_", "batchnorm")):
        if arm.startswith(prefix):
            return factor, "iakd_best", f"best, {prefix.rstrip('_')} = {arm.removeprefix(prefix)}"
    if arm.endswith("_tuned"):
        method = arm.removesuffix("_tuned")
        return "method", None, f"{method.upper() if len(method) <= 3 else method}, tuned (its own sweep)"
    raise KeyError(f"unknown ablation arm {arm!r}")


def ablation_arms(best: dict[str, Any], granularities: list[int], tuned: dict[str, dict[str, Any]] | None = None,
                  swapping: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Arm name -> config overrides applied on top of the best config. ``tuned``: method -> the best config of
    that method's own sweep; ``swapping``: the IAKD sweep's best config with mean p >= SWAPS (its arm is added
    when the best barely swaps)."""
    cfg = TrialConfig.from_dict(best)
    arms: dict[str, dict[str, Any]] = {m: method_overrides(m) for m in CONVENTIONAL}
    for method, config in (tuned or {}).items():
        arms[f"{method}_tuned"] = {**method_overrides(method), **{k: v for k, v in config.items()
                                                                  if k in TUNED_KEYS}}
    paper = {"method": "iakd", **optional_terms_off(), **method_overrides("iakd")}
    arms[PAPER] = paper
    for arm in ("iakd_paper_final_student", "iakd_paper_student_ce"):
        arms[arm] = {**paper, **PAPER_VARIANTS[arm]}
    arms["iakd_best"] = {}
    if cfg.kd_weight == 0:
        arms["iakd_best_plus_kd"] = {k: METHODS["kd"].literature[k] for k in ("kd_weight", "kd_temperature")}
    best_p = mean_probability(cfg.swap_schedule, **cfg.schedule_params())
    if swapping is not None and best_p < BARELY_SWAPS:
        arms["iakd_best_swapping"] = {k: v for k, v in swapping.items() if k not in NOT_AN_ARM_KEY}
    for arm in ("paper_student_bn_hybrid", "paper_bn_recalibration"):
        arms[arm] = {**paper, **PAPER_VARIANTS[arm]}
    if cfg.swap_schedule != "constant":
        arms["constant_mean_p"] = {"swap_schedule": "constant", "swap_p0": round(best_p, 6)}
    arms["no_swap"] = {"swap_schedule": "constant", "swap_p0": 0.0}
    for g in granularities:
        if g != cfg.units_per_stage:
            arms[f"granularity_{g}"] = {"units_per_stage": g}
    for key, modes in (("teacher_bn", TEACHER_BN_MODES), ("student_bn", STUDENT_BN_MODES)):
        for mode in modes:
            if mode != getattr(cfg, key):
                arms[f"{key}_{mode}"] = {key: mode}
    if cfg.kd_weight > 0:
        arms["minus_kd"] = {"kd_weight": 0.0}
    if cfg.student_ce_weight > 0:
        arms["minus_student_ce"] = {"student_ce_weight": 0.0}
    if cfg.bn_recalibration_batches > 0:
        arms["minus_bn_recalibration"] = {"bn_recalibration_batches": 0}
    return arms


# Keys a swapping config does not carry into its arm: where and how a run happens, and its seed.
NOT_AN_ARM_KEY = fields_where(runtime_only=True) | {"seed"}


def arm_config(base: dict[str, Any], arms: dict[str, dict[str, Any]], arm: str, seed: int) -> dict[str, Any]:
    """The full config of one (arm, seed): the best config with the arm's overrides, evaluated on test once."""
    return TrialConfig.from_dict({**base, **arms[arm], "seed": seed, "evaluate_test": True}).to_dict()


def record_key(arm: str, seed: int) -> str:
    return f"{arm}-seed{seed}"


def grid(manifest: dict[str, Any]) -> list[tuple[str, int]]:
    """Every (arm, seed) of the run, arms in table order: every arm on the run's seeds, then each topped-up arm on
    its further seeds (``more_seeds``, see :func:`top_up`)."""
    more = manifest.get("more_seeds", {})
    return [(arm, seed) for arm in manifest["arms"] for seed in [*manifest["seeds"], *more.get(arm, [])]]


# What --more-seeds tops up unless told otherwise (those a run lacks are left out): the arms of the comparisons a
# verdict rests on.
KEY_ARMS = ("student", *VERDICT_ARMS)


def top_up(manifest: dict[str, Any], arms: list[str], count: int, command: str, commit: str | None = None) -> list[int]:
    """Give each of ``arms`` ``count`` more seeds, the next after its last (seeds run on from the run's first, so
    arms topped up alike stay paired seed for seed); the budget grows by what was added and the command (with the
    code's commit) is kept for the report. Returns the seeds of the first arm."""
    more = manifest.setdefault("more_seeds", {})
    added = {}
    for arm in arms:
        last = max([*manifest["seeds"], *more.get(arm, [])])
        added[arm] = [last + 1 + i for i in range(count)]
        more[arm] = [*more.get(arm, []), *added[arm]]
    manifest["budget"] = len(grid(manifest))
    manifest.setdefault("top_ups", []).append({"arms": arms, "seeds": count, "command": command,
                                               "git_commit": commit})
    return added[arms[0]]


def trial_folder(trial) -> str:
    """Ray Tune's folder of an ablation trial, named by its arm and seed (as its record) instead of Ray's counter."""
    point = trial.config["point"]
    return f"trial-{record_key(point['arm'], point['seed'])}-{trial.trial_id}"


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
        done = {(a, s): records[record_key(a, s)] for a, s in grid(manifest) if record_key(a, s) in records
                and records[record_key(a, s)].finished}
        best = max(((r.final["val_acc"], describe_point({"point": {"arm": a, "seed": s}}))
                    for (a, s), r in done.items() if r.final and "val_acc" in r.final), default=None)
        settings = manifest["settings"]
        trainable = tune.with_resources(
            tune.with_parameters(ablation_trial, base=base, arms=manifest["arms"], run_dir=str(run_dir)),
            trial_resources(settings))
        progress = Progress(manifest["budget"], settings["max_epochs"], describe_point, done=len(done),
                            failed=sum(r.error is not None for r in done.values()), best=best)
        tune_config = tune.TuneConfig(max_concurrent_trials=settings["concurrency"], reuse_actors=True,
                                      trial_dirname_creator=trial_folder)
        return Session(trainable, tune_config, len(todo), progress, param_space={"point": tune.grid_search(todo)})

    def tables(self, run_dir: Path, manifest: dict[str, Any], base: dict[str, Any]) -> Tables:
        records = read_all(run_dir)
        rows, configs = [], {}
        for arm, seed in grid(manifest):
            key = record_key(arm, seed)
            record = records.get(key, TrialRecord())
            configs[key] = config = arm_config(manifest["base_config"], manifest["arms"], arm, seed)
            status = "COMPLETE" if record.final else "ERROR" if record.error else "INTERRUPTED"
            factor, versus, label = arm_facts(arm)
            rows.append(trial_row(key, status, record, config, arm=arm, factor=factor, versus=versus, label=label,
                                  test_acc=(record.final or {}).get("test_acc", float("nan"))))
        trials, epochs = result_tables(rows, records)
        return Tables(trials, epochs, complete=bool(len(trials)) and (trials["status"] != "INTERRUPTED").all(),
                      configs=configs)

    def finish(self, run_dir: Path, manifest: dict[str, Any], tables: Tables) -> list[str]:
        record_study(run_dir, tables.trials)
        return [f"next: python analysis/report.py {display_path(run_dir)}   (report.md/.html: Tables 1-6, figures, "
                "conclusion)",
                f"      optuna-dashboard --host 127.0.0.1 sqlite:///{display_path(run_dir)}/optuna.db"]


def record_study(run_dir: Path, trials) -> None:
    """The ablation as an Optuna study (``optuna.db``, study ``ablation``), so sweeps and ablations open in the
    same viewer: one trial per finished (arm, seed), its value the test accuracy, the arm and seed as parameters
    and the rest of its row (factor, compared with, validation accuracy, mean swap probability) as attributes.
    Rebuilt from the tables each time the run finishes (built aside, then moved in place)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution

    done = trials[trials["status"] == "COMPLETE"] if len(trials) else trials
    path, building = run_dir / "optuna.db", run_dir / "optuna.db.building"
    building.unlink(missing_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="ablation", storage=f"sqlite:///{building}", direction="maximize")
    study.set_metric_names(["test_acc"])
    arms = sorted(set(done["arm"])) if len(done) else []
    seeds = [int(s) for s in done["seed"]] if len(done) else [0]
    space = {"arm": CategoricalDistribution(arms or ["none"]), "seed": IntDistribution(min(seeds), max(seeds))}
    for row in done.to_dict("records"):
        attrs = {k: row[k].item() if hasattr(row[k], "item") else row[k]  # numpy scalars -> JSON
                 for k in ("factor", "versus", "label", "val_acc_last", "swap_mean_p", "trial_id")
                 if k in row and row[k] is not None and row[k] == row[k]}
        study.add_trial(optuna.trial.create_trial(params={"arm": row["arm"], "seed": int(row["seed"])},
                                                  distributions=space, value=float(row["test_acc"]),
                                                  user_attrs=attrs))
    del study
    building.replace(path)


ABLATION = AblationKind()
