"""KD targets from a table: the frozen teacher's logits for every training image in every augmented form it can
take, computed once and cached on disk beside the teacher.

The teacher is frozen and in eval mode, and with crop padding p and flips an image reaches it in one of
(2p + 1)^2 x 2 forms (``data.augment`` numbers them), so its logits for each form never change. A KD trial on
the laptop preset asks for them 15 epochs x 8000 images = 120 000 times; the table holds all 8000 x 50 = 400 000
once (8 MB in bf16), so a sweep or an ablation with dozens of KD trials builds it once (in its driver, on all
cores) and every trial then looks its targets up instead of running the teacher (bench/bench_kd_targets.py).

Same values, not an approximation: the table is computed by the network that computes them online
(``targets_network``), in the same precision, from the same pixels (``data.variant_images``). Where the
teacher's kernels give each image the same result whatever batch it is in (measured on this machine for bf16 and
fp32 in batches of 2 to 1024; a single image took another kernel), training with the table is bit-identical to
training without it (tests/test_targets.py). To stay clear of the kernels PyTorch picks for small CPU batches,
table chunks and looked-up batches have at least ``MIN_TABLE_BATCH`` (16) images; smaller training batches
run the teacher online.

:class:`TeacherTargets` is the one answer to "where do the teacher's outputs come from" during training (the
teacher online, a contiguous copy of it, or the table): ``teacher_targets`` builds it in one place, the methods ask
it for logits or features, and neither they nor the training loop know of tables, layouts or batch sizes.

Used only on CPU (GPU runs keep the teacher online), for KD logits alone (a feature term needs the
teacher's features, so the teacher runs anyway), and when the table is at most ``MAX_TABLE_BYTES``. ``run_trial``
only reads a table; ``build_table`` (the drivers) writes one; ``kd_targets="online"`` turns it off.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from .config import TrialConfig, stable_hash
from .data import DataSplits, augmentation_variants, variant_images
from .files import save_torch, write_json
from .models import Backbone
from .teacher import TeacherCacheError
from .train import autocast, cpu_has_native_bf16, place, resolve_precision

MAX_TABLE_BYTES = 256 * 2**20
# Batches smaller than this compute KD targets online even when a table is given: PyTorch may pick other
# convolution kernels for small CPU batches, so a lookup is only promised equal for batches like the table's chunks.
MIN_TABLE_BATCH = 16
# Part of every table's key: raise it when anything that shapes the values changes (the models' forward, the
# augmentation and its form numbering, normalisation), so no earlier table is read.
TABLE_VERSION = 1
_LOADED: dict[Path, torch.Tensor] = {}  # per process: trials in one (reused) Ray worker read a table once


def table_bytes(cfg: TrialConfig, data: DataSplits) -> int:
    """Size of ``cfg``'s table: images x forms x classes, 2 bytes (bf16) or 4 (fp32) per logit."""
    precision = resolve_precision(cfg.precision, torch.device("cpu"))
    return (len(data.train) * augmentation_variants(cfg.crop_padding, cfg.flip) * data.num_classes
            * (2 if precision == "bf16" else 4))


class TeacherTargets:
    """The frozen teacher's outputs for a training batch: KD logits (looked up in ``table`` when there is one and
    the batch has at least ``MIN_TABLE_BATCH`` images, else computed) and stage features (always computed).
    ``network`` computes them: the teacher itself, or a copy of it in another memory layout (then its inputs are
    made contiguous: ``targets_network``). Kept out of any module tree, frozen and in eval mode."""

    def __init__(self, network: Backbone, contiguous: bool = False, table: torch.Tensor | None = None) -> None:
        network.requires_grad_(False)
        network.eval()
        self.network, self.contiguous, self.table = network, contiguous, table

    @property
    def source(self) -> str:
        """Where KD logits come from: "table" or "online"."""
        return "table" if self.table is not None else "online"

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teacher's logits and every stage output for the batch ``x``."""
        return self.network.features(x.contiguous() if self.contiguous else x)

    @torch.no_grad()
    def logits(self, x: torch.Tensor, image: torch.Tensor | None = None,
               variant: torch.Tensor | None = None) -> torch.Tensor:
        """The teacher's logits for the batch ``x``, whose rows are training images ``image`` in augmented forms
        ``variant`` (``data.Batch``; without them, or for a small batch, computed online)."""
        if self.table is not None and image is not None and variant is not None and len(image) >= MIN_TABLE_BATCH:
            return self.table[image, variant].to(x.device)
        return self.network(x.contiguous() if self.contiguous else x)


