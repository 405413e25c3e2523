"""Test-only fault injection into the sweep's trials, entirely on the tests' side.

A test puts this folder on ``PYTHONPATH`` and sets ``IAKD_TEST_FAULTS="2:nan,3:raise"`` (Optuna trial number:
fault). Every Python process started with that environment (the driver and Ray's workers) then wraps
``study.sweep.sweep_trial`` when ``study.sweep`` is imported: trial 2 trains with a NaN loss (the core's real
non-finite-loss check fires), trial 3 raises inside ``run_trial``. Nothing in the project knows about it.
"""

import importlib.abc
import importlib.util
import os
import sys

_FAULTS = os.environ.get("IAKD_TEST_FAULTS", "")


def _patch(module) -> None:
    faults = {int(n): kind for n, kind in (item.split(":") for item in _FAULTS.split(",") if item)}
    original = module.sweep_trial

    def sweep_trial(config, **kwargs):
        kind = faults.get(config["trial_number"])
        if kind is None:
            return original(config, **kwargs)
        import torch.nn.functional as F

        import study.runner as runner

        saved = (F.cross_entropy, runner.run_trial)
        if kind == "nan":
            F.cross_entropy = lambda *a, **k: saved[0](*a, **k) * float("nan")
        else:
            def run_trial(cfg, report=None, **outputs):
                raise RuntimeError(f"injected fault in trial {config['trial_number']}")
            runner.run_trial = run_trial
        try:
            return original(config, **kwargs)
        finally:
            F.cross_entropy, runner.run_trial = saved

    module.sweep_trial = sweep_trial


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "study.sweep":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if _FAULTS:
    sys.meta_path.insert(0, _Finder())
