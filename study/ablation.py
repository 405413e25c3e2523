"""The ablation: the sweep's best config against baselines and one-factor-at-a-time variants, on fresh seeds, at
full fidelity, each evaluated once on the official test set (the only place the test set is used).

Arms (all on the same seeds):
  student            the student alone (CE)
  kd                 Hinton KD with literature weights (T = 4, 0.9 KL / 0.1 CE)
  iakd_best          the sweep's best full-fidelity config
  iakd_paper_default constant p = 0.5, one unit per stage, CE only
  constant_mean_p    best, schedule -> constant at the same mean p           (if the best is not constant)
  no_swap            best, p = 0 (no teacher unit ever swapped in)
  granularity_<g>    best, at each other supported granularity
  minus_kd           best without its KD term                                (if it has one)
  minus_student_ce   best without its student-only CE term                   (if it has one)
  minus_bn_recalibration  best without BN recalibration before evaluation  (if it uses it)
"""

from __future__ import annotations

from typing import Any

from ray import tune

from iakd_core import run_trial
from iakd_core.config import TrialConfig
from iakd_core.presets import METHOD_DEFAULTS
from iakd_core.schedules import mean_probability

# Which table each arm belongs to (an arm may serve several; iakd_best is the reference row of every ablation).
FACTORS = {
    "student": "method", "kd": "method", "iakd_best": "method", "iakd_paper_default": "method",
    "constant_mean_p": "schedule", "no_swap": "schedule",
    "minus_kd": "loss", "minus_student_ce": "loss", "minus_bn_recalibration": "loss",
}

NO_EXTRA_TERMS = {"kd_weight": 0.0, "student_ce_weight": 0.0, "feature_weight": 0.0, "feature_term": "none"}


def ablation_arms(best: dict[str, Any], granularities: list[int]) -> dict[str, dict[str, Any]]:
    """Arm name -> config overrides applied on top of the best config."""
    cfg = TrialConfig.from_dict(best)
    arms: dict[str, dict[str, Any]] = {
        "student": {"method": "student", "bn_recalibration_batches": 0, **NO_EXTRA_TERMS,
                    **METHOD_DEFAULTS["student"]},
        "kd": {"method": "kd", "bn_recalibration_batches": 0, **NO_EXTRA_TERMS, **METHOD_DEFAULTS["kd"]},
        "iakd_best": {},
        "iakd_paper_default": {"method": "iakd", "swap_schedule": "constant", "swap_p0": 0.5,
                               "swap_profile": "uniform", "units_per_stage": 1, "swap_mode": "bernoulli",
                               "ce_weight": 1.0, "bn_recalibration_batches": 0, **NO_EXTRA_TERMS},
    }
    if cfg.swap_schedule != "constant":
        arms["constant_mean_p"] = {"swap_schedule": "constant",
                                   "swap_p0": round(mean_probability(cfg.swap_schedule, **cfg.schedule_params()), 6)}
    arms["no_swap"] = {"swap_schedule": "constant", "swap_p0": 0.0}
    for g in granularities:
        if g != cfg.units_per_stage:
            arms[f"granularity_{g}"] = {"units_per_stage": g}
    if cfg.kd_weight > 0:
        arms["minus_kd"] = {"kd_weight": 0.0}
    if cfg.student_ce_weight > 0:
        arms["minus_student_ce"] = {"student_ce_weight": 0.0}
    if cfg.bn_recalibration_batches > 0:
        arms["minus_bn_recalibration"] = {"bn_recalibration_batches": 0}
    return arms


def factor_of(arm: str) -> str:
    return "granularity" if arm.startswith("granularity_") else FACTORS[arm]


def arm_config(base: dict[str, Any], arms: dict[str, dict[str, Any]], arm: str, seed: int) -> dict[str, Any]:
    return {**base, **arms[arm], "seed": seed, "evaluate_test": True, "fault": "none"}


def ablation_trial(config: dict[str, Any], base: dict[str, Any], arms: dict[str, dict[str, Any]]) -> None:
    """Tune trainable: one (arm, seed); the last report carries the test accuracy."""
    cfg = arm_config(base, arms, config["arm"], config["seed"])
    epochs = TrialConfig.from_dict(cfg).epochs
    last: dict[str, Any] = {}

    def report(metrics: dict[str, Any]) -> None:
        if metrics["epoch"] < epochs:
            tune.report(metrics)
        else:
            last.update(metrics)

    final = run_trial(cfg, report)
    tune.report({**last, "test_acc": final["test_acc"], "val_acc_best": final["val_acc_best"]})


def ablation_resolver(base: dict[str, Any], arms: dict[str, dict[str, Any]]):
    def resolve(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        full = TrialConfig.from_dict(arm_config(base, arms, config["arm"], config["seed"])).to_dict()
        return full, {"arm": config["arm"], "factor": factor_of(config["arm"])}

    return resolve
