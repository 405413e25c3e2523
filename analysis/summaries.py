"""A short summary of an IAKD config (a dict or a table row), for progress lines and reports. Plain Python: the
sweep's trial workers import it, so it must not pull in pandas, scipy or torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Mean swap probability below which a configuration "barely swaps" (the search found KD without swapping), and at
# or above which it really swaps (the report then shows the best such configuration beside the best).
BARELY_SWAPS = 0.01
SWAPS = 0.1

SHOWN_ELSEWHERE = {"swap_schedule", "swap_p0", "swap_profile", "swap_mode", "swap_mean_p"}


def _set(value: Any) -> bool:
    return value is not None and value == value  # not None, not NaN


# A conventional method's loss hyperparameters, as the summary names them.
LOSS_KEYS = {"ce_weight": "ce", "kd_weight": "kd", "kd_temperature": "T", "feature_weight": "feature"}


def describe_config(c: Mapping[str, Any]) -> str:
    """``theseus p0=0.74 ramp_k=2.88 g=1 sce=0.71 bn-recal``: the schedule and every parameter it sets (any
    numeric ``swap_<param>`` key, so a new schedule parameter shows up without an edit here), the granularity, the
    extra loss terms, BN recalibration and the BatchNorm modes when they are not the default. A conventional
    method (``method`` other than iakd): ``kd ce=0.10 kd=0.90 T=4.0``, its loss weights that are set."""
    method = c.get("method", "iakd")
    if _set(method) and method != "iakd":
        weights = [f"{short}={c[key]:.3g}" for key, short in LOSS_KEYS.items() if _set(c.get(key)) and
                   (c[key] or key == "ce_weight") and (key != "kd_temperature" or c.get("kd_weight"))]
        return " ".join([method, *weights])
    parts = [f"{c.get('swap_schedule', '?')} p0={c.get('swap_p0', 0):.2f}"]
    for key in c.keys():
        value = c[key]
        if (key.startswith("swap_") and key not in SHOWN_ELSEWHERE and isinstance(value, (int, float))
                and not isinstance(value, bool) and _set(value)):
            parts.append(f"{key[len('swap_'):]}={value:.2f}")
    parts.append(f"g={int(c.get('units_per_stage', 1))}")
    if _set(c.get("kd_weight")) and c["kd_weight"]:
        parts.append(f"kd={c['kd_weight']:.2f} T={c.get('kd_temperature', 4.0):.1f}")
    if _set(c.get("student_ce_weight")) and c["student_ce_weight"]:
        parts.append(f"sce={c['student_ce_weight']:.2f}")
    if _set(c.get("bn_recalibration_batches")) and c["bn_recalibration_batches"]:
        parts.append("bn-recal")
    if c.get("teacher_bn") == "batch":
        parts.append("teacher-bn=batch")
    if c.get("student_bn") == "hybrid":
        parts.append("student-bn=hybrid")
    return " ".join(parts)


def trial_iterations(settings: Mapping[str, Any]) -> int:
    """Iterations (reported epochs) of a trial that trains to the end: ``max_epochs``, plus the complete short run
    before it in a promoting sweep (``short_epochs``)."""
    return settings["max_epochs"] + (settings.get("short_epochs") or 0)


def rung_epochs(settings: Mapping[str, Any]) -> tuple[int, ...]:
    """The epochs at which the scheduler compares trials (ASHA: grace * rf^k below max_epochs; the milestones Ray's
    ``AsyncHyperBandScheduler`` builds, tested against it): where a sweep runs the compatibility diagnostic and
    where the report measures how well a rung ranks trials."""
    if settings.get("short_epochs"):  # promotion: the one rung is the end of the complete short run
        return (settings["short_epochs"],)
    grace, rf, top = settings["grace_epochs"], settings["reduction_factor"], settings["max_epochs"]
    rungs, epoch = [], grace
    while epoch < top:
        rungs.append(epoch)
        epoch *= rf
    return tuple(rungs)
