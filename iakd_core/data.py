"""Datasets as in-memory tensors, a seeded train/val split, and batch augmentation on tensors.

* ``load_splits(cfg)`` -> train and val (both carved, seeded, from the official *train* set) — all tuning uses these.
* ``load_test(cfg)`` -> the official test set; only final evaluation calls it (``evaluate_test``).

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package (gunzipped once into
``<data_root>/FashionMNIST/raw/``), from files already there (read by ``read_idx``), or from torchvision's download
when ``download`` is set. CIFAR-10/100 are read from the official python pickles under a staged root
(``read_cifar``; torchvision's public loader downloads them first when allowed).
``synthetic`` is a small generated, learnable set for tests.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import pickle
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .config import TrialConfig

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")


class DataUnavailableError(RuntimeError):
    """The dataset is not on this machine; the message says how to get it."""


@dataclass
class TensorDataset:
    """Normalised float images (N, C, H, W) and int64 labels, already in memory."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DataSplits:
    train: TensorDataset
    val: TensorDataset
    num_classes: int
    in_channels: int
    fill: torch.Tensor  # per-channel value of a black pixel after normalisation (crop padding)
    identity: dict = field(default_factory=dict)  # name, sizes, checksum: goes into manifests


# ---- raw loading -------------------------------------------------------------------------------------------------
def prepare_fashion_mnist(root: Path) -> Path:
    """Make ``root/FashionMNIST/raw`` hold the four idx files, gunzipping Debian's package files if needed."""
    raw = root / "FashionMNIST" / "raw"
    if all((raw / name).exists() for name in FASHION_FILES):
        return raw
    if all((DEBIAN_FASHION_MNIST / f"{name}.gz").exists() for name in FASHION_FILES):
        raw.mkdir(parents=True, exist_ok=True)
        for name in FASHION_FILES:
            if (raw / name).exists():
                continue
            # a temporary file of our own, renamed into place: concurrent preparations never share one
            with gzip.open(DEBIAN_FASHION_MNIST / f"{name}.gz") as src, tempfile.NamedTemporaryFile(
                    dir=raw, prefix=f".{name}.", suffix=".tmp", delete=False) as dst:
                shutil.copyfileobj(src, dst)
            Path(dst.name).replace(raw / name)
    return raw


def read_idx(path: Path) -> torch.Tensor:
    """An idx file of unsigned bytes (the MNIST family's format, as torchvision reads it: two zero bytes, the type
    code 0x08, the number of dimensions, each dimension as a big-endian uint32, then the data) as a uint8 tensor."""
    data = path.read_bytes()
    ndim = data[3] if len(data) >= 4 else 0
    if len(data) < 4 or data[:3] != b"\0\0\x08" or not 1 <= ndim <= 4:
        raise DataUnavailableError(f"{path} is not an idx file of unsigned bytes: delete it and prepare the data "
                                   "again (make data)")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", data[4:header]) if len(data) >= header else ()
    if len(dims) != ndim or len(data) != header + math.prod(dims):
        raise DataUnavailableError(f"{path} holds {len(data)} bytes, which its header does not describe (truncated?):"
                                   " delete it and prepare the data again (make data)")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).view(*dims)


def _missing(name: str, root: Path, hint: str) -> DataUnavailableError:
    return DataUnavailableError(f"{name} not found under {root}: {hint}")


def _load_raw(cfg: TrialConfig, train: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
    """uint8 images (N, C, H, W), int64 labels, number of classes."""
    root = Path(cfg.data_root).expanduser().resolve()
    if cfg.dataset == "synthetic":
        return synthetic_data(train)
    if cfg.dataset == "fashion-mnist":
        raw = prepare_fashion_mnist(root)
        prefix = "train" if train else "t10k"
        images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
        if images.exists() and labels.exists():  # read directly: importing torchvision costs ~1.3 s per process
            return read_idx(images).unsqueeze(1).contiguous(), read_idx(labels).long(), 10
        import torchvision.datasets as tvd

        try:
            ds = tvd.FashionMNIST(str(root), train=train, download=cfg.download)
        except RuntimeError as err:
            raise _missing("Fashion-MNIST", root, "install Debian's dataset-fashion-mnist (apt-get install "
                           "dataset-fashion-mnist), put the idx files in <data_root>/FashionMNIST/raw/, or pass "
                           "--download when online") from err
        return ds.data.unsqueeze(1).contiguous(), ds.targets.long(), 10
    if cfg.dataset in CIFAR_LAYOUT:
        return read_cifar(root, cfg.dataset, train, download=cfg.download)
    raise DataUnavailableError(f"unknown dataset {cfg.dataset!r}")


# dataset -> (folder of the official python tarball, train files, test files, label key, classes)
CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "labels", 10),
    "cifar100": ("cifar-100-python", ("train",), ("test",), "fine_labels", 100),
}


