from pathlib import Path

import pytest
import torch

from iakd_core.config import ConfigError, TrialConfig
from iakd_core.data import DataUnavailableError, augment, load_splits, load_test, read_idx, split_indices


def test_unknown_key_and_out_of_range_values_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown config key\\(s\\) \\['swap_prob'\\]"):
        TrialConfig.from_dict(swap_prob=0.3)
    with pytest.raises(ConfigError, match="swap_p0=1.5 is out of range"):
        TrialConfig.from_dict(swap_p0=1.5)
    with pytest.raises(ConfigError, match="method='distill' is not one of"):
        TrialConfig.from_dict(method="distill")
    with pytest.raises(ConfigError, match="epochs='ten' is not a valid int"):
        TrialConfig.from_dict(epochs="ten")
    with pytest.raises(ConfigError, match="needs swap_p1"):
        TrialConfig.from_dict(method="iakd", swap_schedule="linear")
    with pytest.raises(ConfigError, match="method 'student' trains on CE alone"):
        TrialConfig.from_dict(method="student", kd_weight=0.5)


def test_strings_from_the_command_line_are_coerced():
    cfg = TrialConfig.from_dict(epochs="3", lr="0.1", flip="false", lr_milestones="0.5,0.75")
    assert (cfg.epochs, cfg.lr, cfg.flip, cfg.lr_milestones) == (3, 0.1, False, (0.5, 0.75))
    assert TrialConfig.from_dict(lr_milestones="[0.5, 0.75]").lr_milestones == (0.5, 0.75)


def test_split_is_deterministic_and_disjoint():
    a_train, a_val, a_pool = split_indices(1000, 100, 500, seed=3)
    b_train, b_val, _ = split_indices(1000, 100, 500, seed=3)
    assert torch.equal(a_train, b_train) and torch.equal(a_val, b_val)
    assert len(set(a_train.tolist()) & set(a_val.tolist())) == 0
    assert len(a_train) == 500 and len(a_val) == 100
    assert set(a_pool.tolist()) == set(range(1000)) - set(a_val.tolist())
    c_train, _, _ = split_indices(1000, 100, 500, seed=4)
    assert not torch.equal(a_train, c_train)
    bigger, same_val, _ = split_indices(1000, 100, 800, seed=3)  # a teacher's larger train set
    assert set(a_train.tolist()) < set(bigger.tolist()) and torch.equal(same_val, a_val)


def test_fashion_mnist_loads_from_the_debian_package(tmp_path):
    cfg = TrialConfig.from_dict(dataset="fashion-mnist", data_root=str(tmp_path), train_size=100, val_size=50,
                                image_size=14)
    splits = load_splits(cfg)
    assert splits.train.images.shape == (100, 1, 14, 14) and len(splits.val) == 50
    assert splits.num_classes == 10 and splits.identity["official_train"] == 60000
    # normalised with the statistics of the whole non-val pool, so any train_size gets the same normalisation
    larger = load_splits(cfg.replace(train_size=400))
    assert splits.identity["mean"] == larger.identity["mean"] and splits.identity["std"] == larger.identity["std"]
    assert torch.equal(splits.val.images, larger.val.images)
    assert abs(splits.train.images.mean().item()) < 0.2
    assert len(load_test(cfg, splits)) == 10000


