"""IAKD training core: models, swap units, the hybrid forward, schedules, methods, data, training, teachers.

Plain PyTorch; knows nothing of Ray or Optuna. The entry point is :func:`run_trial`. The package loads its modules
on first use (PEP 562), so torch-free modules such as :mod:`iakd_core.console` import without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ConfigError, TrialConfig
    from .trial import run_trial

__all__ = ["ConfigError", "TrialConfig", "run_trial"]
_HOMES = {"ConfigError": "config", "TrialConfig": "config", "run_trial": "trial"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
