"""One process setting (thread count, precision, machine): a seed reproduces a teacher and a trial bit for bit,
and the factors that can change the bits are recorded (bench/reproducibility.py measures which do)."""

from __future__ import annotations

import torch

from iakd_core import run_trial
from iakd_core.config import TrialConfig
from iakd_core.presets import preset_config
from iakd_core.teacher import get_teacher

TIMING = ("seconds", "images_per_second")


def test_a_seed_reproduces_a_teacher_and_a_trial_bit_for_bit(tmp_path):
    assert torch.get_num_threads() == 1  # tests/conftest.py: one process setting
    metas, students, finals = [], [], []
    for run in ("a", "b"):
        cfg = preset_config("smoke", "iakd", teacher_cache=str(tmp_path / run), precision="fp32", swap_p0=0.5,
                            kd_weight=0.5, threads=1)
        _, meta, cached = get_teacher(TrialConfig.from_dict(cfg))
        assert not cached  # trained here, twice
        metas.append(meta)
        final = run_trial(cfg, student_file=tmp_path / run / "student.pt")
        finals.append({k: v for k, v in final.items() if not any(t in k for t in TIMING)})
        students.append(torch.load(tmp_path / run / "student.pt", weights_only=True))
    assert metas[0]["sha256"] == metas[1]["sha256"]
    assert finals[0] == finals[1]
    assert students[0].keys() == students[1].keys()
    assert all(torch.equal(students[0][k], students[1][k]) for k in students[0])
    factors = metas[0]["factors"]
    assert factors["threads"] == 1 and factors["precision"] == "fp32" and factors["torch"] == torch.__version__
    assert factors["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and factors["cpu"]
