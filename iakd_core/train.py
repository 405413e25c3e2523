"""The training loop: SGD, multistep/cosine LR, per-epoch validation and metrics, an epoch callback.

``fit`` knows nothing of sweeps: it calls ``report(metrics)`` after every epoch and returns the history. A sweep
stops a trial by not letting ``report`` return (Ray does that), so no early-stopping logic lives here.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from .config import DIAGNOSTIC_SEED_OFFSET, RECALIBRATION_SEED_OFFSET, TrialConfig
from .data import DataSplits, TensorDataset, steps_per_epoch, train_batches
from .methods import IAKD, Method
from .models import batch_norms

Report = Callable[[dict[str, Any]], None]
M = TypeVar("M", bound=nn.Module)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} but CUDA is not available here; use device=auto or cpu")
    return device


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX). Measured (bench/bench_precision.py): on
    an AVX512-BF16 EPYC bf16 autocast is 1.3-1.6x faster than fp32; on an AVX2-only EPYC it is emulated and
    ~8-12x slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run really uses: ``fp32`` or ``bf16`` (``auto`` -> bf16 where the hardware has it)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """bf16 autocast on ``device`` when ``precision`` resolves to bf16 (no loss scaling needed), else fp32."""
    if resolve_precision(precision, device) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def place(module: M, device: torch.device, channels_last: bool) -> M:
    """Move ``module`` to ``device``, in channels-last memory format when asked (its inputs follow: ``_prepare``)."""
    module.to(device)  # (in place: Module.to moves the module's own tensors and returns it)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    return module


def _prepare(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorDataset, cfg: TrialConfig, device: torch.device) -> dict[str, float]:
    """Top-1 accuracy (%) and mean CE of ``model`` alone in eval mode; restores the previous mode."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(data), cfg.eval_batch_size):
        x = _prepare(data.images[start : start + cfg.eval_batch_size], device, cfg.channels_last)
        y = data.labels[start : start + cfg.eval_batch_size].to(device)
        with autocast(device, cfg.precision):
            logits = model(x).float()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return {"acc": 100.0 * correct / len(data), "loss": loss_sum / len(data)}


class _FixedMask(nn.Module):
    """The hybrid with one fixed swap mask, as a plain model (for ``evaluate``)."""

    def __init__(self, hybrid: nn.Module, mask: list[bool]) -> None:
        super().__init__()
        self.hybrid, self.mask = hybrid, mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hybrid(x, self.mask)[0]


def unit_compatibility(method: IAKD, data: TensorDataset, cfg: TrialConfig, device: torch.device
                       ) -> dict[str, float]:
    """Teacher-unit compatibility on the first ``cfg.compat_size`` validation images: accuracy (%) of the student
    alone, the teacher alone and, for each unit i, the hybrid with exactly unit i swapped in (``compat_u{i}``):
    how well each teacher unit accepts the student's features at this point of training. Eval mode throughout
    (the student's running statistics; the swapped unit's BatchNorm as ``cfg.teacher_bn`` says)."""
    n = min(cfg.compat_size, len(data))
    subset = TensorDataset(data.images[:n], data.labels[:n])
    hybrid, teacher = method.hybrid, method.teacher
    assert teacher is not None  # (IAKD is built with one)
    out = {"compat_student": evaluate(method.student, subset, cfg, device)["acc"],
           "compat_teacher": evaluate(teacher, subset, cfg, device)["acc"]}
    for i in range(hybrid.num_units):
        swapped = _FixedMask(hybrid, [j == i for j in range(hybrid.num_units)]).train(method.student.training)
        out[f"compat_u{i}"] = evaluate(swapped, subset, cfg, device)["acc"]
    return out


# Student-only batches the diagnostic recalibrates a copy of the student on (the searched BN-recalibration setting).
DIAGNOSTIC_RECALIBRATION_BATCHES = 32


def recalibrated_accuracy(student: nn.Module, data: DataSplits, cfg: TrialConfig, device: torch.device) -> float:
    """Validation accuracy (%) of a copy of ``student`` whose BatchNorm statistics were recomputed on
    ``DIAGNOSTIC_RECALIBRATION_BATCHES`` student-only training batches (always the same ones for a seed); beside
    ``val_acc`` (the student's running statistics) it shows how far those statistics are from the student's own.
    Training is untouched: the copy is thrown away and the batches come from a generator of their own."""
    copy_ = copy.deepcopy(student)
    generator = torch.Generator().manual_seed(cfg.seed + DIAGNOSTIC_SEED_OFFSET)
    recalibrate_bn(copy_, data.train, DIAGNOSTIC_RECALIBRATION_BATCHES, cfg, device, generator)
    return evaluate(copy_, data.val, cfg, device)["acc"]


