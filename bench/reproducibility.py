#!/usr/bin/env python
"""Which factors change the bits of a teacher and of a trial (#22 item 4). Each variant runs in a fresh process:
the smoke teacher (fresh cache) and one smoke IAKD trial on it (p = 0.5, KD term), and prints the sha256 of the
teacher's and the student's weights and whether they equal the baseline's (1 thread, fp32, this machine's ISA).

    python bench/reproducibility.py              # ~2 min on 2 cores

Variants: the baseline twice (same process setting: must match), 2 torch threads, ATen's CPU capability forced
to the portable kernels (ATEN_CPU_CAPABILITY=default, as on an older CPU), oneDNN limited to SSE4.1
(ONEDNN_MAX_CPU_ISA), and bf16 autocast.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {"baseline": ({}, 1, "fp32"), "baseline again": ({}, 1, "fp32"), "2 threads": ({}, 2, "fp32"),
            "ATen portable kernels": ({"ATEN_CPU_CAPABILITY": "default"}, 1, "fp32"),
            "oneDNN SSE4.1": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, 1, "fp32"), "bf16": ({}, 1, "bf16")}


def tensor_digest(state: dict) -> str:
    """sha256 of a state_dict's tensors (names and bytes; a file's bytes also hold the archive's folder name)."""
    import torch

    h = hashlib.sha256()
    for name, value in sorted(state.items()):
        h.update(name.encode())
        h.update(value.cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def child(threads: int, precision: str) -> dict:
    import torch

    from iakd_core import run_trial
    from iakd_core.config import TrialConfig
    from iakd_core.factors import reproducibility_factors
    from iakd_core.presets import preset_config
    from iakd_core.teacher import get_teacher

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = preset_config("smoke", "iakd", teacher_cache=tmp, threads=threads, precision=precision,
                            swap_p0=0.5, kd_weight=0.5)
        _, meta, _ = get_teacher(TrialConfig.from_dict(cfg))
        student = Path(tmp) / "student.pt"
        final = run_trial(cfg, student_file=student)
        return {"teacher": meta["sha256"][:16], "student": tensor_digest(torch.load(student, weights_only=True)),
                "val_acc": final["val_acc"], "factors": reproducibility_factors("cpu", precision)}


def main() -> int:
    if len(sys.argv) == 3:
        print(json.dumps(child(int(sys.argv[1]), sys.argv[2])))
        return 0
    base = None
    for name, (env, threads, precision) in VARIANTS.items():
        out = subprocess.run([sys.executable, __file__, str(threads), precision], capture_output=True, text=True,
                             env={**os.environ, **env}, cwd=Path(__file__).resolve().parent.parent)
        if out.returncode:
            print(f"{name}: failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        base = base or r
        same = {k: r[k] == base[k] for k in ("teacher", "student")}
        print(f"{name:24s} teacher {r['teacher']} ({'=' if same['teacher'] else '≠'} baseline)  student "
              f"{r['student']} ({'=' if same['student'] else '≠'})  val {r['val_acc']:.2f}  "
              f"[threads {r['factors']['threads']}, {r['factors']['cpu_capability']}, {precision}]", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
