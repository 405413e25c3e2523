import json
import subprocess
import sys

import pytest

from iakd_core.config import TrialConfig
from iakd_core.presets import preset_config
from iakd_core.teacher import TeacherCacheError, get_teacher, teacher_key, teacher_path


def test_teacher_is_cached_and_reloaded_identically(tmp_path):
    cfg = TrialConfig.from_dict(preset_config("smoke"), teacher_cache=str(tmp_path), teacher_epochs=1,
                                train_size=128, val_size=64)
    first, meta, cached = get_teacher(cfg)
    assert not cached and teacher_path(cfg).exists()
    second, meta2, cached2 = get_teacher(cfg)
    assert cached2 and meta2 == meta
    assert all((a == b).all() for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True))
    assert {"val_acc", "test_acc", "recipe", "versions", "key"} <= meta.keys()


def test_teacher_key_depends_on_recipe_not_on_student_knobs():
    base = TrialConfig.from_dict(preset_config("smoke"))
    assert teacher_key(base) == teacher_key(base.replace(swap_p0=0.1, student="resnet8", epochs=7, threads=2,
                                                         bn_recalibration_batches=8, kd_weight=0.5))
    assert teacher_key(base) != teacher_key(base.replace(teacher_epochs=9))
    assert teacher_key(base) != teacher_key(base.replace(train_size=100))
    # the teacher's own train set: explicit teacher_train_size equal to train_size is the same teacher
    assert teacher_key(base) == teacher_key(base.replace(teacher_train_size=base.train_size))
    assert teacher_key(base) != teacher_key(base.replace(teacher_train_size=2 * base.train_size))
    assert teacher_key(base.replace(teacher_train_size=900)) == teacher_key(base.replace(teacher_train_size=900,
                                                                                         train_size=300))


def test_teacher_trains_on_its_own_larger_split(tmp_path):
    cfg = TrialConfig.from_dict(preset_config("smoke"), teacher_cache=str(tmp_path), teacher_epochs=1,
                                train_size=128, val_size=64, teacher_train_size=256)
    _, meta, _ = get_teacher(cfg)
    assert meta["dataset"]["train"] == 256 and meta["dataset"]["val"] == 64
    assert meta["precision"] in ("fp32", "bf16") and meta["device"] == "cpu"


def test_corrupt_teacher_file_is_a_clear_error_naming_it(tmp_path):
    cfg = TrialConfig.from_dict(preset_config("smoke"), teacher_cache=str(tmp_path), teacher_epochs=1,
                                train_size=128, val_size=64)
    get_teacher(cfg)
    teacher_path(cfg).write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherCacheError, match=str(teacher_path(cfg).name)):
        get_teacher(cfg)


def test_a_swapped_or_edited_teacher_file_is_refused_by_its_checksum(tmp_path):
    import torch

    cfg = TrialConfig.from_dict(preset_config("smoke"), teacher_cache=str(tmp_path), teacher_epochs=1,
                                train_size=128, val_size=64)
    model, meta, _ = get_teacher(cfg)
    assert len(meta["sha256"]) == 64
    edited = {k: v.clone() for k, v in model.state_dict().items()}
    edited["head.fc.bias"] += 1.0  # loads fine (same keys and shapes): only the checksum can tell
    torch.save(edited, teacher_path(cfg))
    with pytest.raises(TeacherCacheError, match="do not match the checksum"):
        get_teacher(cfg)


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "iakd_core", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_cli_trains_one_configuration_and_prints_json(tmp_path, teacher_cache):
    out = cli("train", "--preset", "smoke", "--teacher-cache", teacher_cache, "--epochs", "1", "--teacher-epochs",
              "1", "--swap-p0", "0.3", "--json")
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)
    assert metrics["epochs"] == 1 and 0 <= metrics["val_acc"] <= 100
    assert "epoch 1/1" in out.stderr  # progress


@pytest.mark.parametrize("args,message", [
    (["--swap-p0", "2"], "swap_p0=2.0 is out of range"),
    (["--student", "resnet21"], "unknown architecture"),
    (["--preset", "nope"], "unknown preset"),
    (["--units-per-stage", "3"], "not possible for resnet26 -> resnet14"),
    (["--epoch", "3"], "unrecognized arguments: --epoch 3; did you mean '--epochs'?"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, message, teacher_cache):
    out = cli("train", "--teacher-cache", teacher_cache, "--preset", "smoke", "--teacher-epochs", "1", *args)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_an_impossible_granularity_fails_before_any_teacher_is_trained(tmp_path):
    out = cli("train", "--teacher-cache", str(tmp_path / "teachers"), "--preset", "smoke", "--units-per-stage", "3")
    assert out.returncode == 2 and "units_per_stage=3 is not possible" in out.stderr, out.stderr
    assert not (tmp_path / "teachers").exists()


def test_cli_help_lists_the_options():
    out = cli("train", "--help")
    assert out.returncode == 0 and "--swap-schedule" in out.stdout and "--units-per-stage" in out.stdout
    flat = " ".join(out.stdout.split())  # the defaults shown are the ones the run gets: the default preset's
    assert "student architecture (default: resnet14)" in flat and "ASHA rungs) (default: none)" in flat
    smoke = " ".join(cli("train", "--preset", "smoke", "--help").stdout.split())
    assert "training epochs (the fidelity ASHA cuts) (default: 3)" in smoke
    teacher = cli("teacher", "--help")  # only what shapes a teacher
    assert teacher.returncode == 0 and "--teacher-epochs" in teacher.stdout and "--lr" in teacher.stdout
    assert not any(flag in teacher.stdout for flag in ("--swap-schedule", "--kd-weight", "--student ", "--epochs "))


def test_method_flag_over_a_config_file_drops_the_files_other_terms(tmp_path):
    import argparse

    from iakd_core.cli import config_from_args

    best = tmp_path / "best.json"
    best.write_text(json.dumps({"config": {**preset_config("smoke", "iakd"), "student_ce_weight": 0.7,
                                           "bn_recalibration_batches": 32, "kd_weight": 0.2}}))
    args = argparse.Namespace(preset="smoke", config=str(best), method="student")
    cfg = config_from_args(args)  # no other flags given
    assert (cfg.method, cfg.kd_weight, cfg.student_ce_weight, cfg.bn_recalibration_batches) == ("student", 0, 0, 0)