def compatibility_diagnostic(method: IAKD, data: DataSplits, epoch: int, device: torch.device) -> dict[str, float]:
    """IAKD's per-epoch diagnostic (``IAKD.epoch_diagnostics``), at ``cfg.compat_epochs`` and the last epoch:
    teacher-unit compatibility (``unit_compatibility``), the recalibrated student's accuracy (``val_acc_recal``)
    and its cost (``compat_seconds``); nothing at other epochs or with ``compat_size`` 0."""
    cfg = method.cfg
    if cfg.compat_size <= 0 or not (epoch in cfg.compat_epochs or epoch == cfg.epochs):
        return {}
    start = time.perf_counter()
    compat = unit_compatibility(method, data.val, cfg, device)
    compat["val_acc_recal"] = recalibrated_accuracy(method.student, data, cfg, device)
    compat["compat_seconds"] = time.perf_counter() - start
    return compat


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: TensorDataset, batches: int, cfg: TrialConfig, device: torch.device,
                   generator: torch.Generator) -> None:
    """Recompute ``model``'s BatchNorm running statistics from scratch (cumulative average) on ``batches``
    student-only training batches. For IAKD: during training a student unit's statistics also accumulate
    inputs produced by swapped-in teacher units, which the student alone never produces at evaluation."""
    norms = batch_norms(model)
    if not norms or batches <= 0:
        return
    was_training = model.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    order = torch.randperm(len(data), generator=generator)
    for k in range(min(batches, -(-len(order) // cfg.batch_size))):
        idx = order[k * cfg.batch_size : (k + 1) * cfg.batch_size]
        with autocast(device, cfg.precision):
            model(_prepare(data.images[idx], device, cfg.channels_last))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)


def make_optimizer(method: Method, cfg: TrialConfig, total_epochs: int):
    opt = torch.optim.SGD(method.trainable_parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, nesterov=cfg.nesterov and cfg.momentum > 0)
    sched: torch.optim.lr_scheduler.LRScheduler
    if cfg.lr_schedule == "multistep":
        milestones = sorted({max(1, round(m * total_epochs)) for m in cfg.lr_milestones})
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, cfg.lr_gamma)
    elif cfg.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total_epochs)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    images: int = 0
    best_state: dict[str, torch.Tensor] | None = None  # the student's weights at the best epoch (keep_best only)

    @property
    def best(self) -> dict[str, Any]:
        return max(self.history, key=lambda m: m["val_acc"])


def fit(method: Method, data: DataSplits, cfg: TrialConfig, device: torch.device,
        report: Report | None = None, keep_best: bool = False) -> FitResult:
    """Train ``method`` for ``cfg.epochs`` epochs; after each, validate the student alone and ``report``.
    ``keep_best``: also keep a CPU copy of the student's weights at its best validation epoch. Where the teacher's
    outputs come from is the method's (``Method.targets``); this loop only hands each step its batch."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt, sched = make_optimizer(method, cfg, cfg.epochs)
    steps = steps_per_epoch(len(data.train), cfg.batch_size)
    total_steps = cfg.epochs * steps
    result = FitResult()
    fill = data.fill
    recal_gen = torch.Generator().manual_seed(cfg.seed + RECALIBRATION_SEED_OFFSET)  # not the batch order
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        method.train()
        start = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = 0
        lr = opt.param_groups[0]["lr"]
        for batch in train_batches(data.train, cfg.batch_size, gen, cfg.crop_padding, cfg.flip, fill):
            x, y = _prepare(batch.images, device, cfg.channels_last), batch.labels.to(device, non_blocking=True)
            with autocast(device, cfg.precision):
                logits, terms = method.forward_train(x, y, step / total_steps, batch=batch)
            loss = sum(terms.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0) + v.detach().float() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            step += 1
        sched.step()
        if device.type == "cuda":  # kernels are asynchronous: time the work, not its queueing
            torch.cuda.synchronize(device)
        train_time = time.perf_counter() - start
        losses = {f"loss_{k}": float(v) / seen for k, v in sums.items()}
        total = sum(losses.values())
        if not math.isfinite(total):
            raise NonFiniteLossError(f"non-finite training loss {total} at epoch {epoch}")
        recalibrate_bn(method.student, data.train, cfg.bn_recalibration_batches, cfg, device, recal_gen)
        val = evaluate(method.student, data.val, cfg, device)
        compat = method.epoch_diagnostics(data, epoch, device)  # (IAKD: compatibility_diagnostic)
        metrics = {"epoch": epoch, "loss": total, **losses, "train_acc": 100.0 * int(correct) / seen,
                   "val_acc": val["acc"], "val_loss": val["loss"], "lr": lr, "epoch_seconds": train_time,
                   "eval_seconds": time.perf_counter() - start - train_time,
                   "images_per_second": seen / train_time, **method.epoch_stats(), **compat}
        if keep_best and val["acc"] > max((m["val_acc"] for m in result.history), default=-1.0):
            result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in method.student.state_dict().items()}
        result.history.append(metrics)
        result.train_seconds += time.perf_counter() - start
        result.images += seen
        if report is not None:
            report(metrics)
    return result