def read_cifar(root: Path, dataset: str, train: bool, download: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """CIFAR-10/100 from the official python pickles under ``root`` (a dict per file: ``data`` N x 3072 uint8 in
    channel-major order, labels under ``labels`` / ``fine_labels``), read directly: any staged copy whose files are
    present is accepted (no md5 check against the tarball's, which a re-packed copy would fail). ``download``
    fetches the tarball through torchvision's public loader first."""
    import numpy as np

    folder, train_files, test_files, key, classes = CIFAR_LAYOUT[dataset]
    paths = [root / folder / name for name in (train_files if train else test_files)]
    if download and not all(p.is_file() for p in paths):
        import torchvision.datasets as tvd

        (tvd.CIFAR10 if dataset == "cifar10" else tvd.CIFAR100)(str(root), train=train, download=True)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise _missing(dataset.upper(), root, f"{folder}/{missing[0]} is absent: put the extracted {folder}/ folder "
                       f"in {root} (from the official tarball), or pass --download when online")
    images: list[np.ndarray] = []
    labels: list[int] = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")  # (the official files were pickled by Python 2)
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(int(y) for y in entry[key])
        except (KeyError, ValueError, TypeError, EOFError, pickle.UnpicklingError) as err:
            raise DataUnavailableError(f"{path} is not a CIFAR pickle ({type(err).__name__}: {err}); extract the "
                                       "official tarball again") from None
    data = torch.from_numpy(np.concatenate(images)).contiguous()
    if len(data) != len(labels):
        raise DataUnavailableError(f"{root / folder} is not a CIFAR pickle set: {len(data)} images but {len(labels)} "
                                   "labels; extract the official tarball again")
    return data, torch.tensor(labels, dtype=torch.long), classes


def synthetic_data(train: bool, per_class: int = 120, classes: int = 4, side: int = 16):
    """A small, learnable, deterministic set: each class a fixed blurred pattern plus noise and a random shift."""
    g = torch.Generator().manual_seed(1234)
    templates = F.avg_pool2d(torch.rand(classes, 1, side, side, generator=g), 3, 1, 1)
    g.manual_seed(1 if train else 2)
    n = per_class * classes if train else per_class * classes // 4
    labels = torch.arange(n) % classes
    shifts = torch.randint(-2, 3, (n, 2), generator=g)
    images = torch.stack([templates[c].roll(tuple(s.tolist()), (1, 2))
                          for c, s in zip(labels.tolist(), shifts, strict=True)])
    images = (images - images.mean()) / images.std() * 0.5 + torch.randn(images.shape, generator=g) * 0.35
    images = ((images.clamp(-2, 2) + 2) / 4 * 255).round().to(torch.uint8)
    return images, labels, classes


def _checksum(images: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256(images.numpy().tobytes())
    h.update(labels.numpy().tobytes())
    return h.hexdigest()[:16]


# ---- splits ------------------------------------------------------------------------------------------------------
def split_indices(n: int, val_size: int, train_size: int | None, seed: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded, disjoint (train, val, pool) indices into the official train set: pool = everything but val, train
    = its first ``train_size`` in the seeded order (so a smaller train set is a subset of a larger one)."""
    if val_size >= n:
        raise DataUnavailableError(f"val_size={val_size} leaves no training images (the train set has {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, pool = perm[:val_size], perm[val_size:]
    train = pool
    if train_size is not None:
        if train_size > len(pool):
            raise DataUnavailableError(f"train_size={train_size} exceeds the {len(pool)} images left after val")
        train = pool[:train_size]
    return train.sort().values, val.sort().values, pool.sort().values


def _to_float(images: torch.Tensor, image_size: int | None) -> torch.Tensor:
    x = images.float().div_(255)
    if image_size is not None and image_size != x.shape[-1]:
        x = F.interpolate(x, size=(image_size, image_size), mode="area" if image_size < x.shape[-1] else "bilinear")
    return x


@lru_cache(maxsize=4)
def _cached_splits(dataset, data_root, download, train_size, val_size, split_seed, image_size) -> DataSplits:
    cfg = TrialConfig.from_dict(dict(dataset=dataset, data_root=data_root, download=download, train_size=train_size,
                                     val_size=val_size, split_seed=split_seed, image_size=image_size))
    images, labels, num_classes = _load_raw(cfg, train=True)
    train_idx, val_idx, pool_idx = split_indices(len(labels), val_size, train_size, split_seed)
    x_train, x_val = _to_float(images[train_idx], image_size), _to_float(images[val_idx], image_size)
    # normalisation from the whole non-val pool: every train_size (a student's, its teacher's) shares it
    x_pool = x_train if len(pool_idx) == len(train_idx) else _to_float(images[pool_idx], image_size)
    mean = x_pool.mean(dim=(0, 2, 3))
    std = x_pool.std(dim=(0, 2, 3)).clamp_min(1e-6)
    x_train, x_val = ((x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1) for x in (x_train, x_val))
    identity = dict(name=dataset, classes=num_classes, official_train=len(labels), train=len(train_idx),
                    val=len(val_idx),
                    split_seed=split_seed, image_size=list(x_train.shape[1:]), checksum=_checksum(images, labels),
                    mean=[round(v, 6) for v in mean.tolist()], std=[round(v, 6) for v in std.tolist()])
    return DataSplits(TensorDataset(x_train.contiguous(), labels[train_idx]),
                      TensorDataset(x_val.contiguous(), labels[val_idx]),
                      num_classes, x_train.shape[1], -mean / std, identity)


def load_splits(cfg: TrialConfig) -> DataSplits:
    """Train and val splits (cached per process: trials in one worker share them)."""
    return _cached_splits(cfg.dataset, cfg.data_root, cfg.download, cfg.train_size, cfg.val_size, cfg.split_seed,
                          cfg.image_size)


def load_test(cfg: TrialConfig, splits: DataSplits) -> TensorDataset:
    """The official test set, normalised with the train split's statistics. Final evaluation only."""
    images, labels, _ = _load_raw(cfg, train=False)
    mean, std = splits.identity["mean"], splits.identity["std"]
    x = _to_float(images, cfg.image_size)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return TensorDataset(x.contiguous(), labels)


# ---- batches -----------------------------------------------------------------------------------------------------
class Batch(NamedTuple):
    """One training batch: augmented images, labels, and which image (``image``: its index in the dataset) in
    which of its ``augmentation_variants`` forms (``variant``) each row is, so anything computed per form can be
    looked up."""

    images: torch.Tensor
    labels: torch.Tensor
    image: torch.Tensor  # (not "index": a NamedTuple field must not hide tuple.index)
    variant: torch.Tensor


def augmentation_variants(padding: int, flip: bool) -> int:
    """How many forms an image can take under crop padding ``padding`` and flips: (2p + 1)^2 offsets x 2."""
    return (2 * padding + 1) ** 2 * (2 if flip else 1)


def crop_at(x: torch.Tensor, padding: int, fill: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor) -> torch.Tensor:
    """The window at offsets (``oy``, ``ox``) (shape (b, 1) each, 0..2p) of the ``padding``-padded batch (padded
    with ``fill`` per channel), back to the batch's size."""
    b, c, h, w = x.shape
    padded = fill.view(1, c, 1, 1).expand(b, c, h + 2 * padding, w + 2 * padding).clone()
    padded[:, :, padding : padding + h, padding : padding + w] = x
    rows = (oy + torch.arange(h)).view(b, 1, h, 1).expand(b, c, h, w + 2 * padding)
    cols = (ox + torch.arange(w)).view(b, 1, 1, w).expand(b, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def flip_where(x: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    return torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x)


def augment(x: torch.Tensor, padding: int, flip: bool, fill: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop (when ``padding``) then random horizontal flip (when ``flip``), per sample; returns the batch
    and each row's variant number (see :func:`variant_images`)."""
    b = x.shape[0]
    oy = ox = torch.zeros(b, 1, dtype=torch.long)
    flipped = torch.zeros(b, dtype=torch.bool)
    if padding:
        oy, ox = torch.randint(0, 2 * padding + 1, (2, b, 1), generator=generator)
        x = crop_at(x, padding, fill, oy, ox)
    if flip:
        flipped = torch.rand(b, generator=generator) < 0.5
        x = flip_where(x, flipped)
    variant = (oy.view(-1) * (2 * padding + 1) + ox.view(-1)) * (2 if flip else 1) + flipped.long()
    return x, variant


def variant_images(x: torch.Tensor, padding: int, flip: bool, fill: torch.Tensor, variant: int) -> torch.Tensor:
    """Every image of ``x`` in form number ``variant`` of :func:`augment` (offsets and flip fixed)."""
    flips = 2 if flip else 1
    offset, flipped = divmod(variant, flips)
    oy, ox = divmod(offset, 2 * padding + 1)
    b = x.shape[0]
    if padding:
        x = crop_at(x, padding, fill, torch.full((b, 1), oy), torch.full((b, 1), ox))
    return flip_where(x, torch.full((b,), bool(flipped))) if flip else x


def train_batches(data: TensorDataset, batch_size: int, generator: torch.Generator, padding: int, flip: bool,
                  fill: torch.Tensor):
    """One epoch of shuffled, augmented :class:`Batch` es; the last partial batch is dropped if tiny."""
    order = torch.randperm(len(data), generator=generator)
    for start, end in batch_bounds(len(order), batch_size):
        idx = order[start:end]
        x, variant = augment(data.images[idx], padding, flip, fill, generator)
        yield Batch(x, data.labels[idx], idx, variant)


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) of each batch of an epoch over ``n`` images; a trailing 1-image batch is dropped (it breaks
    BatchNorm) unless it is the only one."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    return bounds[:-1] if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 2 else bounds


def steps_per_epoch(n: int, batch_size: int) -> int:
    return len(batch_bounds(n, batch_size))
