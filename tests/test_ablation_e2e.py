"""sweep (smoke) -> ablation (2 seeds, interrupted once and resumed) -> plots -> report, through the real
commands on real files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
from contract import documented_manifest_keys, documented_trial_columns

from analysis.manifest import FIELDS, options

ROOT = Path(__file__).resolve().parent.parent


def run(*args, timeout=900):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_sweep_then_ablation_then_plots_then_report(tmp_path, teacher_cache):
    common = ["--teacher-cache", teacher_cache, "--data-root", ROOT / "data"]
    sweep = run(ROOT / "study/run_sweep.py", "--preset", "smoke", "--budget", "4", "--output-dir", tmp_path,
                "--name", "s", *common)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    bad = run(ROOT / "study/run_ablation.py", tmp_path, "--output-dir", tmp_path)
    assert bad.returncode == 2 and "is not a sweep run folder" in bad.stderr
    bad = run(ROOT / "study/run_sweep.py", "--resume", tmp_path / "s-none")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1

    # the ablation, interrupted with SIGTERM after two trials finished, then resumed
    arms = "student,kd,iakd_best,iakd_paper_default,iakd_paper_student_ce,no_swap"  # apply to any best
    args = [sys.executable, str(ROOT / "study/run_ablation.py"), str(tmp_path / "s"), "--seeds", "2",
            "--arms", arms, "--output-dir", str(tmp_path), "--name", "a", *map(str, common)]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stderr:
        if line.startswith("[2/"):
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, rest
    run_dir = tmp_path / "a"
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert "INTERRUPTED" in set(trials["status"]) and (trials["status"] == "COMPLETE").sum() >= 2
    finished = {p.name: p.read_bytes() for p in (run_dir / "trials").glob("*.jsonl")
                if '"kind": "final"' in p.read_text()}
    bad = run(ROOT / "study/run_sweep.py", "--resume", run_dir)
    assert bad.returncode == 2 and "is not a sweep run folder (its manifest says kind 'ablation')" in bad.stderr
    resumed = run(ROOT / "study/run_ablation.py", "--resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert all((run_dir / "trials" / name).read_bytes() == data for name, data in finished.items())  # not re-run
    first_line = next(line for line in resumed.stderr.splitlines() if line.startswith("["))
    assert first_line.startswith(f"[{len(finished)}/") and "best val_acc" in first_line, first_line  # carried on

    # a top-up: more seeds for two arms only, the finished trials untouched; bad requests change nothing
    before = (run_dir / "manifest.json").read_bytes()
    bad = run(ROOT / "study/run_ablation.py", "--resume", run_dir, "--more-seeds", "1", "--arms", "student,kdd")
    assert bad.returncode == 2 and "--arms kdd: not an arm" in bad.stderr and "did you mean 'kd'" in bad.stderr
    bad = run(ROOT / "study/run_ablation.py", run_dir, "--more-seeds", "1")
    assert bad.returncode == 2 and "with --resume" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert (run_dir / "manifest.json").read_bytes() == before
    finished = {p.name: p.read_bytes() for p in (run_dir / "trials").glob("*.jsonl")}
    proc = subprocess.Popen([sys.executable, str(ROOT / "study/run_ablation.py"), "--resume", str(run_dir),
                             "--more-seeds", "1", "--arms", "student,no_swap"], stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stderr:  # killed as soon as the seeds are recorded, before any of them ran
        if "get seeds" in line:
            assert "student, no_swap get seeds 1002-1002 (1 each); budget now 14" in line, line
            proc.send_signal(signal.SIGTERM)
            break
    proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"  # not "complete"
    more = run(ROOT / "study/run_ablation.py", "--resume", run_dir)  # a plain resume runs the recorded seeds
    assert more.returncode == 0, more.stderr[-3000:]
    assert all((run_dir / "trials" / name).read_bytes() == data for name, data in finished.items())

    trials = pd.read_parquet(run_dir / "trials.parquet")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    arms = set(manifest["arms"])
    assert arms == set(manifest["args"]["arms"].split(","))
    assert set(manifest) == set(FIELDS["ablation"]) <= documented_manifest_keys()  # the contract, and its docs
    assert len(trials) == 2 * len(arms) + 2 and (trials["status"] == "COMPLETE").all() and trials["trial_id"].is_unique
    assert documented_trial_columns("ablation") <= set(trials.columns)  # the contract in docs/results.md
    seeds = trials.groupby("arm")["seed"].apply(sorted).map(tuple)
    assert seeds["student"] == seeds["no_swap"] == (*manifest["seeds"], 1002)  # topped up alike: still paired
    assert set(seeds.drop(["student", "no_swap"])) == {tuple(manifest["seeds"])}  # the rest on the run's seeds
    top_up = manifest["top_ups"][0]
    assert manifest["top_ups"] == [{"arms": ["student", "no_swap"], "seeds": 1, "command": top_up["command"],
                                    "git_commit": manifest["git_commit"]}] and "--more-seeds 1" in top_up["command"]
    saved = sorted(p.stem for p in (run_dir / "students").glob("*.pt"))  # every trial's last-epoch student
    assert saved == sorted(trials["trial_id"])
    sweep_seed = options(json.loads((tmp_path / "s" / "manifest.json").read_text())).seed
    assert sweep_seed not in set(trials["seed"])  # fresh seeds only
    assert trials["test_acc"].between(0, 100).all() and (trials["epochs"] == 3).all()
    no_swap = trials[trials["arm"] == "no_swap"]
    assert (no_swap["swap_p0"] == 0).all() and (no_swap["swap_mean_p"] == 0).all()
    import optuna  # the ablation opens in optuna-dashboard like a sweep: one trial per (arm, seed), value test acc

    study = optuna.load_study(study_name="ablation", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert sorted((t.params["arm"], t.params["seed"], t.value) for t in study.trials) == sorted(
        zip(trials["arm"], trials["seed"], trials["test_acc"], strict=True))
    assert all(t.user_attrs["trial_id"] in set(trials["trial_id"]) for t in study.trials)

    plots = run(ROOT / "analysis/plots.py", run_dir)
    assert plots.returncode == 0, plots.stderr
    assert (run_dir / "figures" / "ablation_bars.png").exists()
    report = run(ROOT / "analysis/report.py", run_dir)
    assert report.returncode == 0, report.stderr
    text = (run_dir / "report.md").read_text()
    assert "## Table 1 — methods" in text and "## Conclusion" in text and "best IAKD configuration" in text
    assert "## Can this setting detect an effect?" in text
    assert "student, no_swap also seeds 1002–1002 (n = 3)" in text  # the top-up, and its command to regenerate
    assert re.search(r"python study/run_ablation\.py --resume \S+ --more-seeds 1 --arms student,no_swap", text)
    assert (run_dir / "report.html").exists() and (run_dir / "figures" / "sweep" / "best_so_far.png").exists()
