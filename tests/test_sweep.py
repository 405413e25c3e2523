"""End-to-end sweeps through the real command (real Ray, real Optuna in SQLite, real Fashion-MNIST)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from contract import documented_manifest_keys, documented_trial_columns

from analysis.manifest import FIELDS, VERSION, options

ROOT = Path(__file__).resolve().parent.parent
SWEEP = [sys.executable, str(ROOT / "study" / "run_sweep.py")]


FAULTS = str(ROOT / "tests" / "faults")  # sitecustomize.py: test-only fault injection (see its docstring)


def sweep_args(out: Path, teacher_cache: str, name: str, *extra: str) -> list[str]:
    return [*SWEEP, "--preset", "smoke", "--output-dir", str(out), "--teacher-cache", teacher_cache,
            "--data-root", str(ROOT / "data"), "--name", name, *extra]


def env(faults: str = "") -> dict[str, str]:
    extra = {"PYTHONPATH": FAULTS, "IAKD_TEST_FAULTS": faults} if faults else {}
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def run(args, timeout=600, faults: str = "", **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env(faults), cwd=ROOT, **kw)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, teacher_cache):
    out = tmp_path_factory.mktemp("sweeps")
    proc = run(sweep_args(out, teacher_cache, "e2e", "--budget", "7"), faults="2:nan,3:raise")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "e2e", proc


def test_sweep_writes_the_result_files_with_their_columns(smoke_run):
    run_dir, proc = smoke_run
    for name in ("trials.parquet", "epochs.parquet", "schedules.parquet", "manifest.json", "best_config.json",
                 "optuna.db"):
        assert (run_dir / name).exists(), name
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert len(trials) == 7 and trials["trial_id"].is_unique and trials["trial_number"].is_unique
    assert {"trial_id", "trial_number", "status", "reason", "epochs", "val_acc_last", "val_acc_best",
            "train_seconds", "images_per_second", "swap_schedule", "swap_p0", "units_per_stage", "kd_weight",
            "swap_mean_p", "optuna_state", "precision"} <= set(trials.columns)
    assert "fault" not in trials.columns  # no test-only knob in the science or the result files
    assert documented_trial_columns("sweep") <= set(trials.columns)  # the contract in docs/results.md
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    assert {"trial_id", "epoch", "val_acc", "swap_rate", "swap_rate_u0", "lr", "loss_ce", "timestamp",
            "val_acc_best", "train_seconds_total"} <= set(epochs.columns)
    per_trial = epochs.groupby("trial_id")["epoch"].max()
    ok = trials[trials["status"] != "ERROR"].set_index("trial_id")["epochs"]
    assert (per_trial.reindex(ok.index) == ok).all()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["teacher"]["key"] and manifest["dataset"]["checksum"]
    assert manifest["versions"]["ray"] and manifest["machine"]["cpus"] and "run_sweep.py" in manifest["command"]
    assert manifest["runtime"]["precision"] in ("fp32", "bf16") and manifest["storage"] is None  # relocatable
    assert manifest["runtime"]["kd_targets"]["shape"] == [manifest["dataset"]["train"], 50, 10]  # pad 2, flips
    factors = manifest["runtime"]["factors"]  # what a re-run must share to repeat the bits (README)
    assert factors["threads"] == 1 and factors["cpu_capability"] and factors["torch"] and factors["precision"]
    assert manifest["teacher"]["factors"]["threads"] >= 1
    assert set(manifest) == set(FIELDS["sweep"]) <= documented_manifest_keys()  # the contract, and its docs
    assert manifest["version"] == VERSION and options(manifest).scheduler == "promote"  # the preset's default
    kd = trials[trials["kd_weight"] > 0]  # KD trials looked their targets up in the driver's table
    assert (kd["status"] == "COMPLETE").any()
    assert (kd.loc[kd["status"] == "COMPLETE", "kd_targets_source"] == "table").all()  # (pruned: no final)
    assert trials.loc[trials["kd_weight"] == 0, "kd_targets_source"].isna().all()
    assert "7/7 done" in proc.stderr and "best val_acc" in proc.stderr  # the live view
    status_lines = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert "| 0 running |" in status_lines[-1]  # the closing line shows nothing still running
    events = list((run_dir / "ray").rglob("events.out.tfevents.*"))  # TensorBoard: curves and hparams per trial
    assert events and any(b"hparams" in e.read_bytes() and b"val_acc" in e.read_bytes() for e in events)


def test_statuses_in_the_study_match_the_trials_table(smoke_run):
    run_dir, _ = smoke_run
    trials = pd.read_parquet(run_dir / "trials.parquet")
    study = optuna.load_study(study_name="iakd-e2e", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    expected = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "ERROR": "FAIL"}
    assert {r.trial_number: expected[r.status] for r in trials.itertuples()} == {t.number: t.state.name
                                                                                 for t in study.trials}
    assert "PRUNED" in set(trials["status"])  # the default scheduler (promote) stopped some trials at their rung
    for t in study.trials:  # a COMPLETE Optuna trial reached full fidelity (its short run's iteration, then the
        if t.state.name == "COMPLETE":  # full run's 3); PRUNED ones end at their complete 1-epoch short run
            assert t.user_attrs["epochs"] == 1 + 3 and max(t.intermediate_values) == 1 + 3  # final value included
        if t.state.name == "PRUNED":
            assert len(t.intermediate_values) == t.user_attrs["epochs"] == 1
    assert study.metric_names == ["val_acc"] and study.user_attrs["preset"] == "smoke"


def test_reference_trial_is_first(smoke_run):
    trials = pd.read_parquet(smoke_run[0] / "trials.parquet")
    first = trials.sort_values("trial_number").iloc[0]
    assert first["trial_number"] == 0
    assert (first["swap_schedule"], first["swap_p0"], first["units_per_stage"], first["kd_weight"],
            first["student_ce_weight"]) == ("constant", 0.5, 1, 0.0, 0.0)


def test_failing_and_nan_trials_are_recorded_and_the_rest_complete(smoke_run):
    trials = pd.read_parquet(smoke_run[0] / "trials.parquet").set_index("trial_number")
    assert trials.loc[2, "status"] == "ERROR" and "non-finite training loss" in trials.loc[2, "reason"]
    assert trials.loc[3, "status"] == "ERROR" and "injected fault" in trials.loc[3, "reason"]
    assert (trials.drop(index=[2, 3])["status"] != "ERROR").all()
    best = json.loads((smoke_run[0] / "best_config.json").read_text())
    complete = trials[trials["status"] == "COMPLETE"]
    assert best["val_acc"] == complete["val_acc_last"].max()
    assert best["config"]["data_root"] == str(ROOT / "data")  # as given: no path resolved on this machine


def test_replay_stops_every_trial_where_the_sweep_stopped_it(smoke_run):
    """study/replay.py's check of the recorded sweep (the defaults: concurrency 2, promotion per bracket; 2 of 7
    trials fail in their short runs) decides every bracket again from the short-run values: same trials
    pruned, at the same epochs (test_hedged_asha... and the --bracket 0 promoting test check Ray's decisions)."""
    from study.replay import check_recorded

    run_dir, _ = smoke_run
    trials, epochs = pd.read_parquet(run_dir / "trials.parquet"), pd.read_parquet(run_dir / "epochs.parquet")
    table = check_recorded(trials, epochs, json.loads((run_dir / "manifest.json").read_text()))
    assert len(table) == 5 and (table["recorded"] == 1).any()  # 7 trials, 2 failed; some pruned at their short run
    assert (table["recorded"] == table["replayed"]).all(), table
    proc = run([sys.executable, str(ROOT / "study" / "run_replay.py"), "--check", str(run_dir)])
    assert proc.returncode == 0 and "5 of 5 trials stopped where the sweep stopped them" in proc.stdout, proc.stdout


def test_hedged_asha_never_stops_its_hedge_bracket_and_assigns_it_by_seed(tmp_path, teacher_cache):
    from study.replay import check_recorded
    from study.schedulers import hedge_bracket

    proc = run(sweep_args(tmp_path, teacher_cache, "hedge", "--budget", "6", "--seed", "2", "--scheduler", "asha",
                          "--hedge", "0.4", "--grace-epochs", "1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "hedge" / "trials.parquet").set_index("trial_number").sort_index()
    assert list(trials["bracket"]) == [hedge_bracket(2, n, 0.4) for n in range(6)] == [1, 0, 0, 0, 0, 1]
    assert (trials.loc[trials["bracket"] == 1, "status"] == "COMPLETE").all()
    folders = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "hedge" / "ray").glob("session-*/trial-*"))
    assert folders == [f"trial-t{n:04d}" for n in range(6)]  # Ray's trial folders carry the Optuna number
    manifest = json.loads((tmp_path / "hedge" / "manifest.json").read_text())
    assert manifest["settings"]["hedge"] == 0.4
    table = check_recorded(trials.reset_index(), pd.read_parquet(tmp_path / "hedge" / "epochs.parquet"), manifest)
    assert (table["recorded"] == table["replayed"]).all(), table


@pytest.mark.parametrize("bracket", [None, 0])
def test_promoting_sweep_trains_complete_short_runs_and_promotes_as_decided(tmp_path, teacher_cache, bracket):
    """--scheduler promote: every trial first trains a complete short run; only the promoted ones then train the
    full run: by default the top third of each synchronous bracket (brackets of 4 here: at most half the budget),
    with --bracket 0 those that clear Ray's single-rung ASHA's running cut-off. Both fidelities are in the tables;
    the decisions replay exactly."""
    from study.replay import check_recorded

    extra = [] if bracket is None else ["--bracket", str(bracket)]
    proc = run(sweep_args(tmp_path, teacher_cache, "promo", "--budget", "8", "--seed", "3", "--scheduler", "promote",
                          "--short-epochs", "1", *extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "promo" / "trials.parquet").set_index("trial_id")
    epochs = pd.read_parquet(tmp_path / "promo" / "epochs.parquet")
    promoted = trials["epochs"] > 1
    assert promoted.any() and (~promoted).any()
    assert (trials.loc[promoted, "status"] == "COMPLETE").all() and (trials.loc[~promoted, "status"] == "PRUNED").all()
    assert (trials.loc[promoted, "epochs"] == 1 + 3).all()  # the short run's iteration, then the full run's 3
    for key, rows in epochs.groupby("trial_id"):
        assert list(rows["fidelity"]) == [1] + [3] * (len(rows) - 1)
        assert list(rows["epoch"]) == list(range(1, len(rows) + 1))
        assert list(rows["run_epoch"]) == [1] + list(range(1, len(rows)))
        assert trials.loc[key, "short_val_acc"] == rows["val_acc"].iloc[0]  # the value the promotion was decided on
        assert trials.loc[key, "val_acc_last"] == rows["val_acc"].iloc[-1]
        last_run = rows[rows["fidelity"] == rows["fidelity"].iloc[-1]]  # the full run of a promoted trial
        assert trials.loc[key, "val_acc_best"] == last_run["val_acc"].max()
    manifest = json.loads((tmp_path / "promo" / "manifest.json").read_text())
    assert manifest["settings"]["short_epochs"] == 1 and manifest["base_config"]["compat_epochs"] == []
    table = check_recorded(trials.reset_index(), epochs, manifest)
    assert len(table) == 8 and (table["recorded"] == table["replayed"]).all(), table
    study = optuna.load_study(study_name="iakd-promo", storage=f"sqlite:///{tmp_path / 'promo' / 'optuna.db'}")
    for t in study.trials:  # COMPLETE holds the full run's value; PRUNED ends at its short run
        row = trials.loc[f"t{t.number:04d}"]
        assert t.state.name == row["status"] and max(t.intermediate_values) == row["epochs"] == t.user_attrs["epochs"]
        assert sorted(t.intermediate_values) == list(range(1, row["epochs"] + 1))
        assert t.state.name != "COMPLETE" or t.value == row["val_acc_last"]
        if bracket is None and t.state.name == "COMPLETE":  # a promotion is a second Tune trial of the same trial
            assert t.user_attrs["tune_trial_id_full"] != t.user_attrs["tune_trial_id"] == row["tune_trial_id"]
    if bracket is None:
        assert manifest["settings"]["bracket"] == 4
        for first in (0, 4):  # each bracket's top ceil(4 / 3) by short run, whatever the order they came in
            members = trials[trials["trial_number"].between(first, first + 3)]
            top = members.sort_values(["short_val_acc", "trial_number"], ascending=[False, True]).index[:2]
            assert set(members.index[members["status"] == "COMPLETE"]) == set(top)
    else:
        assert "bracket" not in manifest["settings"] or not manifest["settings"]["bracket"]
    bad = run(sweep_args(tmp_path, teacher_cache, "bad", "--budget", "2", "--scheduler", "promote", "--short-epochs",
                         "3"))
    assert bad.returncode == 2 and "must be below the full fidelity (3 epochs)" in bad.stderr


@pytest.mark.parametrize("args,message", [
    (["--budget", "0"], "must be at least 1"),
    (["--budget", "many"], "not a whole number"),
    (["--budget", "2", "--preset", "huge"], "unknown preset"),
    (["--budget", "2", "--preset", "lapto"], "unknown preset 'lapto' (did you mean 'laptop'?)"),
    (["--budget", "2", "--hedg", "0.2"], "unrecognized arguments: --hedg 0.2; did you mean '--hedge'?"),  # no prefix
    (["--budget", "2", "--dataset", "mnist"], "dataset='mnist' is not one of"),
    (["--budget", "2", "--student", "resnet21"], "unknown architecture"),
    (["--budget", "2", "--gpus-per-trial", "-1"], "must be 0 or more"),
    (["--hedge", "1"], "must be below 1"),
    (["--budget", "2", "--hedge", "0.2"], "--hedge is for --scheduler asha, but the sweep's scheduler is promote"),
    (["--budget", "2", "--max-epochs", "1"], "--short-epochs 1 must be below the full fidelity (1 epochs)"),
    (["--budget", "2", "--scheduler", "fifo", "--bracket", "4"], "--bracket is for --scheduler promote, but the "
     "sweep's scheduler is fifo"),
    (["--budget", "2", "--bracket", "-1"], "must be 0 or more"),
    (["--points", "/nonexistent.json"], "cannot read a JSON list"),
])
def test_bad_input_exits_2_with_one_line_and_no_folder(tmp_path, teacher_cache, args, message):
    proc = run(sweep_args(tmp_path / "out", teacher_cache, "bad", *args), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_output_bad_resume_and_missing_gpus_exit_2_with_one_line(tmp_path, teacher_cache):
    for out in (Path("/proc/nope"), tmp_path / "file" / "sub"):  # root can "access" /proc: only a probe file tells
        (tmp_path / "file").write_text("x")
        proc = run(sweep_args(out, teacher_cache, "x", "--budget", "2"), timeout=120)
        assert proc.returncode == 2 and "cannot write" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = run([*SWEEP, "--resume", str(tmp_path)], timeout=120)
    assert proc.returncode == 2 and "is not a sweep run folder" in proc.stderr, proc.stderr
    proc = run(sweep_args(tmp_path, teacher_cache, "gpu", "--budget", "2", "--gpus-per-trial", "1"), timeout=180)
    assert proc.returncode == 2 and "--gpus-per-trial 0" in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error:"), proc.stderr


def start(args, faults: str = "") -> subprocess.Popen:
    return subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT,
                            env=env(faults), start_new_session=True)


def read_until(proc: subprocess.Popen, predicate) -> str:
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if predicate(line):
            return "".join(seen)
    raise AssertionError("the sweep ended before the moment to stop it:\n" + "".join(seen)[-3000:])


def finished_records(run_dir: Path) -> dict[str, bytes]:
    """The record files of trials the study shows finished (their bytes: a re-run would rewrite them)."""
    study = optuna.load_study(study_name=f"iakd-{run_dir.name}", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    done = [t.number for t in study.trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")]
    return {f"t{n:04d}": (run_dir / "trials" / f"t{n:04d}.jsonl").read_bytes() for n in done}


def check_accounted_once(run_dir: Path, budget: int) -> pd.DataFrame:
    trials = pd.read_parquet(run_dir / "trials.parquet")
    study = optuna.load_study(study_name=f"iakd-{run_dir.name}", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert len(trials) == budget and trials["trial_number"].is_unique
    expected = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "ERROR": "FAIL"}
    assert {r.trial_number: expected[r.status] for r in trials.itertuples()} == {t.number: t.state.name
                                                                                 for t in study.trials}
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"
    return trials


def test_hard_kills_at_awkward_moments_then_resume_accounts_for_every_trial_once(tmp_path, teacher_cache):
    """Default concurrency (2) and scheduler (promote): SIGKILL the process group right after a trial finishes,
    resume, SIGKILL again in the middle of a trial, resume, SIGTERM, resume to the end. Every trial of the budget is
    in the table and the study exactly once, in agreement, and a trial finished before a kill is never trained
    again."""
    budget, run_dir = 8, tmp_path / "killed"
    proc = start(sweep_args(tmp_path, teacher_cache, "killed", "--budget", str(budget)))
    # the instant trials are recorded as finished (with brackets: a bracket's losers, before its winners start)
    read_until(proc, lambda line: re.match(r"\[[1-9]\d*/", line) is not None)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    for stop in ("mid-trial kill", "sigterm"):
        before = finished_records(run_dir)
        proc = start([*SWEEP, "--resume", str(run_dir)])
        seen = read_until(proc, lambda line: " running |" in line and not line.startswith("[0/"))
        if stop == "mid-trial kill":
            time.sleep(1.5)  # inside the next trials' epochs
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        else:
            proc.send_signal(signal.SIGTERM)
            rest = proc.communicate(timeout=300)[1]
            assert proc.returncode == 130, seen + rest
            assert "resume with:" in rest and "Traceback" not in rest, rest
            assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
        after = finished_records(run_dir)
        assert all(after[k] == v for k, v in before.items()), "a finished trial was trained again"
    before = finished_records(run_dir)
    done = run([*SWEEP, "--resume", str(run_dir)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "already reported" not in done.stderr  # re-run trials' repeated epochs are not warned about
    assert all(finished_records(run_dir)[k] == v for k, v in before.items())
    trials = check_accounted_once(run_dir, budget)
    from study.replay import check_recorded  # every bracket decided as an uninterrupted sweep decides it

    table = check_recorded(trials, pd.read_parquet(run_dir / "epochs.parquet"),
                           json.loads((run_dir / "manifest.json").read_text()))
    assert len(table) == budget and (table["recorded"] == table["replayed"]).all(), table
    damaged_study_is_rebuilt_from_the_records(run_dir, budget)


def study_facts(run_dir: Path) -> list[tuple]:
    study = optuna.load_study(study_name=f"iakd-{run_dir.name}", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    return [(t.number, t.state.name, t.values, t.params, t.distributions, t.intermediate_values,
             t.user_attrs.get("epochs")) for t in study.trials]


def damaged_study_is_rebuilt_from_the_records(run_dir: Path, budget: int) -> None:
    """optuna.db cut to its first 3000 bytes: --resume keeps the damaged file aside, says so in one line, rebuilds
    every trial (parameters, distributions, curve, state, value) from the records and goes on; where a record
    lacks its parameters (runs made before records kept them), one error line, exit 2, and nothing moved."""
    facts, table = study_facts(run_dir), pd.read_parquet(run_dir / "trials.parquet")
    db = run_dir / "optuna.db"
    db.write_bytes(db.read_bytes()[:3000])
    done = run([*SWEEP, "--resume", str(run_dir)])
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if "was damaged" in line]
    assert len(said) == 1 and "database disk image is malformed" in said[0] and "Traceback" not in done.stderr
    assert len(list(run_dir.glob("optuna.db.damaged-*"))) == 1
    assert study_facts(run_dir) == facts
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "trials.parquet").drop(columns="tune_trial_id"),
                                  table.drop(columns="tune_trial_id"))
    check_accounted_once(run_dir, budget)
    record = sorted((run_dir / "trials").glob("*.jsonl"))[0]
    record.write_text("".join(line for line in record.read_text().splitlines(keepends=True)
                              if '"kind": "params"' not in line))
    data = bytearray(db.read_bytes())  # this time the header stays and pages after it are overwritten
    data[4096:12288] = b"\xff" * 8192
    db.write_bytes(bytes(data))
    damaged = db.read_bytes()
    bad = run([*SWEEP, "--resume", str(run_dir)])
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert bad.returncode == 2 and len(errors) == 1 and "Traceback" not in bad.stderr, bad.stderr[-3000:]
    assert "cannot rebuild it" in errors[0] and db.read_bytes() == damaged


def test_sigint_near_the_end_is_no_false_success_and_a_copy_resumes_without_touching_the_original(
        tmp_path, teacher_cache):
    proc = start(sweep_args(tmp_path, teacher_cache, "intr", "--budget", "3"))
    seen = read_until(proc, lambda line: line.startswith("[1/3 done"))
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, seen + rest
    run_dir = tmp_path / "intr"
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert "INTERRUPTED" in set(trials["status"]) and json.loads(
        (run_dir / "manifest.json").read_text())["status"] == "interrupted"
    study = optuna.load_study(study_name="iakd-intr", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    original = [(t.number, t.state.name) for t in study.trials]
    assert "RUNNING" in {s for _, s in original}  # interrupted trials are left to be re-run, not told anything
    copy = tmp_path / "moved" / "intr"
    shutil.copytree(run_dir, copy)
    done = run([*SWEEP, "--resume", str(copy)])
    assert done.returncode == 0, done.stderr[-3000:]
    check_accounted_once(copy, 3)
    study = optuna.load_study(study_name="iakd-intr", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert [(t.number, t.state.name) for t in study.trials] == original  # the original is untouched


@pytest.mark.parametrize("delay", [0.5, 1.5, 2.5, 3.5])
def test_sigint_during_start_up_is_one_line_and_exit_130(tmp_path, teacher_cache, delay):
    """Ctrl-C while Python, Ray or the teacher are still starting: no traceback, exit 130."""
    proc = start(sweep_args(tmp_path, teacher_cache, "early", "--budget", "2"))
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=180)[1]
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-2000:]


def test_deterministic_mode_repeats_exactly(tmp_path, teacher_cache):
    tables = []
    for name in ("a", "b"):
        proc = run(sweep_args(tmp_path, teacher_cache, name, "--budget", "3", "--deterministic", "--seed", "5"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        t = pd.read_parquet(tmp_path / name / "trials.parquet")
        tables.append(t.drop(columns=["tune_trial_id", "train_seconds", "eval_seconds", "images_per_second"]))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    # the best trial, replayed from its best_config.json by the plain command, gives the recorded accuracy; its
    # student is the only one kept (no --save-students)
    best = json.loads((tmp_path / "a" / "best_config.json").read_text())
    assert sorted(p.name for p in (tmp_path / "a" / "students").iterdir()) == [Path(best["student"]).name]
    replay = subprocess.run([sys.executable, "-m", "iakd_core", "train", "--config",
                             str(tmp_path / "a" / "best_config.json"), "--json"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert json.loads(replay.stdout)["val_acc"] == best["val_acc"]


def test_two_objective_sweep_records_accuracy_and_cost_and_plots_the_front(tmp_path, teacher_cache):
    proc = run(sweep_args(tmp_path, teacher_cache, "mo", "--budget", "3", "--objective", "acc+cost",
                          "--save-students"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "mo"
    trials = pd.read_parquet(run_dir / "trials.parquet")
    kept = sorted(p.stem for p in (run_dir / "students").glob("*.pt"))  # --save-students: every COMPLETE trial's
    assert kept == sorted(trials.loc[trials["status"] == "COMPLETE", "trial_id"])
    study = optuna.load_study(study_name="iakd-mo", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert complete, proc.stderr[-2000:]
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    for t in complete:  # (val accuracy, training seconds) of the full-fidelity run (not its short run before it)
        row = trials.set_index("trial_number").loc[t.number]
        curve = epochs[epochs["trial_id"] == row["trial_id"]]
        full_run = curve[curve["fidelity"] == 3] if "fidelity" in curve else curve
        assert t.values[0] == pytest.approx(row["val_acc_last"])
        assert t.values[1] == pytest.approx(full_run["epoch_seconds"].sum()) and t.values[1] > 0
        assert row["train_seconds"] == pytest.approx(curve["epoch_seconds"].sum())  # the table: all the trial spent
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
    """A head started the way the README says (token authentication on), here on loopback: the sweep connects with
    the token in its environment."""
    port = free_port()
    ray_bin = Path(sys.executable).parent / "ray"
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "t" * 32,
             "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # a one-machine cluster on loopback (the README's way)
    head = subprocess.Popen([str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=2", "--block",
                             "--include-dashboard=false", f"--temp-dir=/tmp/iakdh{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                            env={**os.environ, **token})
    try:
        time.sleep(8)
        addresses = listening(descendants(head.pid))
        assert addresses and all(loopback(a) for a, _ in addresses), addresses
        proc = subprocess.run(sweep_args(tmp_path, teacher_cache, "cluster", "--budget", "2", "--address",
                                         f"127.0.0.1:{port}"), capture_output=True, text=True, timeout=300,
                              env={**env(), **token}, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        trials = pd.read_parquet(tmp_path / "cluster" / "trials.parquet")
        assert len(trials) == 2 and (trials["status"] != "ERROR").all()
    finally:
        head.send_signal(signal.SIGINT)  # --block: the head process stops its Ray processes on SIGINT
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()


def loopback(address: str) -> bool:
    """127.0.0.0/8 or ::1, also written as an IPv4-mapped IPv6 address (::ffff:127.0.0.1)."""
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def listening(pids: list[int]) -> set[tuple[str, int]]:
    """The TCP addresses these processes listen on (from /proc: /proc/net/tcp{,6} and each process's fds)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    found = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
            found.add((str(ipaddress.ip_address(packed)), int(port, 16)))
    return found


def test_private_ray_listens_on_loopback_only_with_a_session_token_in_no_file(tmp_path, teacher_cache):
    """The default (no --address): while trials run, every TCP listener of the sweep and of every process Ray
    started for it (GCS, raylet, agents, trial workers) is on 127.0.0.0/8 or ::1; authentication is on with a
    token that lives in the processes' environment only (no ~/.ray/auth_token written)."""
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen(sweep_args(tmp_path, teacher_cache, "lo", "--budget", "2"), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, cwd=ROOT, env={**env(), "HOME": str(home)},
                            start_new_session=True)
    read_until(proc, lambda line: "| 2 running |" in line)
    pids = descendants(proc.pid)
    addresses = listening(pids)
    workers, environ = [], []
    for pid in pids:
        try:
            if "ImplicitFunc" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                environ.append(Path(f"/proc/{pid}/environ").read_bytes())
                workers.append(pid)
        except OSError:  # a process that ended meanwhile
            continue
    proc.communicate(timeout=600)
    assert proc.returncode == 0
    assert len(addresses) >= 4, addresses  # GCS, raylet, agents, workers: really measured
    assert all(loopback(a) for a, _ in addresses), addresses
    assert workers and all(b"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in e and b"RAY_AUTH_MODE=token" in e
                           and b"RAY_AUTH_TOKEN=" in e for e in environ)  # inherited by what Ray started
    assert not (home / ".ray" / "auth_token").exists()


def test_mlflow_tracking_logs_every_trial_when_installed(tmp_path, teacher_cache):
    pytest.importorskip("mlflow", reason="MLflow is an optional extra (pip install -e '.[mlflow]'); not installed")
    proc = run(sweep_args(tmp_path, teacher_cache, "ml", "--budget", "2", "--mlflow"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'ml' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("iakd-ml")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and all("val_acc" in r.data.metrics for r in runs)


def test_mlflow_asked_for_but_missing_is_one_line_exit_2(tmp_path, teacher_cache):
    try:
        import mlflow  # noqa: F401

        pytest.skip("MLflow is installed here: the missing-package message cannot be seen")
    except ImportError:
        pass
    proc = run(sweep_args(tmp_path, teacher_cache, "ml", "--budget", "2", "--mlflow"), timeout=120)
    assert proc.returncode == 2 and "pip install -e '.[mlflow]'" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "ml").exists()


def test_pool_trains_the_same_points_at_every_fidelity_continues_and_replays(tmp_path, teacher_cache):
    from study.space import to_trial_config

    pool = [sys.executable, str(ROOT / "study" / "run_pool.py"), "--preset", "smoke", "--size", "3", "--short", "1",
            "--output-dir", str(tmp_path), "--teacher-cache", teacher_cache, "--data-root", str(ROOT / "data")]
    proc = run(pool)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "smoke"
    points = json.loads((folder / "configs.json").read_text())
    curves = pd.read_csv(folder / "curves.csv")
    assert curves.groupby("fidelity")["config"].nunique().to_dict() == {1: 3, 3: 3}
    ends = curves.groupby(["fidelity", "config"])["epoch"].max()
    assert (ends.index.get_level_values("fidelity") == ends.to_numpy()).all()  # every run complete
    for epochs in (1, 3):  # trial n of each fidelity's sweep is point n, exactly
        trials = pd.read_parquet(folder / "runs" / f"e{epochs}" / "trials.parquet").set_index("trial_number")
        for n, point in enumerate(points):
            for key, value in to_trial_config(point).items():
                assert trials.loc[n, key] == value, (epochs, n, key)
    again = run(pool)
    assert again.returncode == 0 and again.stdout.count("finished earlier, skipped") == 2, again.stdout
    pd.testing.assert_frame_equal(pd.read_csv(folder / "curves.csv"), curves)
    grown = run([*pool[:-8], "--short", "1,2", *pool[-6:]])  # a new short fidelity: only it is trained
    assert grown.returncode == 0 and grown.stdout.count("finished earlier, skipped") == 2, grown.stdout
    more = pd.read_csv(folder / "curves.csv")
    assert more.groupby("fidelity")["config"].nunique().to_dict() == {1: 3, 2: 3, 3: 3}
    pd.testing.assert_frame_equal(more[more["fidelity"] != 2].reset_index(drop=True), curves.reset_index(drop=True))
    replay = run([sys.executable, str(ROOT / "study" / "run_replay.py"), str(folder), "--orders", "5",
                  "--candidates", "fifo", "asha:grace=1,rf=3", "promote:short=1,rf=3"])
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert "promote:short=1,rf=3" in replay.stdout and "complete 1-epoch run" in replay.stdout
    assert run(pool).returncode == 0 and len(pd.read_csv(folder / "curves.csv")) == len(more)  # the first command
    for args, message in ((["--size", "4"], "holds a pool with other settings"), (["--short", "3"], "from 1 to 2")):
        bad = run([*pool, *args])
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps([{**points[0], "lr": 0.1}]))
    bad = run(sweep_args(tmp_path / "x", teacher_cache, "x", "--points", str(outside)), timeout=120)
    assert bad.returncode == 2 and "sets lr, which this search space does not ask for" in bad.stderr, bad.stderr


def test_a_full_disk_is_one_line_and_the_run_resumes_once_space_is_back(tmp_path, teacher_cache):
    """The run folder on a 1.5 MB tmpfs fills during the sweep (students, Ray's files, the study): one error line,
    exit 2, no traceback; after the filesystem grows, --resume ends with every trial exactly once."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        full = run(sweep_args(mnt, teacher_cache, "full", "--budget", "6"))
        errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
        assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-3000:]
        assert len(errors) == 1 and "disk of the run folder is full" in errors[0]
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        done = run([*SWEEP, "--resume", str(mnt / "full")])
        assert done.returncode == 0, done.stderr[-3000:]
        check_accounted_once(mnt / "full", 6)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
