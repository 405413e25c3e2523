"""A short summary of an IAKD config (a dict or a table row), for progress lines and reports. Plain Python: the
sweep's trial workers import it, so it must not pull in pandas, scipy or torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SHOWN_ELSEWHERE = {"swap_schedule", "swap_p0", "swap_profile", "swap_mode", "swap_mean_p"}


def _set(value: Any) -> bool:
    return value is not None and value == value  # not None, not NaN


def describe_config(c: Mapping[str, Any]) -> str:
    """``theseus p0=0.74 ramp_k=2.88 g=1 sce=0.71 bn-recal``: the schedule and every parameter it sets (any
    numeric ``swap_<param>`` key, so a new schedule parameter shows up without an edit here), the granularity, the
    extra loss terms, BN recalibration and the teacher BatchNorm mode when it is not the default."""
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
    return " ".join(parts)