def test_the_idx_reader_reads_what_torchvision_reads_and_refuses_a_damaged_file(tmp_path):
    import torchvision.datasets as tvd

    root = Path(__file__).resolve().parent.parent / "data"
    load_splits(TrialConfig.from_dict(dataset="fashion-mnist", data_root=str(root), train_size=10, val_size=10))
    for train, prefix in ((True, "train"), (False, "t10k")):
        theirs = tvd.FashionMNIST(str(root), train=train)
        raw = root / "FashionMNIST" / "raw"
        assert torch.equal(read_idx(raw / f"{prefix}-images-idx3-ubyte"), theirs.data)
        assert torch.equal(read_idx(raw / f"{prefix}-labels-idx1-ubyte").long(), theirs.targets)
    whole = (root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes()
    for name, damaged in (("truncated", whole[:-1]), ("short", whole[:6]), ("float", whole[:2] + b"\x0d" + whole[3:])):
        (tmp_path / name).write_bytes(damaged)
        with pytest.raises(DataUnavailableError, match="delete it and prepare the data again") as err:
            read_idx(tmp_path / name)
        assert "\n" not in str(err.value)


def test_missing_dataset_says_where_to_put_it(tmp_path):
    cfg = TrialConfig.from_dict(dataset="cifar100", data_root=str(tmp_path))
    with pytest.raises(DataUnavailableError, match="cifar-100-python"):
        load_splits(cfg)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(50, 1, 1, 1)
    out, _ = augment(x, 1, False, torch.tensor([-1.0]), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x[0], (1, 1, 1, 1), value=-1.0)
    windows = {tuple(padded[:, i : i + 4, j : j + 4].flatten().tolist()) for i in range(3) for j in range(3)}
    assert all(tuple(o.flatten().tolist()) in windows for o in out)
    assert len({tuple(o.flatten().tolist()) for o in out}) > 3  # offsets vary per sample


@pytest.mark.parametrize("padding,flip", [(2, True), (1, False), (0, True), (0, False)])
def test_each_batch_row_is_its_image_in_the_variant_it_names(padding, flip):
    """A training batch says which image and which augmentation variant each row is: rebuilding every row from
    the dataset with ``variant_images`` gives the same pixels, and the variants cover their whole range."""
    from iakd_core.data import TensorDataset, augmentation_variants, train_batches, variant_images

    data = TensorDataset(torch.randn(300, 2, 6, 6), torch.zeros(300, dtype=torch.long))
    fill = torch.tensor([-1.0, 0.5])
    seen = set()
    for batch in train_batches(data, 64, torch.Generator().manual_seed(3), padding, flip, fill):
        for row, (i, v) in enumerate(zip(batch.image.tolist(), batch.variant.tolist(), strict=True)):
            rebuilt = variant_images(data.images[i : i + 1], padding, flip, fill, v)
            assert torch.equal(rebuilt[0], batch.images[row])
            seen.add(v)
    assert seen == set(range(augmentation_variants(padding, flip)))


def _prepare(root: str) -> str:
    from iakd_core.data import prepare_fashion_mnist

    return str(prepare_fashion_mnist(Path(root)))


def test_concurrent_preparations_of_one_fresh_data_root_all_succeed(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    from iakd_core.data import DEBIAN_FASHION_MNIST, FASHION_FILES

    if not (DEBIAN_FASHION_MNIST / f"{FASHION_FILES[0]}.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    with ProcessPoolExecutor(3) as pool:
        raws = list(pool.map(_prepare, [str(tmp_path)] * 3))
    raw = Path(raws[0])
    assert sorted(p.name for p in raw.iterdir()) == sorted(FASHION_FILES)  # no temporary file left behind
    assert load_splits(TrialConfig.from_dict(data_root=str(tmp_path), train_size=10, val_size=10)).num_classes == 10


@pytest.mark.parametrize("n,batch_size", [(10, 1), (65, 64), (64, 64), (1, 64), (129, 64), (7, 3)])
def test_steps_per_epoch_is_the_number_of_batches_an_epoch_yields(n, batch_size):
    from iakd_core.data import TensorDataset, steps_per_epoch, train_batches

    data = TensorDataset(torch.zeros(n, 1, 4, 4), torch.zeros(n, dtype=torch.long))
    batches = list(train_batches(data, batch_size, torch.Generator().manual_seed(0), 0, False, torch.zeros(1)))
    assert len(batches) == steps_per_epoch(n, batch_size)
    assert all(len(b.labels) >= 2 for b in batches) or batch_size == 1 or n == 1  # no trailing 1-image batch


def test_every_method_literature_value_is_a_valid_config_and_declared_names_are_config_fields():
    import dataclasses

    from iakd_core.config import METHOD_NAMES, TrialConfig
    from iakd_core.methods import HYPERPARAMETERS, METHODS, method_overrides

    assert tuple(METHODS) == METHOD_NAMES
    fields = {f.name for f in dataclasses.fields(TrialConfig)}
    assert set(HYPERPARAMETERS) <= fields
    for method in METHODS:
        cfg = TrialConfig.from_dict(method_overrides(method))
        assert all(getattr(cfg, k) == v for k, v in METHODS[method].literature.items())
    assert TrialConfig.from_dict(method_overrides("kd")).kd_weight == 0.9



def test_the_fields_spelled_out_for_type_checkers_are_exactly_the_generated_ones():
    """TrialConfig generates one field per schedule parameter and method hyperparameter from the registries (one
    entry adds a knob); its ``if TYPE_CHECKING`` block spells the same names and types out for mypy. They agree."""
    import ast
    import inspect

    import iakd_core.config as config

    tree = ast.parse(inspect.getsource(config))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrialConfig")
    block = next(n for n in cls.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    spelled = {n.target.id: ast.unparse(n.annotation) for n in block.body if isinstance(n, ast.AnnAssign)}
    from iakd_core.methods import HYPERPARAMETERS
    from iakd_core.schedules import PARAMS

    generated = [f"swap_{name}" for name in PARAMS] + list(HYPERPARAMETERS)
    assert sorted(spelled) == sorted(generated)
    assert spelled == {name: TrialConfig.__annotations__[name] for name in generated}
