"""The training invariants of IAKD, on real Fashion-MNIST subsets (seconds each)."""

import copy

import pytest
import torch

from iakd_core.config import TrialConfig
from iakd_core.data import load_splits
from iakd_core.methods import build_method
from iakd_core.models import build_model
from iakd_core.presets import preset_config
from iakd_core.teacher import get_teacher
from iakd_core.train import fit, place
from iakd_core.trial import run_trial


def smoke_config(teacher_cache: str) -> TrialConfig:
    return TrialConfig.from_dict(preset_config("smoke", "iakd"), teacher_cache=teacher_cache, train_size=256,
                                 val_size=128, epochs=2, teacher_epochs=1)


@pytest.fixture
def cfg(teacher_cache):
    return smoke_config(teacher_cache)


def build(cfg):
    data = load_splits(cfg)
    teacher, _, _ = get_teacher(cfg, data)
    teacher = place(teacher, torch.device("cpu"), cfg.channels_last)  # as run_trial does: one layout, trained or cached
    torch.manual_seed(cfg.seed)
    student = build_model(cfg.student, data.num_classes, data.in_channels)
    return data, teacher, build_method(cfg, student, teacher)


@pytest.mark.parametrize("teacher_bn", ["eval", "batch"])
def test_teacher_weights_and_bn_statistics_are_bit_identical_after_iakd_training(cfg, teacher_bn):
    cfg = cfg.replace(swap_p0=0.9, kd_weight=0.5, student_ce_weight=0.5, teacher_bn=teacher_bn)
    data, teacher, method = build(cfg)
    before = copy.deepcopy(teacher.state_dict())
    fit(method, data, cfg, torch.device("cpu"))
    after = teacher.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # includes running_mean/var/num_batches_tracked
    assert not teacher.training and all(not m.training for m in teacher.modules())
    assert all(m.track_running_stats for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert method.hybrid.swap_counts.sum() == 0  # counters reset at each epoch's end
    assert method.hybrid.batches == 0


def test_teacher_parameters_are_not_in_the_optimizer(cfg):
    from iakd_core.train import make_optimizer

    _, teacher, method = build(cfg)
    opt, _ = make_optimizer(method, cfg, cfg.epochs)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not in_opt & {id(p) for p in teacher.parameters()}
    assert all(not p.requires_grad for p in teacher.parameters())
    method.train()
    assert not teacher.training


@pytest.mark.parametrize("no_swap_method,weights", [("student", {}), ("kd", {"kd_weight": 0.7, "ce_weight": 0.3})])
def test_p_zero_gives_exactly_the_no_swap_methods_losses(cfg, no_swap_method, weights):
    histories = []
    for method in ("iakd", no_swap_method):
        c = cfg.replace(method=method, swap_p0=0.0, **weights)
        data, _, m = build(c)
        histories.append(fit(m, data, c, torch.device("cpu")).history)
    keep = ("loss", "loss_ce", "loss_kd", "train_acc", "val_acc", "val_loss")
    iakd = [{k: h[k] for k in keep if k in h} for h in histories[0]]
    plain = [{k: h[k] for k in keep if k in h} for h in histories[1]]
    assert iakd == plain
    assert histories[0][-1]["swap_rate"] == 0.0


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(cfg):
    drop = ("epoch_seconds", "eval_seconds", "images_per_second", "compat_seconds")

    def run(seed):
        data, _, m = build(cfg.replace(seed=seed))
        return [{k: v for k, v in h.items() if k not in drop} for h in fit(m, data, cfg.replace(seed=seed),
                                                                        torch.device("cpu")).history]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_realised_swap_rate_per_epoch_follows_the_schedule(cfg):
    c = cfg.replace(swap_schedule="step", swap_p0=1.0, swap_p1=0.0, swap_step_at=0.5, train_size=512)
    data, _, m = build(c)
    history = fit(m, data, c, torch.device("cpu")).history
    assert [h["swap_rate"] for h in history] == [1.0, 0.0]
    assert all(h[f"swap_rate_u{i}"] == 1.0 for h in history[:1] for i in range(3))


def test_non_finite_loss_is_an_error(cfg, monkeypatch):
    import torch.nn.functional as F

    from iakd_core.train import NonFiniteLossError

    data, _, m = build(cfg)
    ce = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda *a, **k: ce(*a, **k) * float("nan"))
    with pytest.raises(NonFiniteLossError):
        fit(m, data, cfg, torch.device("cpu"))


def test_one_epoch_of_iakd_on_fashion_mnist_beats_chance_by_a_wide_margin(teacher_cache):
    cfg = preset_config("smoke", "iakd", teacher_cache=teacher_cache, train_size=3000, val_size=500, epochs=1,
                        teacher_epochs=2, lr_schedule="constant", lr=0.02, batch_size=32, swap_p0=0.25)
    metrics = run_trial(cfg)
    # chance is 10 %. One epoch of IAKD learns slower than the student alone (the student's features must first
    # become usable by the frozen teacher units, whose BN statistics are the teacher's); measured ~36 % here.
    assert metrics["val_acc"] > 25.0
    assert "test_acc" not in metrics  # the test set is only touched when asked


