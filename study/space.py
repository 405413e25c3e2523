"""The IAKD search space (define-by-run, conditional) and the paper-default reference point.

Sampled names are ``TrialConfig`` keys, except the on/off switches ``use_kd`` and ``use_student_ce`` (so that
"term off" is a real point of the space, not a boundary of measure zero); ``to_trial_config`` turns a sampled point
into config keys.
"""

from __future__ import annotations

from typing import Any

from iakd_core.hybrid import TEACHER_BN_MODES
from iakd_core.presets import METHOD_DEFAULTS
from iakd_core.schedules import PARAMS, PROFILES, SCHEDULES, SWAP_MODES

SWITCHES = ("use_kd", "use_student_ce")


class SearchSpace:
    """A define-by-run space for ``OptunaSearch`` (a class, so that Tune can pickle the searcher's state)."""

    def __init__(self, granularities: list[int], search_optimizer: bool = False) -> None:
        self.granularities, self.search_optimizer = list(granularities), search_optimizer

    def __call__(self, trial) -> None:
        schedule = trial.suggest_categorical("swap_schedule", list(SCHEDULES))
        for name in SCHEDULES[schedule].params:  # only the chosen schedule's parameters, in their search ranges
            trial.suggest_float(f"swap_{name}", *PARAMS[name].search)
        trial.suggest_categorical("swap_profile", list(PROFILES))
        trial.suggest_categorical("units_per_stage", self.granularities)
        trial.suggest_categorical("swap_mode", list(SWAP_MODES))
        trial.suggest_categorical("teacher_bn", list(TEACHER_BN_MODES))
        if trial.suggest_categorical("use_kd", [False, True]):
            trial.suggest_float("kd_weight", 0.05, 1.0, log=True)
            trial.suggest_float("kd_temperature", 1.0, 8.0)
        if trial.suggest_categorical("use_student_ce", [False, True]):
            trial.suggest_float("student_ce_weight", 0.05, 1.0, log=True)
        trial.suggest_categorical("bn_recalibration_batches", [0, 32])
        if self.search_optimizer:
            trial.suggest_float("lr", 0.005, 0.2, log=True)
            trial.suggest_float("weight_decay", 1e-5, 1e-3, log=True)


# The paper's plain setting (presets.METHOD_DEFAULTS["iakd"]) as a point of this space: always trial 0.
_PAPER = METHOD_DEFAULTS["iakd"]
REFERENCE_POINT: dict[str, Any] = {
    **{k: _PAPER[k] for k in ("swap_schedule", "swap_p0", "swap_profile", "units_per_stage", "swap_mode",
                              "teacher_bn", "bn_recalibration_batches")},
    "use_kd": _PAPER["kd_weight"] > 0, "use_student_ce": _PAPER["student_ce_weight"] > 0,
}


def to_trial_config(params: dict[str, Any]) -> dict[str, Any]:
    """Sampled parameters -> TrialConfig keys (switched-off terms get weight 0)."""
    config = {k: v for k, v in params.items() if k not in SWITCHES}
    if not params.get("use_kd", False):
        config["kd_weight"] = 0.0
    if not params.get("use_student_ce", False):
        config["student_ce_weight"] = 0.0
    return config
