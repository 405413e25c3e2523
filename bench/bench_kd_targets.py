#!/usr/bin/env python
"""KD targets looked up in a table (iakd_core.targets) vs the teacher online, and what the table costs.

    python bench/bench_kd_targets.py [--preset laptop] [--images 2048] [--repeats 3] [--threads 1]

Trains one epoch through ``iakd_core.train.fit`` with the preset's augmentation, precision and layout, for KD
(literature weights) and for IAKD with a KD term (the shape of the reference ablation's best config: KD +
student-only CE, rarely swapping), once with the teacher running every step and once looking its logits up;
the speed-up is measured in one run. Also times building the table with every core (as a sweep's or ablation's
driver does) and prints how many trial-epochs of the preset repay it.
"""

from __future__ import annotations

import os
import time

import torch
from bench_precision import step_parser, train_rate  # bench/ is on sys.path when run as a script
from bench_step import random_splits

from iakd_core.config import TrialConfig
from iakd_core.models import build_model
from iakd_core.presets import preset_config
from iakd_core.targets import compute_table, targets_network
from iakd_core.train import place

CPU = torch.device("cpu")


def main() -> int:
    p = step_parser(__doc__)
    args = p.parse_args()
    preset = preset_config(args.preset)
    plain = dict(epochs=1, lr_schedule="constant", device="cpu")
    configs = {
        "kd": TrialConfig.from_dict({**preset_config(args.preset, "kd"), **plain}),
        "iakd + kd": TrialConfig.from_dict({**preset_config(args.preset, "iakd"), **plain, "kd_weight": 0.22,
                                            "kd_temperature": 7.7, "student_ce_weight": 0.08, "swap_p0": 0.05}),
    }
    base = configs["kd"]
    data = random_splits(base, args.images)
    teacher = build_model(base.teacher, data.num_classes, data.in_channels).eval().requires_grad_(False)
    teacher = place(teacher, CPU, base.channels_last)  # as run_trial places it

    torch.set_num_threads(os.cpu_count() or 1)  # the driver builds the table alone, on every core
    start = time.perf_counter()
    table = compute_table(targets_network(teacher, base, CPU), data, base, CPU)
    build = time.perf_counter() - start
    torch.set_num_threads(args.threads)
    forms = table.shape[1]
    print(f"{args.preset}: {base.teacher} -> {base.student}, precision {base.precision}, crop padding "
          f"{base.crop_padding}, flip {base.flip} ({forms} forms), {args.threads} thread(s), {args.images} images x "
          f"{args.repeats} repeats")
    print(f"table: {len(data.train)} images x {forms} forms in {build:.2f}s on {os.cpu_count()} cores "
          f"({len(data.train) * forms / build:.0f} teacher forwards/s)")
    print(f"{'method':>10} | {'online img/s':>12} | {'table img/s':>11} | speed-up | saved s per 1000 images")
    for name, cfg in configs.items():
        online = train_rate(cfg, data, teacher, args.repeats)
        looked_up = train_rate(cfg, data, teacher, args.repeats, kd_targets=table)
        saved = 1000 / online - 1000 / looked_up
        print(f"{name:>10} | {online:12.0f} | {looked_up:11.0f} | {looked_up / online:7.2f}x | {saved:.3f}",
              flush=True)
        if name == "kd":
            # one trial-epoch of the preset trains on train_size images; the table covers them once per form
            per_epoch = saved * (preset.get("train_size") or args.images) / 1000
            table_cost = build * (preset.get("train_size") or args.images) / args.images
            print(f"{'':>10}   the preset's table (~{table_cost:.0f}s to build) is repaid after "
                  f"{table_cost / per_epoch:.1f} KD trial-epochs ({per_epoch:.2f}s saved each, 1 thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
