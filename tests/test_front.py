"""``iakd``: the front door runs exactly its scripts (same arguments, same output, same exit code)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IAKD = [sys.executable, "-m", "study.front"]


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=180)


def test_every_command_is_listed_and_a_typo_gets_a_suggestion():
    listed = run(IAKD)
    assert listed.returncode == 0
    for command in ("sweep", "ablate", "study", "report", "plots", "pool", "replay", "train", "teacher", "dashboard"):
        assert f"\n  {command} " in listed.stdout, command
    typo = run([*IAKD, "ablte"])
    assert typo.returncode == 2 and "did you mean 'ablate'?" in typo.stderr and len(typo.stderr.splitlines()) == 1


def test_a_subcommand_is_its_script(tmp_path):
    for command, script, args in (("sweep", "study/run_sweep.py", ["--budget", "0"]),
                                  ("replay", "study/run_replay.py", ["--check", str(tmp_path)]),
                                  ("study", "study/run_study.py", ["--presets", "lapto"]),
                                  ("report", "analysis/report.py", [str(tmp_path)])):
        front, direct = run([*IAKD, command, *args]), run([sys.executable, script, *args])
        assert (front.returncode, front.stdout, front.stderr) == (direct.returncode, direct.stdout, direct.stderr)
        assert front.returncode == 2 and front.stderr.startswith("error:"), front.stderr
    assert run([*IAKD, "train", "--preset", "nope"]).stderr.startswith("error: unknown preset 'nope'")
    dashboard = run([*IAKD, "dashboard", str(tmp_path)])
    assert dashboard.returncode == 2 and "holds no optuna.db: give a sweep or ablation folder" in dashboard.stderr


def test_list_arms_prints_the_arms_of_a_sweep_and_writes_nothing(tmp_path):
    listed = run([*IAKD, "ablate", "results/reference/laptop-sweep", "--list-arms", "--output-dir", str(tmp_path)])
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert {"student", "kd", "iakd_best", "iakd_paper_default", "no_swap"} <= set(rows)
    assert "vs iakd_best" in rows["no_swap"] and not any(tmp_path.iterdir())