def targets_network(teacher: Backbone, cfg: TrialConfig, device: torch.device) -> Backbone:
    """The network that computes whole-teacher targets (KD logits, feature hints, the table) for a teacher placed
    as ``run_trial`` places it. On CPU a no_grad forward of contiguous inputs through a contiguous copy of the
    channels-last teacher measured faster than the channels-last teacher on channels-last inputs
    (bench/README.md, "Precision and layout per path"), while the student's steps and the hybrid's teacher units
    are faster in channels-last: there, the copy computes the targets. Elsewhere, the teacher."""
    if cfg.channels_last and device.type == "cpu":
        return place(copy.deepcopy(teacher), device, channels_last=False)
    return teacher


def teacher_targets(cfg: TrialConfig, teacher: Backbone | None, teacher_meta: dict[str, Any], data: DataSplits,
                    device: torch.device) -> TeacherTargets | None:
    """How a run of ``cfg`` gets its teacher outputs (None: its losses need none): the table a driver built, where
    ``table_applies`` and only KD logits are needed; the teacher (or its contiguous copy) otherwise."""
    table = (load_table(cfg, teacher_meta, data) if teacher is not None and needs_kd_logits_only(cfg)
             and table_applies(cfg, data, device) else None)
    return make_targets(cfg, teacher, device, table)


def make_targets(cfg: TrialConfig, teacher: Backbone | None, device: torch.device,
                 table: torch.Tensor | None = None) -> TeacherTargets | None:
    """``TeacherTargets`` for ``cfg``'s losses from a teacher placed as ``run_trial`` places it, looking KD logits up
    in ``table`` when given and only KD logits are needed (None: the losses need no teacher outputs)."""
    if teacher is None or not (cfg.kd_weight > 0 or cfg.feature_kind != "none"):
        return None
    network = targets_network(teacher, cfg, device)
    return TeacherTargets(network, contiguous=network is not teacher,
                          table=table if needs_kd_logits_only(cfg) else None)


def prepare_kd_targets(cfg: TrialConfig, teacher: Backbone, teacher_meta: dict[str, Any], data: DataSplits,
                       device: torch.device, progress=None) -> dict[str, Any] | None:
    """Build (or find) the table of KD targets that ``run_trial`` reads for ``cfg``'s teacher and data, where a
    run of ``cfg`` on ``device`` uses one (``table_applies``): a sweep's or ablation's driver calls this once
    before its trials. Returns facts for a manifest, or None."""
    if not table_applies(cfg, data, device):
        return None
    network = targets_network(place(teacher, device, cfg.channels_last), cfg, device)
    return build_table(cfg, network, teacher_meta, data, device, progress)[1]


def table_applies(cfg: TrialConfig, data: DataSplits, device: torch.device) -> bool:
    """Whether a run of ``cfg`` on ``device`` takes its KD targets from a table (when one has been built)."""
    return (cfg.kd_targets == "auto" and device.type == "cpu" and cfg.uses_teacher
            and table_bytes(cfg, data) <= MAX_TABLE_BYTES)


def needs_kd_logits_only(cfg: TrialConfig) -> bool:
    """Whether the teacher runs during ``cfg``'s training only for KD logits (no feature term)."""
    return cfg.uses_teacher and cfg.kd_weight > 0 and cfg.feature_kind == "none"


