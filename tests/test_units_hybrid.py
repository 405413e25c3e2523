import copy

import pytest
import torch
from torch import nn

from iakd_core.config import TrialConfig
from iakd_core.hybrid import HybridNetwork
from iakd_core.methods import build_method
from iakd_core.models import build_model
from iakd_core.schedules import PROFILES, SWAP_MODES, unit_probabilities
from iakd_core.units import IncompatiblePairError, pair_units, supported_granularities


def pair(t="resnet26", s="resnet14", classes=10, ch=1):
    torch.manual_seed(0)
    return build_model(t, classes, ch), build_model(s, classes, ch)


def test_supported_granularities_are_common_divisors():
    assert supported_granularities(*pair("resnet56", "resnet20")) == [1, 3]
    assert supported_granularities(*pair("resnet110", "resnet32")) == [1]
    assert supported_granularities(*pair("wrn_40_2", "wrn_16_2")) == [1, 2]
    assert supported_granularities(*pair("resnet26", "resnet14")) == [1, 2]


def test_unsupported_granularity_is_a_clear_error():
    with pytest.raises(IncompatiblePairError, match="supported: \\[1, 3\\]"):
        pair_units(*pair("resnet56", "resnet20"), units_per_stage=2)


def test_adapters_exist_only_where_widths_differ():
    same = pair_units(*pair("resnet56", "resnet20", 100, 3))
    assert not same.has_adapters
    wrn = pair_units(*pair("wrn_40_2", "wrn_40_1", 100, 3))
    # stem is 16 wide in both: the first unit needs no input adapter, every output (and later input) does
    assert isinstance(wrn.adapters_in[0], nn.Identity)
    assert all(not isinstance(a, nn.Identity) for a in [*wrn.adapters_in[1:], *wrn.adapters_out])
    wide = pair_units(*pair("resnet32x4", "resnet8x4", 100, 3))
    assert not wide.has_adapters


def test_incompatible_pair_is_a_clear_error():
    teacher, student = pair()
    student.stages = student.stages[:2]
    with pytest.raises(IncompatiblePairError, match="same number of stages"):
        pair_units(teacher, student)


def make_hybrid(units_per_stage=1, t="resnet26", s="resnet14", teacher_bn="eval"):
    teacher, student = pair(t, s)
    teacher.requires_grad_(False).eval()
    pairing = pair_units(teacher, student, units_per_stage)
    return HybridNetwork(student, pairing, lambda t: 0.5, teacher_bn=teacher_bn), teacher, student


def test_all_units_swapped_is_the_teacher_backbone_between_student_stem_and_head():
    hybrid, teacher, student = make_hybrid(2)
    student.eval()
    x = torch.randn(4, 1, 14, 14)
    logits, _ = hybrid(x, [True] * hybrid.num_units)
    h = student.stem(x)
    for stage in teacher.stages:
        h = stage(h)
    assert torch.equal(logits, student.head(h))


def test_no_unit_swapped_is_the_student():
    hybrid, _, student = make_hybrid()
    student.eval()
    x = torch.randn(4, 1, 14, 14)
    assert torch.equal(hybrid(x, [False] * 3)[0], student(x))


def test_gradients_reach_student_units_before_a_swapped_teacher_unit():
    hybrid, teacher, student = make_hybrid()
    logits, _ = hybrid(torch.randn(4, 1, 14, 14), [False, True, True])
    logits.sum().backward()
    assert student.stem[0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.stages[0].parameters())
    assert all(p.grad is None for p in student.stages[1].parameters())  # replaced: not used this batch
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("mask", [[False, True, False], [True, False, True], [False, False, False]])
def test_shared_prefix_student_pass_equals_a_separate_student_pass(mask):
    """The extra student-only CE (IAKD's student_ce term) reuses the hybrid's prefix: same values and gradients
    as running the student again from the input."""
    teacher, student = pair()
    teacher.requires_grad_(False).eval()
    twin = copy.deepcopy(student)
    x, y = torch.randn(8, 1, 14, 14), torch.arange(8)
    ce = nn.functional.cross_entropy
    shared = HybridNetwork(student, pair_units(teacher, student), lambda t: 0.5)
    logits, _, student_logits = shared.forward_with_student(x, mask)
    (ce(logits, y) + 0.5 * ce(student_logits, y)).backward()
    separate = HybridNetwork(twin, pair_units(teacher, twin), lambda t: 0.5)
    logits_2, _ = separate(x, mask)
    student_logits_2 = twin(x)
    (ce(logits_2, y) + 0.5 * ce(student_logits_2, y)).backward()
    assert torch.allclose(logits, logits_2) and torch.allclose(student_logits, student_logits_2, atol=1e-6)
    for (name, a), b in zip(student.named_parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    assert shared.forward_with_student(x, mask, student_pass=False)[2] is None


def test_batch_statistics_mode_normalises_swapped_units_by_the_batch_and_changes_no_teacher_buffer():
    hybrid, teacher, student = make_hybrid(teacher_bn="batch")
    student.eval()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    x = torch.randn(8, 1, 14, 14) * 3 + 1  # far from the statistics the teacher's buffers hold
    batch_mode, _ = hybrid(x, [True, True, True])
    hybrid.teacher_bn = "eval"
    eval_mode, _ = hybrid(x, [True, True, True])
    assert not torch.allclose(batch_mode, eval_mode)
    h = student.stem(x)  # by hand: the teacher's blocks with every BatchNorm on batch statistics
    for stage in teacher.stages:
        for block in stage:
            for m in block.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.forward = (lambda bn: lambda z: torch.nn.functional.batch_norm(
                        z, None, None, bn.weight, bn.bias, True, 0.0, bn.eps))(m)
            h = block(h)
    assert torch.allclose(batch_mode, student.head(h), atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training and all(not m.training for m in teacher.modules())


def test_hybrid_registers_no_teacher_parameters():
    hybrid, teacher, student = make_hybrid()
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in hybrid.parameters()}
    assert {id(p) for p in hybrid.parameters()} == {id(p) for p in student.parameters()}


@pytest.mark.parametrize("mode", list(SWAP_MODES))
@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("p", [0.3, 0.7])
def test_realised_swap_rate_of_every_unit_matches_its_scheduled_probability(mode, profile, p):
    teacher, student = pair()
    teacher.requires_grad_(False).eval()
    hybrid = HybridNetwork(student, pair_units(teacher, student, 2), lambda t: p, profile, mode)  # 6 units
    scheduled = unit_probabilities(p, hybrid.num_units, profile)
    n = 4000
    for _ in range(n):
        hybrid.draw_mask(0.3)
    for unit, (rate, q) in enumerate(zip(hybrid.realised_rates(), scheduled, strict=True)):
        assert abs(rate - q) <= 4 * (q * (1 - q) / n) ** 0.5 + 1e-12, (unit, rate, q)


def test_iakd_wrn_pair_with_adapters_trains_adapters_not_teacher():
    cfg = TrialConfig.from_dict(teacher="wrn_40_2", student="wrn_40_1", method="iakd", swap_p0=1.0)
    torch.manual_seed(0)
    teacher, student = build_model("wrn_40_2", 10, 1), build_model("wrn_40_1", 10, 1)
    method = build_method(cfg, student, teacher)
    params = {id(p) for p in method.trainable_parameters()}
    assert {id(p) for p in method.hybrid.adapters_out.parameters()} <= params
    assert not params & {id(p) for p in teacher.parameters()}
    logits, terms = method.forward_train(torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3]), 0.0)
    sum(terms.values()).backward()
    assert method.hybrid.adapters_out[0][0].weight.grad is not None
