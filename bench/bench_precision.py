#!/usr/bin/env python
"""Precision and memory layout per path: img/s of every training step and inference path in fp32,
channels-last, bf16 autocast and both, measured in one run; plus P3's physical-limit figure.

    python bench/bench_precision.py [--preset laptop] [--images 2048] [--repeats 3] [--threads 1]

Paths (all through the core's own functions, on random tensors of the preset's shape):
  train/<method>   ``iakd_core.train.fit`` for one epoch (augmentation off, validation excluded), every method
  teacher forward  ``evaluate`` of the preset's teacher (no_grad, eval mode)
  eval             ``evaluate`` of the student
  bn recalibration ``recalibrate_bn`` of the student (train-mode forwards, no_grad)

P3 physical limit: achieved GFLOP/s of the default student's train step (forward + backward FLOPs from
``torch.utils.flop_counter``, divided by the measured step time) / this machine's matmul GFLOP/s (2048 x 2048,
same precision, same thread count), measured in the same run. Goal >= 0.6; exits 1 if missed.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from bench_step import random_splits  # bench/ is on sys.path when run as a script

from iakd_core.config import TrialConfig
from iakd_core.methods import build_method
from iakd_core.models import build_model
from iakd_core.presets import preset_config
from iakd_core.targets import make_targets
from iakd_core.train import autocast, evaluate, fit, place, recalibrate_bn, resolve_precision

CPU = torch.device("cpu")
MODES = {"fp32": dict(precision="fp32", channels_last=False),
         "channels_last": dict(precision="fp32", channels_last=True),
         "bf16": dict(precision="bf16", channels_last=False),
         "channels_last+bf16": dict(precision="bf16", channels_last=True)}
METHODS = ("student", "kd", "iakd", "fitnet", "at")


def best_rate(fn, images: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(images / (time.perf_counter() - start))
    return max(rates)


def train_rate(cfg: TrialConfig, data, teacher, repeats: int, kd_targets=None) -> float:
    """Best training img/s of one epoch through ``fit`` (``kd_targets``: a KD-target table to look targets up in)."""
    def once() -> float:
        torch.manual_seed(0)
        student = build_model(cfg.student, data.num_classes, data.in_channels)
        t = teacher if cfg.uses_teacher else None
        method = place(build_method(cfg, student, t, make_targets(cfg, t, CPU, kd_targets)), CPU, cfg.channels_last)
        result = fit(method, data, cfg, CPU)
        return result.images / result.history[-1]["epoch_seconds"]

    return max(once() for _ in range(repeats))


def matmul_gflops(precision: str, size: int = 2048, repeats: int = 5) -> float:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_flops(cfg: TrialConfig, data) -> float:
    """FLOPs of one student train step (forward + backward) on one batch."""
    from torch.utils.flop_counter import FlopCounterMode

    student = place(build_model(cfg.student, data.num_classes, data.in_channels), CPU, cfg.channels_last)
    x = data.train.images[: cfg.batch_size]
    y = data.train.labels[: cfg.batch_size]
    counter = FlopCounterMode(display=False)
    with counter, autocast(CPU, cfg.precision):
        torch.nn.functional.cross_entropy(student(x), y).backward()
    return float(counter.get_total_flops())


def step_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every step-rate script here shares: preset, images per epoch, repeats, threads."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="laptop")
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    return p


def main() -> int:
    p = step_parser(__doc__)
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)} (bf16 "
                   "is emulated, and ~10x slower, on CPUs without AVX512-BF16/AMX)")
    args = p.parse_args()
    modes = {m: MODES[m] for m in args.modes.split(",")}
    torch.set_num_threads(args.threads)
    plain = dict(epochs=1, crop_padding=0, flip=False, lr_schedule="constant", device="cpu")
    base = TrialConfig.from_dict({**preset_config(args.preset, "student"), **plain})
    data = random_splits(base, args.images)
    teacher = build_model(base.teacher, data.num_classes, data.in_channels).eval().requires_grad_(False)
    print(f"{args.preset}: {base.teacher} -> {base.student}, {data.in_channels}x{data.train.images.shape[-1]}^2, "
          f"batch {base.batch_size}, {args.threads} thread(s), {args.images} images x {args.repeats} repeats; img/s")
    print(f"{'path':>18} | " + " | ".join(f"{m:>18}" for m in modes))
    table: dict[str, dict[str, float]] = {}
    for method in METHODS:
        row = {}
        for mode, knobs in modes.items():
            cfg = TrialConfig.from_dict({**preset_config(args.preset, method), **plain, **knobs})
            row[mode] = train_rate(cfg, data, place(teacher, CPU, cfg.channels_last), args.repeats)
        table[f"train/{method}"] = row
        print(f"{'train/' + method:>18} | " + " | ".join(f"{v:18.0f}" for v in row.values()), flush=True)
    for path in ("teacher forward", "eval", "bn recalibration"):
        row = {}
        for mode, knobs in modes.items():
            cfg = base.replace(**knobs, eval_batch_size=base.batch_size)
            model = teacher if path == "teacher forward" else build_model(cfg.student, data.num_classes,
                                                                           data.in_channels)
            model = place(model, CPU, cfg.channels_last)
            if path == "bn recalibration":
                batches = args.images // cfg.batch_size
                fn = lambda m=model, c=cfg, b=batches: recalibrate_bn(m, data.train, b, c, CPU,  # noqa: E731
                                                                     torch.Generator().manual_seed(0))
            else:
                fn = lambda m=model, c=cfg: evaluate(m, data.train, c, CPU)  # noqa: E731
            row[mode] = best_rate(fn, args.images, args.repeats)
        table[path] = row
        print(f"{path:>18} | " + " | ".join(f"{v:18.0f}" for v in row.values()), flush=True)
    fastest = {path: max(row, key=row.get) for path, row in table.items()}
    print("fastest per path: " + ", ".join(f"{k}: {v}" for k, v in fastest.items()))
    # P3 physical limit, in the preset's own precision and layout
    cfg = base.replace(crop_padding=0)
    flops = step_flops(cfg, data)
    precision = resolve_precision(cfg.precision, CPU)
    mode = next(m for m, k in MODES.items() if k == dict(precision=precision, channels_last=cfg.channels_last))
    if mode not in modes:
        print(f"P3 physical limit: the preset's mode {mode} was not measured (--modes)")
        return 0
    rate = table["train/student"][mode]
    achieved = flops / cfg.batch_size * rate / 1e9
    peak = matmul_gflops(precision)
    ratio = achieved / peak
    print(f"P3 physical limit ({mode}): student train step {flops / 1e6:.1f} MFLOP per batch of {cfg.batch_size} "
          f"x {rate:.0f} img/s = {achieved:.1f} GFLOP/s; matmul 2048^2 {precision} "
          f"{peak:.1f} GFLOP/s; ratio {ratio:.3f} ({'met' if ratio >= 0.6 else 'MISSED'}, goal >= 0.6)")
    return 0 if ratio >= 0.6 else 1


if __name__ == "__main__":
    sys.exit(main())
