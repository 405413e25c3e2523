"""IAKD training core: models, swap units, the hybrid forward, schedules, methods, data, training, teachers.

Plain PyTorch; knows nothing of Ray or Optuna. The entry point is :func:`run_trial`.
"""

from .config import ConfigError, TrialConfig
from .trial import run_trial

__all__ = ["ConfigError", "TrialConfig", "run_trial"]
