#!/usr/bin/env python
"""IAKD's extra student-only CE pass: shared prefix (what the core does) vs a second full student forward.

    python bench/bench_student_pass.py [--preset laptop] [--images 2048] [--repeats 3] [--threads 1]

``student_ce_weight > 0`` adds CE of the student alone to the hybrid's loss. The core computes it from the
hybrid's prefix (stem and the units before the first swapped one run once; with no unit swapped the hybrid's
logits are reused: ``HybridNetwork.forward_with_student``); the reference here runs ``student(x)`` again, as the
core did before. Both train one epoch through ``iakd_core.train.fit`` in the preset's default precision and layout,
at several swap probabilities; the ratio is measured in one run.

A second table prices clean student BatchNorm statistics (``student_bn=clean``, the default) without the
student-only CE term: a batch with a swapped unit then also runs a no-grad forward of the student's units after the
first swapped one, only to update their running statistics; ``hybrid`` mode skips it (and leaves the student with
the hybrid's statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from bench_precision import step_parser, train_rate  # bench/ is on sys.path when run as a script
from bench_step import random_splits

from iakd_core import methods
from iakd_core.config import TrialConfig
from iakd_core.models import build_model
from iakd_core.presets import preset_config


class SeparatePass(methods.IAKD):
    """The reference: the hybrid, then the whole student again for the student-only CE."""

    def forward_train(self, x, y, progress, batch=None):
        mask = self.hybrid.draw_mask(progress).tolist()
        logits, feats = self.hybrid(x, mask, stage_features=self.feature_term is not None)
        terms = self.loss_terms(logits, y, x, feats, batch)
        terms["student_ce"] = self.cfg.student_ce_weight * F.cross_entropy(self.student(x), y)
        return logits, terms


def main() -> int:
    p = step_parser(__doc__)
    p.add_argument("--student-ce", type=float, default=0.5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    plain = dict(epochs=1, crop_padding=0, flip=False, lr_schedule="constant", device="cpu")
    # the first table compares the two ways of computing the student-only CE as they stood before student_bn: in
    # hybrid mode neither runs the extra statistics pass of clean mode (the second table prices that)
    base = TrialConfig.from_dict({**preset_config(args.preset, "iakd"), **plain,
                                  "student_ce_weight": args.student_ce, "student_bn": "hybrid"})
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
    print(f"\nno student-only CE: student_bn hybrid vs clean (the extra no-grad pass); img/s\n"
          f"{'p':>5} | {'hybrid':>8} | {'clean':>8} | clean / hybrid")
    for prob in (0.0, 0.25, 0.5, 0.75, 1.0):
        rates = {mode: train_rate(base.replace(swap_p0=prob, student_ce_weight=0.0, student_bn=mode), data, teacher,
                                  args.repeats) for mode in ("hybrid", "clean")}
        print(f"{prob:5.2f} | {rates['hybrid']:8.0f} | {rates['clean']:8.0f} | {rates['clean'] / rates['hybrid']:.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