def table_path(cfg: TrialConfig, teacher_meta: dict[str, Any], data: DataSplits) -> Path:
    """The table's file: named by everything that determines its values."""
    precision = resolve_precision(cfg.precision, torch.device("cpu"))
    key = stable_hash({"version": TABLE_VERSION, "teacher_sha256": teacher_meta["sha256"], "dataset": data.identity,
                       "crop_padding": cfg.crop_padding, "flip": cfg.flip, "precision": precision,
                       "channels_last": cfg.channels_last, "torch": torch.__version__,
                       "native_bf16": cpu_has_native_bf16(), "cpu": torch.backends.cpu.get_cpu_capability(),
                       "onednn_isa": os.environ.get("ONEDNN_MAX_CPU_ISA")})
    return Path(cfg.teacher_cache).expanduser().resolve() / f"{cfg.teacher}-{cfg.dataset}-kdtargets-{key}.pt"


@torch.no_grad()
def compute_table(network: torch.nn.Module, data: DataSplits, cfg: TrialConfig, device: torch.device,
                  progress=None) -> torch.Tensor:
    """(images, forms, classes) logits of ``network`` (put in eval mode) on every training image in every form."""
    network.eval()
    images = data.train.images
    forms = augmentation_variants(cfg.crop_padding, cfg.flip)
    table = None
    started = time.perf_counter()
    step = max(cfg.eval_batch_size, MIN_TABLE_BATCH)
    starts = list(range(0, len(images), step))
    if len(starts) > 1 and len(images) - starts[-1] < MIN_TABLE_BATCH:
        starts.pop()  # the short tail joins the chunk before it: every chunk has >= MIN_TABLE_BATCH images
    bounds = list(zip(starts, [*starts[1:], len(images)], strict=True))
    for v in range(forms):
        for start, end in bounds:
            x = variant_images(images[start:end], cfg.crop_padding, cfg.flip, data.fill, v).to(device)
            with autocast(device, cfg.precision):
                logits = network(x)
            if table is None:
                table = torch.empty(len(images), forms, logits.shape[1], dtype=logits.dtype)
            table[start:end, v] = logits.cpu()
        if progress is not None:
            progress(v + 1, forms, time.perf_counter() - started)
    if table is None:
        raise ValueError("no training images to compute KD targets for")
    return table


def load_table(cfg: TrialConfig, teacher_meta: dict[str, Any], data: DataSplits) -> torch.Tensor | None:
    """The built table of ``cfg``'s teacher and data, or None when there is none (or it does not fit the data)."""
    path = table_path(cfg, teacher_meta, data)
    if path in _LOADED:
        return _LOADED[path]
    if not path.exists():
        return None
    try:
        table = torch.load(path, map_location="cpu", weights_only=True)["logits"]
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise TeacherCacheError(f"KD target table {path} does not load ({type(err).__name__}); delete it and the "
                                "run's driver builds it again") from None
    expected = (len(data.train), augmentation_variants(cfg.crop_padding, cfg.flip), data.num_classes)
    if tuple(table.shape) != expected:
        return None
    _LOADED[path] = table
    return table


def build_table(cfg: TrialConfig, network: torch.nn.Module, teacher_meta: dict[str, Any], data: DataSplits,
                device: torch.device, progress=None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Load or compute-and-save (atomically, one process at a time) the table; returns it and facts for a
    manifest (file, shape, whether it was cached, seconds)."""
    path = table_path(cfg, teacher_meta, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with FileLock(str(path) + ".lock"):
        table = load_table(cfg, teacher_meta, data)
        cached = table is not None
        if table is None:
            table = compute_table(network, data, cfg, device, progress)
            save_torch({"logits": table}, path)
            write_json(path.with_suffix(".json"),
                       {"teacher_sha256": teacher_meta["sha256"], "dataset": data.identity, "shape": list(table.shape),
                        "dtype": str(table.dtype), "crop_padding": cfg.crop_padding, "flip": cfg.flip,
                        "seconds": round(time.perf_counter() - started, 2)})
            _LOADED[path] = table
    return table, {"file": path.name, "shape": list(table.shape), "cached": cached,
                   "seconds": round(time.perf_counter() - started, 2)}
