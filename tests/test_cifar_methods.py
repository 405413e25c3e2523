"""Conventional KD comparators (FitNet, AT), the published CIFAR presets, and CIFAR loading."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from iakd_core.config import TrialConfig
from iakd_core.data import load_splits, load_test
from iakd_core.methods import build_method
from iakd_core.models import build_model
from iakd_core.presets import PRESETS, PUBLISHED_PAIRS, preset_config
from iakd_core.trial import run_trial
from iakd_core.units import pair_units, supported_granularities


def write_synthetic_cifar100(root, n_train=160, n_test=40):
    """Small files in the real CIFAR-100 pickle layout (cifar-100-python/{train,test,meta})."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 100).tolist()
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        data[:, :1024] = (np.array(labels)[:, None] * 2).astype(np.uint8)  # red channel encodes the class
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "fine_labels": labels, "coarse_labels": [0] * n}, f)
        written[name] = (data, labels)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class{i}" for i in range(100)],
                     "coarse_label_names": [f"c{i}" for i in range(20)]}, f)
    return written


def test_synthetic_cifar100_round_trip_through_the_real_loader(tmp_path):
    written = write_synthetic_cifar100(tmp_path)
    cfg = TrialConfig.from_dict(dataset="cifar100", data_root=str(tmp_path), val_size=40)
    splits = load_splits(cfg)
    assert splits.num_classes == 100 and splits.in_channels == 3
    assert splits.train.images.shape == (120, 3, 32, 32) and len(splits.val) == 40
    test = load_test(cfg, splits)
    assert len(test) == 40 and test.labels.tolist() == written["test"][1]
    # the red channel still encodes the label after normalisation: undo it and compare
    mean, std = splits.identity["mean"][0], splits.identity["std"][0]
    red = ((test.images[:, 0, 0, 0] * std + mean) * 255).round().long()
    assert red.tolist() == [2 * y for y in written["test"][1]]


def test_cifar10_batches_are_read_in_order_and_a_missing_batch_is_named(tmp_path):
    """CIFAR-10's layout: five training batches and a test batch, labels under "labels"; read in batch order."""
    from iakd_core.data import DataUnavailableError, read_cifar

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = np.full((4, 3072), 10 * i, dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": [i] * 4, "batch_label": name}, f, protocol=2)
    images, labels, classes = read_cifar(tmp_path, "cifar10", train=True)
    assert classes == 10 and images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [k for k in range(5) for _ in range(4)] and images[:, 0, 0, 0].tolist() == [
        10 * k for k in range(5) for _ in range(4)]
    assert read_cifar(tmp_path, "cifar10", train=False)[1].tolist() == [5] * 4
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataUnavailableError, match="cifar-10-batches-py/data_batch_3 is absent"):
        read_cifar(tmp_path, "cifar10", train=True)


def test_a_malformed_cifar_pickle_is_a_clear_error(tmp_path):
    from iakd_core.data import DataUnavailableError

    write_synthetic_cifar100(tmp_path)
    with open(tmp_path / "cifar-100-python" / "train", "wb") as f:
        pickle.dump({"images": [], "labels": []}, f)  # the right file, the wrong layout
    with pytest.raises(DataUnavailableError, match="not a CIFAR pickle"):
        load_splits(TrialConfig.from_dict(dataset="cifar100", data_root=str(tmp_path), val_size=40))


@pytest.mark.parametrize("teacher,student", PUBLISHED_PAIRS)
def test_every_published_pair_builds_and_runs_a_hybrid_step_at_each_granularity(teacher, student):
    preset = PRESETS[f"cifar100-{teacher}-{student}"]
    assert preset["config"]["epochs"] == 240 and preset["config"]["lr_milestones"] == (0.625, 0.75, 0.875)
    torch.manual_seed(0)
    t, s = build_model(teacher, 100, 3), build_model(student, 100, 3)
    granularities = supported_granularities(t, s)
    assert granularities[0] == 1
    assert pair_units(t, s).has_adapters == (student == "wrn_40_1")  # only wrn_40_2 -> wrn_40_1 needs adapters
    for g in granularities:
        cfg = TrialConfig.from_dict(preset_config(f"cifar100-{teacher}-{student}", "iakd"), units_per_stage=g,
                                    swap_p0=1.0)
        method = build_method(cfg, s, t)
        logits, terms = method.forward_train(torch.randn(2, 3, 32, 32), torch.tensor([1, 2]), 0.0)
        sum(terms.values()).backward()
        assert logits.shape == (2, 100)
        assert next(s.stem.parameters()).grad is not None  # gradients reach the student through teacher units
        s.zero_grad(set_to_none=True)


@pytest.mark.parametrize("method,extra", [
    ("student", {}), ("kd", {}), ("fitnet", {}), ("at", {}), ("iakd", {}),
    ("iakd", {"kd_weight": 0.5, "feature_term": "at", "feature_weight": 1000.0}),
])
def test_one_epoch_of_each_method_on_tiny_synthetic_cifar100(tmp_path_factory, method, extra):
    root = tmp_path_factory.getbasetemp() / "cifar"
    if not (root / "cifar-100-python").exists():
        write_synthetic_cifar100(root)
    cfg = preset_config("cifar100-resnet56-resnet20", method, data_root=str(root), teacher="resnet14",
                        student="resnet8", val_size=40, epochs=1, teacher_epochs=1, batch_size=32, precision="fp32",
                        channels_last=False, teacher_cache=str(root / "teachers"), **extra)
    seen = []
    metrics = run_trial(cfg, seen.append)
    assert metrics["epochs"] == 1 and 0 <= metrics["val_acc"] <= 100
    terms = {k for k in seen[0] if k.startswith("loss_")}
    expected = {"student": {"loss_ce"}, "kd": {"loss_ce", "loss_kd"}, "fitnet": {"loss_ce", "loss_fitnet"},
                "at": {"loss_ce", "loss_at"}, "iakd": {"loss_ce"}}[method]
    if extra:
        expected = {"loss_ce", "loss_kd", "loss_at"}
    assert terms == expected


def test_fitnet_regressor_is_trained_and_teacher_is_not():
    cfg = TrialConfig.from_dict(preset_config("cifar100-resnet32x4-resnet8x4", "fitnet"))
    t, s = build_model("resnet32x4", 100, 3), build_model("resnet8x4", 100, 3)
    method = build_method(cfg, s, t)
    params = {id(p) for p in method.trainable_parameters()}
    assert {id(p) for p in method.feature_term.regressor.parameters()} <= params
    assert not params & {id(p) for p in t.parameters()}
    assert cfg.feature_weight == 100.0 and TrialConfig.from_dict(preset_config(
        "cifar100-resnet32x4-resnet8x4", "at")).feature_weight == 1000.0
