"""KD targets from a table (iakd_core.targets): the same values as the teacher online, hence the same training."""

import pytest
import torch

from iakd_core import targets
from iakd_core.config import TrialConfig
from iakd_core.data import load_splits, train_batches
from iakd_core.presets import preset_config
from iakd_core.targets import make_targets, prepare_kd_targets, targets_network
from iakd_core.teacher import TeacherCacheError, get_teacher
from iakd_core.train import _prepare, autocast, place, resolve_precision
from iakd_core.trial import run_trial

CPU = torch.device("cpu")


@pytest.fixture
def kd_cfg(teacher_cache, tmp_path):
    """A smoke KD config whose teacher is shared by the session, with a table folder of its own (a copy of the
    session's teacher files, so this test's table is built here)."""
    import shutil

    cache = tmp_path / "cache"
    cfg = TrialConfig.from_dict(preset_config("smoke", "kd"), teacher_cache=teacher_cache, train_size=256,
                                val_size=128, epochs=2, teacher_epochs=1)
    get_teacher(cfg)
    shutil.copytree(teacher_cache, cache, ignore=shutil.ignore_patterns("*kdtargets*", "*.lock"))
    return cfg.replace(teacher_cache=str(cache))


def build_table(cfg):
    data = load_splits(cfg)
    teacher, meta, _ = get_teacher(cfg, data)
    return data, meta, prepare_kd_targets(cfg, teacher, meta, data, CPU)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_table_row_is_the_teacher_online_on_that_image_in_that_augmented_form(kd_cfg, precision):
    cfg = kd_cfg.replace(precision=precision)
    data, meta, facts = build_table(cfg)
    assert facts["shape"] == [len(data.train), 50, data.num_classes] and not facts["cached"]  # pad 2 + flip: 5*5*2
    table = targets.load_table(cfg, meta, data)
    teacher = place(get_teacher(cfg, data)[0], CPU, cfg.channels_last)  # as run_trial places it
    online_targets = make_targets(cfg, teacher, CPU)  # what a run without the table computes
    assert online_targets is not None and online_targets.source == "online"
    for batch in train_batches(data.train, cfg.batch_size, torch.Generator().manual_seed(5), cfg.crop_padding,
                               cfg.flip, data.fill):
        with autocast(CPU, precision):
            online = online_targets.logits(_prepare(batch.images, CPU, cfg.channels_last))
        looked_up = table[batch.image, batch.variant]
        assert looked_up.dtype == online.dtype
        assert torch.equal(looked_up, online)


def trained(cfg, path):
    """Train ``cfg``; return its final metrics, its per-epoch losses and the saved student's weights."""
    epochs = []
    final = run_trial(cfg, lambda m: epochs.append({k: v for k, v in m.items() if k.startswith("loss")}),
                      student_file=path)
    return final, epochs, torch.load(path, weights_only=True)


@pytest.mark.parametrize("preset,method,extra", [
    ("smoke", "kd", {}),
    ("smoke", "iakd", {"kd_weight": 0.5, "student_ce_weight": 0.3}),
    ("smoke", "kd", {"train_size": 200}),  # last batch of 8 images: below MIN_TABLE_BATCH, computed online
    ("smoke-wrn", "kd", {"precision": "fp32"}),  # 1x1 convolutions in the teacher, fp32 kernels
])
def test_training_with_the_table_is_bit_identical_to_training_with_the_teacher_online(kd_cfg, tmp_path, preset,
                                                                                      method, extra):
    cfg = TrialConfig.from_dict(preset_config(preset, method), **{
        **{k: getattr(kd_cfg, k) for k in ("teacher_cache", "train_size", "val_size", "epochs", "teacher_epochs")},
        **extra})
    online, online_epochs, online_weights = trained(cfg, tmp_path / "online.pt")
    assert online["kd_targets"] == "online"  # no table built yet: the teacher runs
    build_table(cfg)
    looked_up, looked_up_epochs, looked_up_weights = trained(cfg, tmp_path / "table.pt")
    assert looked_up["kd_targets"] == "table"
    if not extra:  # (once is enough) asking for online targets keeps the teacher running despite the table
        assert run_trial(cfg.replace(kd_targets="online", epochs=1))["kd_targets"] == "online"
    assert looked_up_epochs == online_epochs and looked_up["val_acc"] == online["val_acc"]
    assert online_weights.keys() == looked_up_weights.keys()
    assert all(torch.equal(online_weights[k], looked_up_weights[k]) for k in online_weights)


def test_table_chunks_never_fall_below_the_minimum_batch_and_do_not_change_the_values(kd_cfg):
    data = load_splits(kd_cfg)
    teacher = place(get_teacher(kd_cfg, data)[0], CPU, kd_cfg.channels_last)
    network = targets_network(teacher, kd_cfg, CPU)
    whole = targets.compute_table(network, data, kd_cfg.replace(eval_batch_size=1024), CPU)
    chunked = targets.compute_table(network, data, kd_cfg.replace(eval_batch_size=125), CPU)  # 125, 131 (not 6)
    assert torch.equal(whole, chunked)


def test_the_table_key_changes_with_what_determines_the_values(kd_cfg):
    data = load_splits(kd_cfg)
    meta = get_teacher(kd_cfg, data)[1]
    path = targets.table_path(kd_cfg, meta, data)
    other = "fp32" if resolve_precision(kd_cfg.precision, CPU) == "bf16" else "bf16"
    for change in ({"crop_padding": 1}, {"flip": False}, {"precision": other}, {"channels_last": False}):
        assert targets.table_path(kd_cfg.replace(**change), meta, data) != path, change
    assert targets.table_path(kd_cfg, {**meta, "sha256": "0" * 64}, data) != path


def test_the_table_is_built_once_and_found_again(kd_cfg):
    _, _, first = build_table(kd_cfg)
    targets._LOADED.clear()  # another process
    _, _, again = build_table(kd_cfg)
    assert not first["cached"] and again["cached"] and again["file"] == first["file"]


def test_where_the_table_does_not_apply(kd_cfg, monkeypatch):
    data = load_splits(kd_cfg)
    assert targets.table_applies(kd_cfg, data, CPU)
    assert not targets.table_applies(kd_cfg.replace(kd_targets="online"), data, CPU)
    assert not targets.table_applies(kd_cfg, data, torch.device("cuda"))
    assert not targets.needs_kd_logits_only(TrialConfig.from_dict(preset_config("smoke", "fitnet"), kd_weight=0.5))
    assert not targets.needs_kd_logits_only(TrialConfig.from_dict(preset_config("smoke", "student")))
    monkeypatch.setattr(targets, "MAX_TABLE_BYTES", targets.table_bytes(kd_cfg, data) - 1)
    assert not targets.table_applies(kd_cfg, data, CPU)
    teacher, meta, _ = get_teacher(kd_cfg, data)
    assert prepare_kd_targets(kd_cfg, teacher, meta, data, CPU) is None


def test_a_corrupt_table_is_a_one_line_error_naming_the_file(kd_cfg):
    data, meta, facts = build_table(kd_cfg)
    path = targets.table_path(kd_cfg, meta, data)
    path.write_bytes(b"not a table")
    targets._LOADED.clear()
    with pytest.raises(TeacherCacheError, match=f"{path.name}.*delete it"):
        run_trial(kd_cfg)
