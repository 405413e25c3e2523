"""The student's BatchNorm statistics describe the student alone (``student_bn="clean"``, the default), while
``"hybrid"`` (every student layer updates on whatever it sees) stays selectable; gradients never depend on it."""

import copy

import pytest
import torch
from test_training import build as build_unplaced
from test_training import smoke_config

from iakd_core.train import fit, place, recalibrate_bn

CPU = torch.device("cpu")


@pytest.fixture
def cfg(teacher_cache):
    return smoke_config(teacher_cache)


def build(cfg):
    """As the training invariants build it, with the method placed as run_trial places it."""
    data, teacher, method = build_unplaced(cfg)
    return data, teacher, place(method, CPU, cfg.channels_last)


def norms(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def buffers(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


def trained(cfg):
    data, teacher, method = build(cfg)
    history = fit(method, data, cfg, CPU).history
    return data, teacher, method, history


@pytest.mark.parametrize("student_ce", [0.0, 0.5])
def test_at_p_zero_both_modes_train_bit_identically(cfg, student_ce):
    runs = [trained(cfg.replace(swap_p0=0.0, student_bn=mode, student_ce_weight=student_ce))
            for mode in ("clean", "hybrid")]
    drop = ("epoch_seconds", "eval_seconds", "images_per_second", "compat_seconds")
    histories = [[{k: v for k, v in h.items() if k not in drop} for h in run[3]] for run in runs]
    assert histories[0] == histories[1]
    states = [run[2].student.state_dict() for run in runs]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize("student_pass", [False, True])
def test_gradients_are_the_same_in_both_modes_and_only_downstream_buffers_differ(cfg, student_pass):
    """One step with unit 1 of 3 swapped in: the stem and unit 0 are the shared prefix, unit 2 and the head are
    fed by the teacher unit. Gradients are bit-identical; clean mode leaves the downstream statistics as the
    student's own continuation sets them."""
    data, _, method = build(cfg.replace(precision="fp32"))
    x, y = data.train.images[:32].float() / 255.0, data.train.labels[:32]
    x = x.contiguous(memory_format=torch.channels_last)
    start = copy.deepcopy(method.state_dict())
    grads, bufs = {}, {}
    for mode in ("clean", "hybrid"):
        method.load_state_dict(start)
        method.hybrid.student_bn = mode
        method.train()
        method.zero_grad(set_to_none=True)
        logits, _, student_logits = method.hybrid.forward_with_student(x, [False, True, False],
                                                                      student_pass=student_pass)
        loss = torch.nn.functional.cross_entropy(logits, y)
        if student_pass:
            loss = loss + torch.nn.functional.cross_entropy(student_logits, y)
        loss.backward()
        grads[mode] = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
        bufs[mode] = buffers(method.student)
    assert grads["clean"].keys() == grads["hybrid"].keys() and grads["clean"]
    assert all(torch.equal(grads["clean"][n], grads["hybrid"][n]) for n in grads["clean"])
    prefix = [k for k in bufs["clean"] if k.startswith(("stem", "stages.0."))]
    assert prefix and all(torch.equal(bufs["clean"][k], bufs["hybrid"][k]) for k in prefix)
    downstream = [k for k in bufs["clean"] if k.startswith("stages.2.") and "running_mean" in k]
    assert downstream and all(not torch.equal(bufs["clean"][k], bufs["hybrid"][k]) for k in downstream)
    # clean: every student BN layer updated exactly once by this batch (hybrid with a student pass: the
    # downstream ones twice, once on teacher-fed features)
    counts = {k: int(v) for k, v in bufs["clean"].items() if k.endswith("num_batches_tracked")}
    assert set(counts.values()) == {1}


def test_with_weights_held_fixed_clean_statistics_are_the_student_alones_and_match_a_recalibration(cfg):
    """lr = 0 (the weights never move, so statistics are all that changes), no augmentation, 32 batches per
    epoch. Clean mode at p = 0.7 ends with the running statistics of the student trained alone (p = 0), bit for
    bit, and those match a student-only recalibration (cumulative average over the whole train set) within the
    exponential moving average's own noise: mean |running mean - recalibrated mean| / recalibrated std over all
    BN channels was 0.003 here, so 0.02 leaves room for other kernels. Hybrid mode's are far off (0.11 here)."""
    base = cfg.replace(lr=0.0, lr_schedule="constant", crop_padding=0, flip=False, batch_size=16, train_size=512)

    def gap(student, data):
        reference = copy.deepcopy(student)
        recalibrate_bn(reference, data.train, 10_000, base, CPU, torch.Generator().manual_seed(0))
        per_layer = [float(((a.running_mean - b.running_mean).abs() / (b.running_var + b.eps).sqrt()).mean())
                     for a, b in zip(norms(student), norms(reference), strict=True)]
        return sum(per_layer) / len(per_layer)

    alone = trained(base.replace(swap_p0=0.0))
    clean = trained(base.replace(swap_p0=0.7, student_bn="clean"))
    hybrid = trained(base.replace(swap_p0=0.7, student_bn="hybrid"))
    assert clean[3][-1]["swap_rate"] > 0.5 and hybrid[3][-1]["swap_rate"] > 0.5
    assert buffers(clean[2].student).keys() == buffers(alone[2].student).keys()
    assert all(torch.equal(v, buffers(alone[2].student)[k]) for k, v in buffers(clean[2].student).items())
    g_clean, g_hybrid = gap(clean[2].student, clean[0]), gap(hybrid[2].student, hybrid[0])
    assert g_clean < 0.02, g_clean
    assert g_hybrid > 0.05 and g_hybrid > 5 * g_clean, (g_hybrid, g_clean)


@pytest.mark.parametrize("teacher_bn,student_bn", [("eval", "clean"), ("batch", "clean"), ("eval", "hybrid"),
                                                   ("batch", "hybrid")])
def test_teacher_buffers_are_untouched_in_every_mode(cfg, teacher_bn, student_bn):
    c = cfg.replace(swap_p0=0.9, teacher_bn=teacher_bn, student_bn=student_bn, epochs=1)
    data, teacher, method = build(c)
    before = copy.deepcopy(teacher.state_dict())
    fit(method, data, c, CPU)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_the_diagnostic_epochs_record_accuracy_with_running_and_with_recalibrated_statistics(cfg):
    history = trained(cfg.replace(swap_p0=0.7, compat_epochs=(1,), compat_size=64))[3]
    assert all("val_acc_recal" in h and 0 <= h["val_acc_recal"] <= 100 for h in history)
    assert "val_acc_recal" not in trained(cfg.replace(swap_p0=0.7, epochs=3, compat_size=64))[3][1]
