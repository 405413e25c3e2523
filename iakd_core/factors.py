"""What can change a run's bits, recorded with every teacher and run (``reproducibility_factors``).

Measured on this project's machines (bench/reproducibility.py, bench/README.md "Reproducibility"): on one machine,
with one thread count and one precision, a seed reproduces a teacher and a trial bit for bit. The bits change with
the torch thread count, the precision (fp32 / bf16), the kernels' instruction set (ATen's CPU capability, oneDNN's
ISA: AVX2 vs AVX-512 machines) and library versions; across such changes a re-run agrees only within seed noise.
"""

from __future__ import annotations

import platform
from functools import cache
from typing import Any

import torch


@cache
def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def reproducibility_factors(device: torch.device | str = "cpu", precision: str | None = None) -> dict[str, Any]:
    """The factors a run's bits depend on, besides its config and seed."""
    import numpy
    import torchvision

    factors: dict[str, Any] = {
        "torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": numpy.__version__,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": _cpu_model(),
        "onednn": torch.backends.mkldnn.is_available() and _onednn_version(),
        "device": str(device), "precision": precision,
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        factors.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                       cudnn=torch.backends.cudnn.version(), cudnn_deterministic=torch.backends.cudnn.deterministic)
    return factors


@cache
def _onednn_version() -> str | None:
    for line in torch.__config__.show().splitlines():
        if "MKL-DNN" in line or "oneDNN" in line:
            return line.strip(" -").split(" (")[0]
    return None
