import pytest
import torch

from iakd_core.models import MODELS, batch_norms, build_model


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# CIFAR-100 parameter counts of the standard (RepDistiller/CRD) models: resnet20 exactly, others to 0.01 M
@pytest.mark.parametrize("name,expected", [
    ("resnet20", 278_324), ("resnet56", 0.86e6), ("resnet110", 1.74e6), ("resnet32x4", 7.43e6),
    ("resnet8x4", 1.23e6), ("wrn_40_2", 2.26e6), ("wrn_16_2", 0.70e6), ("wrn_40_1", 0.57e6),
])
def test_parameter_counts_match_standard_models(name, expected):
    count = n_params(build_model(name, 100, 3))
    if isinstance(expected, int):
        assert count == expected
    else:
        assert abs(count - expected) < 0.006e6, count


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_shares_the_skeleton_and_runs(name):
    model = build_model(name, num_classes=7, in_channels=1)
    assert len(model.stages) == 3
    out = model(torch.randn(2, 1, 16, 16))
    assert out.shape == (2, 7)
    logits, feats = model.features(torch.randn(2, 1, 16, 16))
    assert [f.shape[1] for f in feats] == model.stage_widths
    stats = [m for m in model.modules() if hasattr(m, "running_mean")]  # every layer with BatchNorm statistics
    assert stats and [id(m) for m in batch_norms(model)] == [id(m) for m in stats]  # found by the public types


def test_blocks_per_stage_follow_depth():
    assert build_model("resnet56", 10).blocks_per_stage == [9, 9, 9]
    assert build_model("wrn_40_2", 10).blocks_per_stage == [6, 6, 6]
    assert build_model("resnet8x4", 10).stage_widths == [64, 128, 256]


def test_unknown_or_invalid_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet21", 10)
    with pytest.raises(ValueError, match="6n\\+4"):
        build_model("wrn_17_2", 10)
