#!/usr/bin/env python
"""The cost of clean student BatchNorm statistics: IAKD steps with ``student_bn=clean`` vs ``hybrid``.

    python bench/bench_student_bn.py [--preset laptop] [--images 2048] [--repeats 3] [--threads 1]

In clean mode (the default) a batch with a swapped unit and no student-only CE pass also runs a no-grad forward
of the student's units after the first swapped one, only to update their running statistics; hybrid mode skips
it (and leaves the student with statistics of the hybrid). Both train one epoch through ``iakd_core.train.fit``
in the preset's default precision and layout, without a student-only CE term, at several swap probabilities;
the ratio is measured in one run.
"""

from __future__ import annotations

import argparse

import torch
from bench_precision import train_rate  # bench/ is on sys.path when run as a script
from bench_step import random_splits

from iakd_core.config import TrialConfig
from iakd_core.models import build_model
from iakd_core.presets import preset_config


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="laptop")
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    plain = dict(epochs=1, crop_padding=0, flip=False, lr_schedule="constant", device="cpu", compat_size=0)
    base = TrialConfig.from_dict({**preset_config(args.preset, "iakd"), **plain})
    data = random_splits(base, args.images)
    teacher = build_model(base.teacher, data.num_classes, data.in_channels).eval().requires_grad_(False)
    teacher = teacher.to(memory_format=torch.channels_last) if base.channels_last else teacher
    print(f"{args.preset}: {base.teacher} -> {base.student}, no student-only CE, precision {base.precision}, "
          f"{args.threads} thread(s), {args.images} images x {args.repeats} repeats; img/s")
    print(f"{'p':>5} | {'hybrid':>8} | {'clean':>8} | clean / hybrid")
    for prob in (0.0, 0.25, 0.5, 0.75, 1.0):
        rates = {mode: train_rate(base.replace(swap_p0=prob, student_bn=mode), data, teacher, args.repeats)
                 for mode in ("hybrid", "clean")}
        print(f"{prob:5.2f} | {rates['hybrid']:8.0f} | {rates['clean']:8.0f} | {rates['clean'] / rates['hybrid']:.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
