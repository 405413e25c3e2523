#!/usr/bin/env python
"""IAKD's extra student-only CE pass: shared prefix (what the core does) vs a second full student forward.

    python bench/bench_student_pass.py [--preset laptop] [--images 2048] [--repeats 3] [--threads 1]

``student_ce_weight > 0`` adds CE of the student alone to the hybrid's loss. The core computes it from the
hybrid's prefix (stem and the units before the first swapped one run once; with no unit swapped the hybrid's
logits are reused: ``HybridNetwork.forward_with_student``); the reference here runs ``student(x)`` again, as the
core did before. Both train one epoch through ``iakd_core.train.fit`` in the preset's default precision and layout,
at several swap probabilities; the ratio is measured in one run.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from bench_precision import train_rate  # bench/ is on sys.path when run as a script
from bench_step import random_splits

from iakd_core import methods
from iakd_core.config import TrialConfig
from iakd_core.models import build_model
from iakd_core.presets import preset_config


class SeparatePass(methods.IAKD):
    """The reference: the hybrid, then the whole student again for the student-only CE."""

    def forward_train(self, x, y, progress, teacher_logits=None):
        mask = self.hybrid.draw_mask(progress).tolist()
        logits, feats = self.hybrid(x, mask, stage_features=self.feature_term is not None)
        terms = self.loss_terms(logits, y, x, feats)
        terms["student_ce"] = self.cfg.student_ce_weight * F.cross_entropy(self.student(x), y)
        return logits, terms


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="laptop")
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--student-ce", type=float, default=0.5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    plain = dict(epochs=1, crop_padding=0, flip=False, lr_schedule="constant", device="cpu")
    base = TrialConfig.from_dict({**preset_config(args.preset, "iakd"), **plain,
                                  "student_ce_weight": args.student_ce})
    data = random_splits(base, args.images)
    teacher = build_model(base.teacher, data.num_classes, data.in_channels).eval().requires_grad_(False)
    teacher = teacher.to(memory_format=torch.channels_last) if base.channels_last else teacher
    print(f"{args.preset}: {base.teacher} -> {base.student}, student_ce_weight {args.student_ce}, precision "
          f"{base.precision}, {args.threads} thread(s), {args.images} images x {args.repeats} repeats; img/s")
    print(f"{'p':>5} | {'separate pass':>13} | {'shared prefix':>13} | speed-up")
    core = methods.METHODS["iakd"]
    for prob in (0.0, 0.25, 0.5, 0.75):
        cfg = base.replace(swap_p0=prob)
        rates = {}
        for name, cls in (("separate", SeparatePass), ("shared", core)):
            methods.METHODS["iakd"] = cls
            try:
                rates[name] = train_rate(cfg, data, teacher, args.repeats)
            finally:
                methods.METHODS["iakd"] = core
        print(f"{prob:5.2f} | {rates['separate']:13.0f} | {rates['shared']:13.0f} | "
              f"{rates['shared'] / rates['separate']:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
