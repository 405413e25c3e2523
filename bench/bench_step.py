#!/usr/bin/env python
"""P3: throughput of our student / KD / IAKD training steps vs a minimal hand-written PyTorch loop doing the same
math on the same tensors, and the IAKD step cost vs the KD step cost at p = 0.5.

    python bench/bench_step.py [--preset laptop] [--images 3072] [--repeats 5]
    python bench/bench_step.py --preset cifar100-resnet56-resnet20 --device cuda [--precision bf16|fp32]   # GPU check

Ours = ``iakd_core.train.fit`` for one epoch (augmentation off, so both sides see identical batches; validation
time excluded). Hand = a plain loop: forward, loss, zero_grad, backward, step, with the same precision (bf16
autocast or fp32) and channels-last layout as the config. Inputs are random tensors of the preset's shape
(CIFAR presets: 3x32x32, 100 or 10 classes), so no dataset is needed. Best of ``--repeats`` runs (timing noise on
a shared 2-core VM is about ±5–10 %). Prints the figures, then the goals; exits 1 if a goal is missed. The
hand-written IAKD loop has no adapters, so pairs whose unit widths differ (wrn_40_2 -> wrn_40_1) are refused.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iakd_core.config import TrialConfig  # noqa: E402
from iakd_core.data import DataSplits, TensorDataset  # noqa: E402
from iakd_core.methods import build_method  # noqa: E402
from iakd_core.models import build_model  # noqa: E402
from iakd_core.presets import preset_config  # noqa: E402
from iakd_core.targets import make_targets
from iakd_core.train import autocast, fit, place, resolve_precision  # noqa: E402
from iakd_core.units import pair_units, split_units  # noqa: E402

DEVICE = torch.device("cpu")
SHAPES = {"fashion-mnist": (1, 28, 10), "synthetic": (1, 16, 4), "cifar10": (3, 32, 10),
          "cifar100": (3, 32, 100)}  # channels, side, classes


def random_splits(cfg: TrialConfig, images: int) -> DataSplits:
    """Random tensors of the config's dataset shape (no dataset needed); val = the first 64 train images."""
    channels, side, classes = SHAPES[cfg.dataset]
    side = cfg.image_size or side
    g = torch.Generator().manual_seed(0)
    train = TensorDataset(torch.randn((images, channels, side, side), generator=g),
                          torch.randint(0, classes, (images,), generator=g))
    return DataSplits(train, TensorDataset(train.images[:64], train.labels[:64]), classes, channels,
                      torch.zeros(channels))


def ours(cfg: TrialConfig, data: DataSplits, teacher) -> float:
    torch.manual_seed(0)
    student = build_model(cfg.student, data.num_classes, data.in_channels)
    targets = make_targets(cfg, teacher, DEVICE)
    method = place(build_method(cfg, student, teacher, targets), DEVICE, cfg.channels_last)
    result = fit(method, data, cfg, DEVICE)
    return result.images / result.history[-1]["epoch_seconds"]


def hand(cfg: TrialConfig, data: DataSplits, teacher) -> float:
    torch.manual_seed(0)
    student = place(build_model(cfg.student, data.num_classes, data.in_channels), DEVICE, cfg.channels_last)
    opt = torch.optim.SGD(student.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    s_units, t_units = split_units(student, 1), split_units(teacher, 1) if teacher is not None else None
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(cfg.seed))
    masks = torch.Generator().manual_seed(cfg.seed + 7919)  # the same swap draws as IAKD's own generator
    student.train()
    start = time.perf_counter()
    for i in range(0, len(order), cfg.batch_size):
        idx = order[i : i + cfg.batch_size]
        x, y = data.train.images[idx].to(DEVICE), data.train.labels[idx].to(DEVICE)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(DEVICE, cfg.precision):
            if cfg.method == "student":
                loss = F.cross_entropy(student(x), y)
            elif cfg.method == "kd":
                logits = student(x)
                with torch.no_grad():
                    t = teacher(x)
                tau = cfg.kd_temperature
                kl = F.kl_div(F.log_softmax(logits / tau, 1), F.log_softmax(t / tau, 1), reduction="batchmean",
                              log_target=True) * tau**2
                loss = cfg.ce_weight * F.cross_entropy(logits, y) + cfg.kd_weight * kl
            else:
                mask = torch.rand(len(s_units), generator=masks) < 0.5
                h = student.stem(x)
                for u in range(len(s_units)):
                    h = t_units[u](h) if mask[u] else s_units[u](h)
                loss = F.cross_entropy(student.head(h), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return len(order) / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="laptop")
    p.add_argument("--images", type=int, default=3072)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda (a GPU check; IAKD/KD configs then use it)")
    p.add_argument("--precision", choices=("preset", "auto", "fp32", "bf16"), default="preset",
                   help="precision as the preset says (default auto: bf16 where the hardware has it), or forced")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    # identical batches on both sides
    plain = dict(epochs=1, crop_padding=0, flip=False, lr_schedule="constant", device=args.device)
    if args.precision != "preset":
        plain["precision"] = args.precision

    def config(method: str, **extra) -> TrialConfig:
        return TrialConfig.from_dict({**preset_config(args.preset, method), **plain, **extra})

    base = config("student")
    data = random_splits(base, args.images)
    channels, side, classes = data.in_channels, data.train.images.shape[-1], data.num_classes
    torch.manual_seed(1)
    global DEVICE
    DEVICE = torch.device(args.device)
    teacher = place(build_model(base.teacher, classes, channels).eval().requires_grad_(False), DEVICE,
                    base.channels_last)
    if pair_units(teacher, build_model(base.student, classes, channels)).has_adapters:
        print(f"error: {base.teacher} -> {base.student} needs adapters, which the hand-written loop does not "
              "have; pick a pair with equal unit widths", file=sys.stderr)
        return 2
    print(f"{args.preset}: {base.teacher} -> {base.student}, {channels}x{side}x{side}, {classes} classes, batch "
          f"{base.batch_size}, device {DEVICE}, precision {resolve_precision(base.precision, DEVICE)}, channels_last "
          f"{base.channels_last}, {args.images} images x {args.repeats} repeats")
    configs = {"student": base, "kd": config("kd"), "iakd": config("iakd", swap_p0=0.5)}
    rates = {}
    for name, cfg in configs.items():
        t = teacher if cfg.uses_teacher else None
        o = max(ours(cfg, data, t) for _ in range(args.repeats))
        h = max(hand(cfg, data, t) for _ in range(args.repeats))
        rates[name] = (o, h)
        print(f"{name:>8}: ours {o:7.0f} img/s | hand-written {h:7.0f} img/s | ratio {o / h:.3f}")
    iakd_vs_kd = rates["kd"][0] / rates["iakd"][0]  # cost = 1 / throughput
    print(f"IAKD step cost / KD step cost at p=0.5: {iakd_vs_kd:.3f}")
    goals = [(f"{n} ratio >= 0.95", rates[n][0] / rates[n][1] >= 0.95) for n in rates]
    goals.append(("IAKD cost / KD cost <= 1.0", iakd_vs_kd <= 1.0))
    for text, ok in goals:
        print(f"goal {text}: {'met' if ok else 'MISSED'}")
    return 0 if all(ok for _, ok in goals) else 1


if __name__ == "__main__":
    raise SystemExit(main())
