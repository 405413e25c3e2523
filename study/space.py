"""The IAKD search space (define-by-run, conditional) and the paper-default reference point.

Sampled names are ``TrialConfig`` keys, except the on/off switches ``use_kd`` and ``use_student_ce`` (so that
"term off" is a real point of the space, not a boundary of measure zero); ``to_trial_config`` turns a sampled point
into config keys.
"""

from __future__ import annotations

from typing import Any

from iakd_core.schedules import PROFILES, SCHEDULES, SWAP_MODES

SWITCHES = ("use_kd", "use_student_ce")


class SearchSpace:
    """A define-by-run space for ``OptunaSearch`` (a class, so that Tune can pickle the searcher's state)."""

    def __init__(self, granularities: list[int], search_optimizer: bool = False) -> None:
        self.granularities, self.search_optimizer = list(granularities), search_optimizer

    def __call__(self, trial) -> None:
        schedule = trial.suggest_categorical("swap_schedule", list(SCHEDULES))
        trial.suggest_float("swap_p0", 0.0, 1.0)
        if schedule in ("linear", "cosine", "step"):
            trial.suggest_float("swap_p1", 0.0, 1.0)
        if schedule == "step":
            trial.suggest_float("swap_step_at", 0.1, 0.9)
        if schedule == "theseus":
            trial.suggest_float("swap_ramp_k", 0.1, 3.0)
        trial.suggest_categorical("swap_profile", list(PROFILES))
        trial.suggest_categorical("units_per_stage", self.granularities)
        trial.suggest_categorical("swap_mode", list(SWAP_MODES))
        if trial.suggest_categorical("use_kd", [False, True]):
            trial.suggest_float("kd_weight", 0.05, 1.0, log=True)
            trial.suggest_float("kd_temperature", 1.0, 8.0)
        if trial.suggest_categorical("use_student_ce", [False, True]):
            trial.suggest_float("student_ce_weight", 0.05, 1.0, log=True)
        trial.suggest_categorical("bn_recalibration_batches", [0, 32])
        if self.search_optimizer:
            trial.suggest_float("lr", 0.005, 0.2, log=True)
            trial.suggest_float("weight_decay", 1e-5, 1e-3, log=True)


# The paper's plain setting: constant p = 0.5, one unit per stage, CE on the hybrid only.
REFERENCE_POINT: dict[str, Any] = {
    "swap_schedule": "constant", "swap_p0": 0.5, "swap_profile": "uniform", "units_per_stage": 1,
    "swap_mode": "bernoulli", "use_kd": False, "use_student_ce": False, "bn_recalibration_batches": 0,
}


def to_trial_config(params: dict[str, Any]) -> dict[str, Any]:
    """Sampled parameters -> TrialConfig keys (switched-off terms get weight 0)."""
    config = {k: v for k, v in params.items() if k not in SWITCHES}
    if not params.get("use_kd", False):
        config["kd_weight"] = 0.0
    if not params.get("use_student_ce", False):
        config["student_ce_weight"] = 0.0
    return config
