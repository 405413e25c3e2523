"""study/run_study.py: two settings (smoke, smoke-wrn) IAKD sweep -> KD sweep -> ablation -> seed top-up -> one
report, interrupted once with SIGTERM and re-run to finish, through the real commands on real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "study" / "run_study.py"
ARMS = "student,kd,kd_tuned,iakd_best"


def study_args(tmp_path, teacher_cache, **changes):
    args = {"--presets": "smoke,smoke-wrn", "--budget": "3", "--seeds": "2", "--max-seeds": "3", "--arms": ARMS,
            "--output-dir": str(tmp_path), "--name": "st", "--teacher-cache": teacher_cache,
            "--data-root": str(ROOT / "data"), "--reduction-factor": "3", "--concurrency": "2", **changes}
    return [sys.executable, str(SCRIPT), *[x for k, v in args.items() for x in (k, v)]]


def test_study_runs_every_setting_survives_an_interrupt_and_reports_methods_by_settings(tmp_path, teacher_cache):
    args = study_args(tmp_path, teacher_cache)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen, in_ablation = [], False
    for line in proc.stdout:  # stop the study once its first ablation has finished two trials (the sweep is done)
        seen.append(line)
        in_ablation = in_ablation or line.startswith("[study 3/9] smoke ablation: starting")
        if in_ablation and line.startswith("[2/"):
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.communicate(timeout=600)[0]
    assert proc.returncode == 130, "".join(seen) + rest
    assert "re-run the same command to continue" in rest
    study = tmp_path / "st"
    record = json.loads((study / "study.json").read_text())
    assert record["stages"]["smoke sweep"]["status"] == "complete"
    assert record["stages"]["smoke kd sweep"]["status"] == "complete"
    assert not (study / "report.md").exists()
    sweep_manifest = (study / "smoke-sweep" / "manifest.json").read_bytes()

    other = subprocess.run(study_args(tmp_path, teacher_cache, **{"--seeds": "3"}), capture_output=True, text=True,
                           cwd=ROOT, timeout=120)
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "seeds 2 (asked: 3)" in other.stderr
    other = subprocess.run(study_args(tmp_path, teacher_cache, **{"--max-seeds": "4"}), capture_output=True,
                           text=True, cwd=ROOT, timeout=120)
    assert other.returncode == 2 and "max_seeds 3 (asked: 4)" in other.stderr  # the top-up's ceiling too
    other = subprocess.run(study_args(tmp_path, teacher_cache, **{"--reduction-factor": "2"}), capture_output=True,
                           text=True, cwd=ROOT, timeout=120)
    assert other.returncode == 2 and "--reduction-factor=2" in other.stderr  # the search is part of the plan
    for sweep in ("smoke-sweep", "smoke-kd-sweep"):  # the search options reach every sweep of the study
        recorded = json.loads((study / sweep / "manifest.json").read_text())["args"]
        assert recorded["reduction_factor"] == 3 and recorded["concurrency"] == 2, recorded

    again = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "[study 1/9] smoke sweep: finished earlier, skipped" in again.stdout
    assert "[study 3/9] smoke ablation: resuming" in again.stdout
    assert (study / "smoke-sweep" / "manifest.json").read_bytes() == sweep_manifest  # not run again
    for stage in ("[study 5/9] smoke-wrn sweep: starting", "[study 6/9] smoke-wrn kd sweep: starting",
                  "[study 9/9] report over 2 setting(s)", "study done"):
        assert stage in again.stdout, stage
    record = json.loads((study / "study.json").read_text())
    for preset in ("smoke", "smoke-wrn"):
        trials = pd.read_parquet(study / f"{preset}-ablation" / "trials.parquet")
        # the top-up: every arm on 2 seeds, then the student, KD, KD tuned and IAKD's best to the seeds their spread
        # needs for +-0.5 points, at most 3 (3-epoch smoke runs are far noisier than that)
        top_up = record["stages"][f"{preset} top-up"]
        assert top_up["target_seeds"] == top_up["seeds"] == 3 and top_up["sizings"] == [3]
        assert record["max_seeds"] == 3
        assert f"{preset} top-up: topping up to 3 seeds" in again.stdout
        assert len(trials) == 3 * len(ARMS.split(",")) and trials["trial_id"].is_unique  # nothing lost or twice
        assert (trials["status"] == "COMPLETE").all() and (trials.groupby("arm")["seed"].nunique() == 3).all()
        epochs = pd.read_parquet(study / f"{preset}-ablation" / "epochs.parquet")
        best = epochs[epochs["trial_id"].isin(trials.loc[trials["arm"] == "iakd_best", "trial_id"])]
        diagnosed = best.dropna(subset=["compat_u0"])  # at the last epoch (3) and the epochs of the sweep's ASHA
        rungs = json.loads((study / f"{preset}-sweep" / "manifest.json").read_text())["base_config"]["compat_epochs"]
        assert set(diagnosed["epoch"]) == {*rungs, 3} and diagnosed["compat_u0"].between(0, 100).all()
    record = json.loads((study / "study.json").read_text())
    assert all(s["status"] == "complete" for s in record["stages"].values()) and "finished" in record
    kd_study = optuna.load_study(study_name="iakd-smoke-kd-sweep",
                                 storage=f"sqlite:///{study / 'smoke-kd-sweep' / 'optuna.db'}")
    assert len(kd_study.trials) == 3  # the IAKD sweep's budget, searching only KD's declared hyperparameters
    assert all(set(t.params) == {"ce_weight", "kd_weight", "kd_temperature"} for t in kd_study.trials)
    kd_tuned = pd.read_parquet(study / "smoke-ablation" / "trials.parquet").query("arm == 'kd_tuned'")
    best_kd = json.loads((study / "smoke-kd-sweep" / "best_config.json").read_text())["config"]
    assert (kd_tuned["method"] == "kd").all() and (kd_tuned["kd_weight"] == best_kd["kd_weight"]).all()
    text = (study / "report.md").read_text()
    assert "## Table 1 — methods × settings" in text
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert "smoke (resnet26 → resnet14)" in header and "smoke-wrn (wrn_16_2 → wrn_16_1)" in header
    table1 = text[text.index("## Table 1 — methods × settings"):text.index("### Table 1 — differences")]
    assert "| kd " in table1 and "| kd_tuned " in table1 and "| iakd_best " in table1
    assert "KD tuned by its own sweep of the same budget as the IAKD sweep (3 trials)" in text
    assert "### Teacher-unit compatibility" in text and (study / "figures" / "smoke-wrn" / "compatibility.png").exists()


def test_study_bad_input_is_one_line_and_writes_nothing(tmp_path):
    for bad, message in ((["--presets", "laptop,nope"], "unknown preset(s) ['nope']"),
                         (["--presets", "smoke,smoke"], "names a setting twice"),
                         (["--budget", "0"], "must be at least 1"),
                         (["--tune-baselines", "kd,iakd"], "iakd is not a baseline"),
                         (["--tune-baselines", "student"], "student is not a baseline with hyperparameters"),
                         (["--hedge", "1"], "must be below 1"), (["--reduction-factor", "1"], "at least 2"),
                         (["--grace-epochs", "2"], "--grace-epochs is for --scheduler asha"),
                         (["--scheduler", "bohb"], "invalid choice")):
        r = subprocess.run([sys.executable, str(SCRIPT), *bad, "--output-dir", str(tmp_path / "o")],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_each_setting_ablates_on_its_presets_seed_count_unless_seeds_is_given(tmp_path):
    from iakd_core.presets import PRESETS, ablation_seeds
    from study.run_study import build_parser, plan_stages

    assert ablation_seeds("laptop") == PRESETS["laptop"]["seeds"] != PRESETS["laptop-wrn"]["seeds"]
    assert ablation_seeds(None) == ablation_seeds("no such preset") == PRESETS["smoke"]["seeds"]

    def ablation_seeds_asked(*argv):
        stages = plan_stages(build_parser().parse_args(list(argv)), ["laptop", "laptop-wrn"], tmp_path)
        return {s["preset"]: int(s["new"][s["new"].index("--seeds") + 1]) for s in stages if s["kind"] == "ablation"}

    assert ablation_seeds_asked() == {p: PRESETS[p]["seeds"] for p in ("laptop", "laptop-wrn")}
    assert ablation_seeds_asked("--seeds", "3") == {"laptop": 3, "laptop-wrn": 3}


def test_the_eta_counts_only_stages_still_to_run(tmp_path):
    from study.run_study import eta

    def stage(name, kind):
        return {"name": name, "kind": kind, "dir": name}

    stages = [stage("a-sweep", "sweep"), stage("a-ablation", "ablation"), stage("a-top-up", "top-up"),
              stage("b-sweep", "sweep"), stage("b-ablation", "ablation"), stage("b-top-up", "top-up")]
    for stage_ in stages:
        (tmp_path / stage_["dir"]).mkdir(exist_ok=True)
        (tmp_path / stage_["dir"] / "manifest.json").write_text(json.dumps({"status": "complete"}))
    record = {"stages": {"a-sweep": {"seconds": 600.0}, "a-ablation": {"seconds": 1200.0}}}
    assert eta(stages, record, tmp_path, 2) == "ETA ~0m00s + top-ups"  # b's sweep and ablation finished earlier
    (tmp_path / "b-ablation" / "manifest.json").write_text(json.dumps({"status": "interrupted"}))
    assert eta(stages, record, tmp_path, 2) == "ETA ~20m00s + top-ups"  # b's ablation is left: a's took 20 min


def test_a_top_up_resumes_seeds_already_added_before_it_sizes_again(tmp_path):
    from study.run_study import top_up_commands

    run_dir = tmp_path / "smoke-ablation"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"status": "interrupted", "seeds": [1000, 1001],
                                                       "more_seeds": {"student": [1002]}}))
    entry: dict = {}
    assert top_up_commands(run_dir, 40, entry) == [["run_ablation.py", "--resume", str(run_dir)]] and entry == {}
