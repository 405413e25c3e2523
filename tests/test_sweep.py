"""End-to-end sweeps through the real command (real Ray, real Optuna in SQLite, real Fashion-MNIST)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SWEEP = [sys.executable, str(ROOT / "study" / "run_sweep.py")]


def sweep_args(out: Path, teacher_cache: str, name: str, *extra: str) -> list[str]:
    return [*SWEEP, "--preset", "smoke", "--output-dir", str(out), "--teacher-cache", teacher_cache,
            "--data-root", str(ROOT / "data"), "--name", name, *extra]


def run(args, timeout=600, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, **kw)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, teacher_cache):
    out = tmp_path_factory.mktemp("sweeps")
    proc = run(sweep_args(out, teacher_cache, "e2e", "--budget", "7", "--inject-fault", "3:nan@1,4:raise@1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "e2e", proc


def test_sweep_writes_the_result_files_with_their_columns(smoke_run):
    run_dir, proc = smoke_run
    for name in ("trials.parquet", "epochs.parquet", "manifest.json", "best_config.json", "optuna.db"):
        assert (run_dir / name).exists(), name
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert len(trials) == 7 and trials["trial_id"].is_unique
    assert {"trial_id", "status", "reason", "epochs", "val_acc_last", "val_acc_best", "train_seconds",
            "images_per_second", "swap_schedule", "swap_p0", "units_per_stage", "kd_weight", "swap_mean_p",
            "optuna_number", "optuna_state"} <= set(trials.columns)
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    assert {"trial_id", "epoch", "val_acc", "swap_rate", "swap_rate_u0", "lr", "loss_ce"} <= set(epochs.columns)
    per_trial = epochs.groupby("trial_id")["epoch"].max()
    ok = trials[trials["status"] != "ERROR"].set_index("trial_id")["epochs"]
    assert (per_trial.reindex(ok.index) == ok).all()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["teacher"]["key"] and manifest["dataset"]["checksum"]
    assert manifest["versions"]["ray"] and manifest["machine"]["cpus"] and "run_sweep.py" in manifest["command"]
    assert "7/7 done" in proc.stderr and "best val_acc" in proc.stderr  # the live view


def test_statuses_in_the_study_match_the_trials_table(smoke_run):
    run_dir, _ = smoke_run
    trials = pd.read_parquet(run_dir / "trials.parquet")
    study = optuna.load_study(study_name="iakd-e2e", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    states = {t.user_attrs["tune_trial_id"]: t.state.name for t in study.trials}
    expected = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "ERROR": "FAIL"}
    assert {r.trial_id: expected[r.status] for r in trials.itertuples()} == states
    assert "PRUNED" in set(trials["status"])  # ASHA stopped some trials early
    for t in study.trials:  # a COMPLETE Optuna trial reached full fidelity; PRUNED ones keep their curve
        if t.state.name == "COMPLETE":
            assert t.user_attrs["epochs"] == 3
        if t.state.name == "PRUNED":
            assert len(t.intermediate_values) == t.user_attrs["epochs"] < 3


def test_reference_trial_is_first(smoke_run):
    trials = pd.read_parquet(smoke_run[0] / "trials.parquet")
    first = trials.sort_values("trial_number").iloc[0]
    assert first["optuna_number"] == 0
    assert (first["swap_schedule"], first["swap_p0"], first["units_per_stage"], first["kd_weight"],
            first["student_ce_weight"]) == ("constant", 0.5, 1, 0.0, 0.0)


def test_failing_and_nan_trials_are_recorded_and_the_rest_complete(smoke_run):
    trials = pd.read_parquet(smoke_run[0] / "trials.parquet").set_index("trial_number")
    assert trials.loc[3, "status"] == "ERROR" and "non-finite training loss" in trials.loc[3, "reason"]
    assert trials.loc[4, "status"] == "ERROR" and "injected fault" in trials.loc[4, "reason"]
    assert (trials.drop(index=[3, 4])["status"] != "ERROR").all()
    best = json.loads((smoke_run[0] / "best_config.json").read_text())
    complete = trials[trials["status"] == "COMPLETE"]
    assert best["val_acc"] == complete["val_acc_last"].max()


@pytest.mark.parametrize("args,message", [
    (["--budget", "0"], "must be at least 1"),
    (["--budget", "many"], "not a whole number"),
    (["--budget", "2", "--preset", "huge"], "unknown preset"),
    (["--budget", "2", "--dataset", "mnist"], "dataset='mnist' is not one of"),
    (["--budget", "2", "--student", "resnet21"], "unknown architecture"),
])
def test_bad_input_exits_2_with_one_line_and_no_folder(tmp_path, teacher_cache, args, message):
    proc = run(sweep_args(tmp_path / "out", teacher_cache, "bad", *args), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_output_and_bad_resume_exit_2(tmp_path, teacher_cache):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a regular file instead
        locked = tmp_path / "file"
        locked.write_text("x")
    proc = run(sweep_args(locked / "sub", teacher_cache, "x", "--budget", "2"), timeout=120)
    assert proc.returncode == 2 and "cannot write" in proc.stderr, proc.stderr
    proc = run([*SWEEP, "--resume", str(tmp_path)], timeout=120)
    assert proc.returncode == 2 and "is not a sweep run folder" in proc.stderr, proc.stderr


def stop_after_two_trials(tmp_path, teacher_cache, name: str, stop) -> tuple[subprocess.Popen, str]:
    """Start a 5-trial serial sweep; call ``stop(proc)`` once the second trial has finished. Returns the process
    and the stderr read so far."""
    args = sweep_args(tmp_path, teacher_cache, name, "--budget", "5", "--concurrency", "1", "--scheduler", "fifo")
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("[2/5 done"):
            stop(proc)
            break
    return proc, "".join(lines)


def resume_and_load(run_dir: Path) -> tuple[pd.DataFrame, optuna.Study]:
    """``--resume`` the run; every one of the 5 trials must then be COMPLETE exactly once."""
    done = run([*SWEEP, "--resume", str(run_dir)])
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert len(trials) == 5 and trials["trial_id"].is_unique and (trials["status"] == "COMPLETE").all()
    study = optuna.load_study(study_name=f"iakd-{run_dir.name}", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    return trials, study


def test_resume_after_an_interrupt_completes_the_budget_without_duplicates(tmp_path, teacher_cache):
    proc, seen = stop_after_two_trials(tmp_path, teacher_cache, "resume", lambda p: p.send_signal(signal.SIGINT))
    rest, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, seen + rest
    run_dir = tmp_path / "resume"
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    trials, study = resume_and_load(run_dir)
    assert sorted(t.user_attrs["tune_trial_id"] for t in study.trials) == sorted(trials["trial_id"])
    assert all(t.state.name == "COMPLETE" for t in study.trials)


def hard_kill(proc: subprocess.Popen) -> None:
    time.sleep(3)  # let the experiment state reach the disk (saved every 2 s)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started


def test_resume_after_a_hard_kill_accounts_for_every_trial_once(tmp_path, teacher_cache):
    proc, _ = stop_after_two_trials(tmp_path, teacher_cache, "killed", hard_kill)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    run_dir = tmp_path / "killed"
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"
    trials, study = resume_and_load(run_dir)
    by_tune_id = {t.user_attrs["tune_trial_id"]: t.state.name for t in study.trials
                  if t.state.name != "FAIL" or "orphaned" not in t.user_attrs}
    assert by_tune_id == {tid: "COMPLETE" for tid in trials["trial_id"]}
    assert all(t.state.name != "RUNNING" for t in study.trials)


def test_deterministic_mode_repeats_exactly(tmp_path, teacher_cache):
    tables = []
    for name in ("a", "b"):
        proc = run(sweep_args(tmp_path, teacher_cache, name, "--budget", "3", "--deterministic", "--seed", "5"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        t = pd.read_parquet(tmp_path / name / "trials.parquet")
        tables.append(t.drop(columns=["trial_id", "train_seconds", "eval_seconds", "images_per_second"]))
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_two_objective_sweep_records_accuracy_and_cost_and_plots_the_front(tmp_path, teacher_cache):
    proc = run(sweep_args(tmp_path, teacher_cache, "mo", "--budget", "3", "--objective", "acc+cost"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "mo"
    trials = pd.read_parquet(run_dir / "trials.parquet").set_index("trial_id")
    study = optuna.load_study(study_name="iakd-mo", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert complete, proc.stderr[-2000:]
    for t in complete:  # (val accuracy, training seconds) of the full-fidelity run, as in the tables
        row = trials.loc[t.user_attrs["tune_trial_id"]]
        assert t.values[0] == pytest.approx(row["val_acc_last"])
        assert t.values[1] == pytest.approx(row["train_seconds"]) and t.values[1] > 0
    for t in study.trials:
        if t.state.name == "PRUNED":
            assert t.values is None
    best = json.loads((run_dir / "best_config.json").read_text())
    assert best["val_acc"] == trials.loc[trials["status"] == "COMPLETE", "val_acc_last"].max()
    proc = run([sys.executable, str(ROOT / "analysis" / "plots.py"), str(run_dir)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_dir / "figures" / "pareto.png").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_runs_on_an_existing_ray_cluster_through_address(tmp_path, teacher_cache):
    port = free_port()
    ray_bin = Path(sys.executable).parent / "ray"
    head = subprocess.Popen([str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=2", "--block",
                             "--node-ip-address=127.0.0.1",
                             "--include-dashboard=false", f"--temp-dir=/tmp/iakdh{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                            env={**os.environ, "RAY_AUTH_MODE": "disabled"})  # a throw-away local test head
    try:
        time.sleep(8)
        proc = run(sweep_args(tmp_path, teacher_cache, "cluster", "--budget", "2", "--address",
                              f"127.0.0.1:{port}"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        trials = pd.read_parquet(tmp_path / "cluster" / "trials.parquet")
        assert len(trials) == 2 and (trials["status"] != "ERROR").all()
    finally:
        head.send_signal(signal.SIGINT)  # --block: the head process stops its Ray processes on SIGINT
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