def test_run_trial_reports_every_epoch_and_can_evaluate_test(cfg):
    seen = []
    metrics = run_trial(cfg.replace(evaluate_test=True), seen.append)
    assert [m["epoch"] for m in seen] == [1, 2]
    assert 0 <= metrics["test_acc"] <= 100 and metrics["epochs"] == 2
    assert {"swap_rate_u0", "loss_ce", "lr", "images_per_second", "val_acc"} <= seen[0].keys()


def test_bn_recalibration_changes_only_the_students_eval_statistics(cfg):
    # every unit swapped and the student's statistics as the hybrid sees them: student units never see a batch
    c = cfg.replace(swap_p0=1.0, epochs=1, student_bn="hybrid")
    histories, students = [], []
    for batches in (0, 4):
        data, teacher, m = build(c.replace(bn_recalibration_batches=batches))
        before = copy.deepcopy(teacher.state_dict())
        histories.append(fit(m, data, c.replace(bn_recalibration_batches=batches), torch.device("cpu")).history)
        assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
        students.append(m.student)
    assert histories[0][0]["loss"] == histories[1][0]["loss"]  # training itself is unchanged
    bn_off = students[0].stages[0][0].bn1
    bn_on = students[1].stages[0][0].bn1
    assert torch.equal(bn_off.running_mean, torch.zeros_like(bn_off.running_mean))  # never updated
    assert not torch.equal(bn_on.running_mean, torch.zeros_like(bn_on.running_mean))
    assert bn_on.momentum == bn_off.momentum == 0.1  # restored after the cumulative pass
    assert histories[0][0]["val_loss"] != histories[1][0]["val_loss"]  # evaluation sees other statistics


def test_precision_auto_follows_the_hardware_and_explicit_modes_are_kept(monkeypatch):
    from iakd_core import train

    cpu = torch.device("cpu")
    layer = torch.nn.Conv2d(3, 4, 3)
    for native, expected in ((False, torch.float32), (True, torch.bfloat16)):
        monkeypatch.setattr(train, "cpu_has_native_bf16", lambda native=native: native)
        assert train.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
        with train.autocast(cpu, "auto"):
            assert layer(torch.randn(1, 3, 8, 8)).dtype == expected
        assert train.resolve_precision("fp32", cpu) == "fp32" and train.resolve_precision("bf16", cpu) == "bf16"
    with train.autocast(cpu, "bf16"):
        assert layer(torch.randn(1, 3, 8, 8)).dtype == torch.bfloat16
    with train.autocast(cpu, "fp32"):
        assert layer(torch.randn(1, 3, 8, 8)).dtype == torch.float32


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_short_run_in_each_precision_trains_and_reports_the_mode_it_used(cfg, precision):
    metrics = run_trial(cfg.replace(precision=precision, train_size=128, epochs=1))
    assert metrics["precision"] == precision and metrics["device"] == "cpu"
    assert 0 <= metrics["val_acc"] <= 100


def test_compatibility_diagnostic_runs_at_the_asked_epochs_is_bounded_and_changes_no_training(cfg):
    c = cfg.replace(epochs=3, units_per_stage=2, swap_p0=0.5, student_ce_weight=0.3, compat_epochs=(1,),
                    compat_size=100)
    data, _, m = build(c)
    with_diag = fit(m, data, c, torch.device("cpu")).history
    assert [("compat_u0" in h) for h in with_diag] == [True, False, True]  # epoch 1 (asked) and the last
    for h in (with_diag[0], with_diag[2]):
        values = [h["compat_student"], h["compat_teacher"], *(h[f"compat_u{i}"] for i in range(6))]
        assert all(0 <= v <= 100 for v in values) and h["compat_seconds"] > 0
        assert "compat_u6" not in h
    assert with_diag[2]["compat_teacher"] == with_diag[0]["compat_teacher"]  # the frozen teacher never changes
    off = c.replace(compat_size=0)
    data, _, m = build(off)
    without = fit(m, data, off, torch.device("cpu")).history
    drop = ("epoch_seconds", "eval_seconds", "images_per_second")
    diagnostic = ("compat_", "val_acc_recal")
    assert [{k: v for k, v in h.items() if k not in drop and not k.startswith(diagnostic)} for h in with_diag] == \
        [{k: v for k, v in h.items() if k not in drop} for h in without]


def test_compatibility_student_figure_is_the_student_on_the_subset_and_conventional_methods_skip_it(cfg):
    from iakd_core.data import TensorDataset
    from iakd_core.train import evaluate, unit_compatibility

    data, teacher, m = build(cfg.replace(compat_size=64))
    compat = unit_compatibility(m, data.val, cfg.replace(compat_size=64), torch.device("cpu"))
    subset = TensorDataset(data.val.images[:64], data.val.labels[:64])
    assert compat["compat_student"] == evaluate(m.student, subset, cfg, torch.device("cpu"))["acc"]
    assert compat["compat_teacher"] == evaluate(teacher, subset, cfg, torch.device("cpu"))["acc"]
    assert m.student.training  # restored
    kd = cfg.replace(method="kd", kd_weight=0.9, ce_weight=0.1)
    data, _, m = build(kd)
    assert not any(k.startswith(("compat_", "val_acc_recal")) for h in fit(m, data, kd, torch.device("cpu")).history
                   for k in h)
