"""The committed reference study (results/reference/, made by `python study/run_study.py --output-dir results
--name reference`) is what readers quote: these checks read its files (no training) and fail when a regenerated
study does not carry what the README promises of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from iakd_core.presets import CI_HALFWIDTH, STUDY_PRESETS, VERDICT_ARMS, ablation_seeds

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
pytestmark = pytest.mark.skipif(not (REFERENCE / "study.json").exists(), reason="no committed reference study")


def report() -> str:
    return (REFERENCE / "report.md").read_text()


def setting_sections() -> dict[str, str]:
    parts = re.split(r"^## Setting ", report(), flags=re.M)[1:]
    return {part.split(":", 1)[0]: part for part in parts}


def key_seeds(preset: str) -> int:
    """Seeds of the setting's student arm (the verdict's arms have as many)."""
    trials = pd.read_parquet(REFERENCE / f"{preset}-ablation" / "trials.parquet")
    return int(trials.loc[trials["arm"] == "student", "seed"].nunique())


def test_the_study_ran_every_default_stage_to_the_end_with_each_settings_seeds():
    study = json.loads((REFERENCE / "study.json").read_text())
    assert study.get("finished") and tuple(study["presets"]) == STUDY_PRESETS
    assert study["tune_baselines"] == ["kd"] and study["seeds"] == {p: ablation_seeds(p) for p in STUDY_PRESETS}
    assert all(stage["status"] == "complete" for stage in study["stages"].values())
    assert len(study["stages"]) == 4 * len(STUDY_PRESETS)  # IAKD sweep, KD sweep, ablation, top-up per setting
    for preset in STUDY_PRESETS:
        trials = pd.read_parquet(REFERENCE / f"{preset}-ablation" / "trials.parquet")
        seeds = trials.groupby("arm")["seed"].nunique()
        target = study["stages"][f"{preset} top-up"]["target_seeds"]
        key = [arm for arm in ("student", *VERDICT_ARMS) if arm in seeds]
        # the key arms topped up alike (at least what the last sizing called for), the rest on the preset's seeds
        assert seeds[key].nunique() == 1 and seeds[key].iloc[0] >= target >= ablation_seeds(preset), seeds
        assert (seeds.drop(key) == ablation_seeds(preset)).all() and (trials["status"] == "COMPLETE").all()


def test_every_setting_passes_its_positive_control_and_states_its_resolution():
    sections = setting_sections()
    assert set(sections) == set(STUDY_PRESETS)
    for preset, text in sections.items():
        assert re.search(r"Positive control, KD vs the student alone: .*\*\*passes\*\*", text), preset
        assert "iakd_best − student" in text and "kd_tuned − student" in text
        rows = {m[0]: (int(m[1]), float(m[2])) for m in
                re.findall(r"^\| (\S+ − student) +\| +(\d+) \|[^|]+\|[^|]+\| +([\d.]+) \|$", text, flags=re.M)}
        for arm in (a for a in VERDICT_ARMS if f"{a} − student" in rows):  # n and the CI half-width achieved; a
            n, halfwidth = rows[f"{arm} − student"]  # miss of the goal is warned in the report
            assert n == key_seeds(preset), (preset, arm, rows)
            assert halfwidth <= CI_HALFWIDTH or f"{arm} − student ±{halfwidth:.2f}" in text, (preset, arm)


def test_table_1_has_the_teacher_and_tuned_kd_and_each_setting_its_rung_reliability():
    table = report().split("## Table 1 — methods × settings")[1].split("###")[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "(n=1)" in rows["teacher"] and all(f"(n={key_seeds(p)})" in rows["kd_tuned"] for p in STUDY_PRESETS)
    for preset, text in setting_sections().items():
        assert "#### Rung reliability" in text and "promote scheduler" in text, preset


def test_the_report_is_portable_and_names_a_clean_commit():
    for name in ("report.md", "report.html"):
        text = (REFERENCE / name).read_text()
        assert not re.search(r"(?<![\w.~])/(home|work|tmp|root|Users|mnt)/", text), name
    commit = re.search(r"git commit: (\S+)", report())
    assert commit and not commit.group(1).endswith("+dirty")
    commands = report().split("Commands (in order):")[1]  # every command that made it, the KD sweeps' included
    assert commands.count("run_sweep.py --preset") == 2 * len(STUDY_PRESETS) and "--method kd" in commands
    for link in re.findall(r"\]\((figures/[^)]+)\)", report()):
        assert (REFERENCE / link).exists(), link
