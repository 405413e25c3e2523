import math

import pytest
import torch

from iakd_core.losses import at_loss, attention_map, fitnet_loss, kd_loss


def test_kd_loss_against_hand_computed_value():
    s = torch.tensor([[1.0, 2.0, 0.0]])
    t = torch.tensor([[0.0, 3.0, 1.0]])
    T = 2.0
    ps = [math.exp(v / T) for v in (1.0, 2.0, 0.0)]
    pt = [math.exp(v / T) for v in (0.0, 3.0, 1.0)]
    ps = [v / sum(ps) for v in ps]
    pt = [v / sum(pt) for v in pt]
    expected = T * T * sum(b * math.log(b / a) for a, b in zip(ps, pt, strict=True))
    assert kd_loss(s, t, T).item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_is_zero_for_equal_logits_and_averaged_over_batch():
    x = torch.randn(5, 10)
    assert kd_loss(x, x, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    s, t = torch.randn(1, 10), torch.randn(1, 10)
    assert kd_loss(s.repeat(3, 1), t.repeat(3, 1), 4.0).item() == pytest.approx(kd_loss(s, t, 4.0).item(), rel=1e-6)


def test_fitnet_loss_is_mean_squared_error():
    a, b = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 2.0], [5.0, 4.0]])
    assert fitnet_loss(a, b).item() == pytest.approx((1 + 0 + 4 + 0) / 4)


def test_attention_transfer_against_hand_computed_value():
    f_s = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])  # (1, 2 channels, 1, 2): map mean(f^2) = [1, 0]
    f_t = torch.tensor([[[[0.0, 2.0]]]])  # map [0, 4]
    assert attention_map(f_s).tolist() == [[1.0, 0.0]] and attention_map(f_t).tolist() == [[0.0, 1.0]]
    # ((1-0)^2 + (0-1)^2) / 2 = 1 per stage; summed over two stage pairs
    assert at_loss([f_s, f_s], [f_t, f_t]).item() == pytest.approx(2.0)
