import math

import pytest
import torch

from iakd_core.schedules import SCHEDULES, exactly_k_mask, mean_probability, schedule_value, unit_probabilities

PARAMS = dict(p0=0.8, p1=0.2, step_at=0.5, ramp_k=1.2)
EXPECTED = {  # (t=0, t=1/2, t=1)
    "constant": (0.8, 0.8, 0.8),
    "linear": (0.8, 0.5, 0.2),
    "cosine": (0.8, 0.5, 0.2),
    "step": (0.8, 0.2, 0.2),
    "theseus": (0.8, 0.2, 0.0),  # clip(0.8 - 1.2) = 0
}


def test_every_registered_schedule_is_pinned():
    assert set(SCHEDULES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_schedule_values_at_start_middle_end(name):
    got = [schedule_value(name, t, **PARAMS) for t in (0.0, 0.5, 1.0)]
    assert got == pytest.approx(EXPECTED[name])


def test_cosine_is_not_linear_between_the_ends():
    assert schedule_value("cosine", 0.25, **PARAMS) == pytest.approx(0.2 + 0.6 * (1 + math.cos(math.pi / 4)) / 2)


def test_values_are_clipped_to_unit_interval():
    assert schedule_value("linear", 1.0, p0=0.5, p1=0.0) == 0.0
    assert schedule_value("theseus", 0.0, p0=1.0, ramp_k=5) == 1.0
    assert schedule_value("theseus", 0.9, p0=1.0, ramp_k=5) == 0.0


def test_mean_probability_of_linear_is_midpoint():
    assert mean_probability("linear", p0=0.8, p1=0.2) == pytest.approx(0.5)
    assert mean_probability("step", p0=1.0, p1=0.0, step_at=0.25) == pytest.approx(0.25, abs=2e-3)


def test_profiles_keep_mean_and_order():
    assert unit_probabilities(0.5, 3, "uniform") == [0.5] * 3
    shallow = unit_probabilities(0.4, 4, "shallow_first")
    assert shallow == sorted(shallow, reverse=True) and sum(shallow) / 4 == pytest.approx(0.4)
    deep = unit_probabilities(0.4, 4, "deep_first")
    assert deep == shallow[::-1]


def test_exactly_k_swaps_expected_number_and_respects_zero_probability():
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.5, 0.5, 0.5, 0.0])
    counts = torch.stack([exactly_k_mask(probs, g) for _ in range(3000)])
    per_batch = counts.sum(1)
    assert set(per_batch.tolist()) == {1, 2}  # E[k] = 1.5: one or two units, never another number
    assert per_batch.float().mean().item() == pytest.approx(1.5, abs=0.06)
    assert counts[:, 3].sum() == 0


def test_a_new_schedule_parameter_is_one_registry_entry(tmp_path):
    """Add a schedule with a parameter no schedule had, in a copy of the package's schedules.py only: the config
    field and its validation, the sweep's search space and the tables' columns follow."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import iakd_core

    copy = tmp_path / "iakd_core"
    shutil.copytree(Path(iakd_core.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    source = copy / "schedules.py"
    text = source.read_text()
    text = text.replace('PARAMS: dict[str, ScheduleParam] = {', 'PARAMS: dict[str, ScheduleParam] = {\n'
                        '    "half_life": ScheduleParam("exp: half-life as a fraction of training", 0.01, 10, '
                        '(0.05, 1.0)),', 1)
    text += ('\n\n@schedule("exp", "p0", "half_life")\ndef exp(t, p0, half_life):\n'
             '    """p(t) = p0 2^(-t / half_life)."""\n    return p0 * 2 ** (-t / half_life)\n')
    source.write_text(text)
    check = '''
import iakd_core, optuna
from iakd_core.config import ConfigError, TrialConfig
from study.space import SearchSpace, to_trial_config
from study.ledger import TrialRecord
from iakd_core.schedules import schedule_params
from study.tables import trial_row
assert iakd_core.__file__.startswith(COPY), iakd_core.__file__
cfg = TrialConfig.from_dict({"swap_schedule": "exp", "swap_half_life": 0.25})
assert cfg.schedule_params() == {"p0": 0.5, "half_life": 0.25}
for bad in ({"swap_schedule": "exp"}, {"swap_schedule": "exp", "swap_half_life": 50}):
    try:
        TrialConfig.from_dict(bad)
        raise SystemExit(f"accepted {bad}")
    except ConfigError:
        pass
study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
space = SearchSpace([1, 2])
while not any(t.params.get("swap_schedule") == "exp" for t in study.trials):
    trial = study.ask()
    space(trial)
    study.tell(trial, 0.0)
params = next(t.params for t in study.trials if t.params["swap_schedule"] == "exp")
assert 0.05 <= params["swap_half_life"] <= 1.0, params
TrialConfig.from_dict(to_trial_config(params))
assert schedule_params(cfg.to_dict()) == {"p0": 0.5, "half_life": 0.25}
row = trial_row("t0000", "COMPLETE", TrialRecord(), cfg.to_dict())
assert row["swap_half_life"] == 0.25 and 0 < row["swap_mean_p"] < 0.5, row
print("ok")
'''.replace("COPY", repr(str(copy)))
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tmp_path)  # not the repository root, whose iakd_core would come first
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
