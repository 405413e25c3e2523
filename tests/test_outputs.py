"""Students out, configs in, teachers in: ``iakd train --output-dir / --config / --teacher-weights``."""

import json
import subprocess
import sys

import pytest
import torch

from iakd_core.config import TrialConfig
from iakd_core.data import load_splits
from iakd_core.models import build_model
from iakd_core.presets import preset_config
from iakd_core.teacher import get_teacher
from iakd_core.train import evaluate, pick_device, place


def cli(*args):
    return subprocess.run([sys.executable, "-m", "iakd_core", *args], capture_output=True, text=True, timeout=300)


def smoke(teacher_cache, *extra):
    return ["train", "--preset", "smoke", "--teacher-cache", teacher_cache, "--teacher-epochs", "1", "--json",
            *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, teacher_cache):
    out = tmp_path_factory.mktemp("student")
    proc = cli(*smoke(teacher_cache, "--epochs", "3", "--swap-p0", "0.4", "--output-dir", str(out)))
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def test_saved_student_loads_and_evaluates_to_the_recorded_accuracy(trained):
    out, metrics = trained
    assert json.loads((out / "metrics.json").read_text()) == metrics
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]  # one line per epoch
    assert [m["epoch"] for m in log] == [1, 2, 3] and log[-1]["val_acc"] == metrics["val_acc"]
    cfg = TrialConfig.from_dict(json.loads((out / "config.json").read_text()))
    data = load_splits(cfg)
    student = build_model(cfg.student, data.num_classes, data.in_channels)
    student.load_state_dict(torch.load(out / "student.pt", weights_only=True))
    device = pick_device("cpu")
    assert evaluate(place(student, device, cfg.channels_last), data.val, cfg, device)["acc"] == metrics["val_acc"]
    if metrics["best_epoch"] != metrics["epochs"]:  # the best-on-validation student, when it is another epoch
        best = build_model(cfg.student, data.num_classes, data.in_channels)
        best.load_state_dict(torch.load(out / "student_best.pt", weights_only=True))
        assert evaluate(place(best, device, cfg.channels_last), data.val, cfg, device)["acc"] == metrics["val_acc_best"]
    else:
        assert not (out / "student_best.pt").exists()


def test_config_file_replays_the_run_and_flags_override_it(trained, tmp_path):
    out, metrics = trained
    again = cli("train", "--config", str(out / "config.json"), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["val_acc"] == metrics["val_acc"]
    yaml_file = tmp_path / "base.yaml"
    yaml_file.write_text("preset_ignored: 1\n")
    bad = cli("train", "--preset", "smoke", "--config", str(yaml_file))
    assert bad.returncode == 2 and "unknown config key(s) ['preset_ignored']" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    cfg = json.loads((out / "config.json").read_text())
    yaml_file.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in cfg.items()))
    short = cli("train", "--config", str(yaml_file), "--epochs", "1", "--json")  # YAML, and a flag over it
    assert short.returncode == 0, short.stderr
    assert json.loads(short.stdout)["epochs"] == 1


def test_outside_teacher_weights_are_checked_loaded_and_evaluated(tmp_path, teacher_cache):
    cfg = TrialConfig.from_dict(preset_config("smoke"), teacher_cache=teacher_cache, teacher_epochs=1)
    teacher, meta, _ = get_teacher(cfg)
    good = tmp_path / "teacher.pt"
    torch.save(teacher.state_dict(), good)
    proc = cli(*smoke(teacher_cache, "--epochs", "1", "--teacher-weights", str(good), "--teacher-cache",
                      str(tmp_path / "never-used")))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["teacher_val_acc"] == meta["val_acc"]
    assert not (tmp_path / "never-used").exists()  # no teacher was trained or cached

    wrong = tmp_path / "resnet14.pt"
    torch.save(build_model("resnet14", 10, 1).state_dict(), wrong)
    proc = cli(*smoke(teacher_cache, "--teacher-weights", str(wrong)))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "a resnet26 needs" in proc.stderr or "lacks" in proc.stderr
    assert "stages." in proc.stderr  # names the first wrong key
    pickled = tmp_path / "model.pt"
    torch.save(build_model("resnet26", 10, 1), pickled)  # a whole pickled module, not a state_dict
    proc = cli(*smoke(teacher_cache, "--teacher-weights", str(pickled)))
    assert proc.returncode == 2 and "weights_only=True" in proc.stderr, proc.stderr


def test_preset_config_files_match_the_registry_and_load_as_the_preset(tmp_path):
    from pathlib import Path

    from iakd_core.cli import preset_files
    from iakd_core.presets import PRESETS

    folder = Path(__file__).resolve().parent.parent / "configs"
    files = preset_files()
    assert sorted(files) == sorted(f"{name}.yaml" for name in PRESETS) == sorted(p.name for p in folder.glob("*"))
    for name, text in files.items():  # regenerate with: python -m iakd_core configs
        assert (folder / name).read_text() == text, f"configs/{name} is stale: run python -m iakd_core configs"
    dumped = tmp_path / "laptop.yaml"
    proc = cli("train", "--config", str(folder / "laptop.yaml"), "--epochs", "2", "--dump-config", str(dumped))
    assert proc.returncode == 0 and not (tmp_path / "student.pt").exists(), proc.stderr
    import yaml

    expected = TrialConfig.from_dict(preset_config("laptop"), epochs=2)
    assert TrialConfig.from_dict(yaml.safe_load(dumped.read_text())) == expected  # flags over the file, no training
