import math

import pytest
import torch

from iakd_core.schedules import SCHEDULES, exactly_k_mask, mean_probability, schedule_value, unit_probabilities

PARAMS = dict(p0=0.8, p1=0.2, step_at=0.5, ramp_k=1.2)
EXPECTED = {  # (t=0, t=1/2, t=1)
    "constant": (0.8, 0.8, 0.8),
    "linear": (0.8, 0.5, 0.2),
    "cosine": (0.8, 0.5, 0.2),
    "step": (0.8, 0.2, 0.2),
    "theseus": (0.8, 0.2, 0.0),  # clip(0.8 - 1.2) = 0
}


def test_every_registered_schedule_is_pinned():
    assert set(SCHEDULES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_schedule_values_at_start_middle_end(name):
    got = [schedule_value(name, t, **PARAMS) for t in (0.0, 0.5, 1.0)]
    assert got == pytest.approx(EXPECTED[name])


def test_cosine_is_not_linear_between_the_ends():
    assert schedule_value("cosine", 0.25, **PARAMS) == pytest.approx(0.2 + 0.6 * (1 + math.cos(math.pi / 4)) / 2)


def test_values_are_clipped_to_unit_interval():
    assert schedule_value("linear", 1.0, p0=0.5, p1=0.0) == 0.0
    assert schedule_value("theseus", 0.0, p0=1.0, ramp_k=5) == 1.0
    assert schedule_value("theseus", 0.9, p0=1.0, ramp_k=5) == 0.0


def test_mean_probability_of_linear_is_midpoint():
    assert mean_probability("linear", p0=0.8, p1=0.2) == pytest.approx(0.5)
    assert mean_probability("step", p0=1.0, p1=0.0, step_at=0.25) == pytest.approx(0.25, abs=2e-3)


def test_profiles_keep_mean_and_order():
    assert unit_probabilities(0.5, 3, "uniform") == [0.5] * 3
    shallow = unit_probabilities(0.4, 4, "shallow_first")
    assert shallow == sorted(shallow, reverse=True) and sum(shallow) / 4 == pytest.approx(0.4)
    deep = unit_probabilities(0.4, 4, "deep_first")
    assert deep == shallow[::-1]


def test_exactly_k_swaps_expected_number_and_respects_zero_probability():
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.5, 0.5, 0.5, 0.0])
    counts = torch.stack([exactly_k_mask(probs, g) for _ in range(3000)])
    per_batch = counts.sum(1)
    assert set(per_batch.tolist()) == {1, 2}  # E[k] = 1.5: one or two units, never another number
    assert per_batch.float().mean().item() == pytest.approx(1.5, abs=0.06)
    assert counts[:, 3].sum() == 0
