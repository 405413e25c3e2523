"""The typed configuration of one trial: every knob of a run, validated once, with its help text.

``TrialConfig.from_dict`` is the only way configs from the command line, presets, Ray or Optuna get in: an unknown
key or an out-of-range value raises :class:`ConfigError` with a one-line message saying what to change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .hybrid import STUDENT_BN_MODES, TEACHER_BN_MODES
from .methods import HYPERPARAMETERS, METHODS
from .schedules import PARAMS, PROFILES, SCHEDULES, SWAP_MODES, schedule_params


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says which key and what is allowed."""


GROUPS = ("data", "method", "swap", "loss", "optimisation", "teacher", "numerics", "runtime")


def _f(group: str, default: Any, help: str, runtime_only: bool = False, **checks: Any) -> Any:
    """A dataclass field carrying its group, its help text and validation rules (choices, lo, hi).
    ``runtime_only``: where and how fast it runs, never what it computes (paths, threads, device, eval batch)."""
    assert group in GROUPS, group
    return field(default=default, metadata={"group": group, "help": help, "runtime_only": runtime_only, **checks})


def _bounded(group: str, default: Any, help: str, lo: float, hi: float | None) -> Any:
    """A field with a lower bound and an optional upper one (none: unbounded above)."""
    return _f(group, default, help, lo=lo) if hi is None else _f(group, default, help, lo=lo, hi=hi)


_GENERATED: Any = None  # (the stand-in default of TrialConfig's generated fields, seen only by type checkers)

# Random streams derived from a trial's seed, each its own generator so none disturbs another (primes, arbitrary).
SWAP_SEED_OFFSET = 7919             # the hybrid's swap draws
RECALIBRATION_SEED_OFFSET = 104729  # the batches BN recalibration reads
DIAGNOSTIC_SEED_OFFSET = 1299709    # the batches the diagnostic's student-only recalibration reads

METHOD_NAMES = tuple(METHODS)  # the method registry's names
DATASET_NAMES = ("fashion-mnist", "cifar10", "cifar100", "synthetic")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrialConfig:
    # ---- data
    dataset: str = _f("data", "fashion-mnist", "dataset", choices=DATASET_NAMES)
    data_root: str = _f("data", "data", "folder holding the dataset (prepared automatically for fashion-mnist)",
                        runtime_only=True)
    download: bool = _f("data", False, "allow torchvision to download a missing dataset (needs internet)",
                        runtime_only=True)
    train_size: int | None = _f("data", None, "train subset size (None: all of the official train set left after "
                                "val)", lo=1)
    val_size: int = _f("data", 5000, "validation images carved (seeded) from the official train set", lo=1)
    split_seed: int = _f("data", 0, "seed of the train/val split", lo=0)
    image_size: int | None = _f("data", None, "resize images to this side length once at load (None: native)", lo=8)
    crop_padding: int = _f("data", 4, "random-crop padding in pixels (0: no crop augmentation)", lo=0, hi=16)
    flip: bool = _f("data", True, "random horizontal flips")
    # ---- networks and method
    teacher: str = _f("method", "resnet56", "teacher architecture (see iakd_core.models.MODELS)")
    student: str = _f("method", "resnet20", "student architecture")
    method: str = _f("method", "iakd", "training method", choices=METHOD_NAMES)
    units_per_stage: int = _f("method", 1, "swap-unit granularity: groups per stage (1 = one unit per stage)", lo=1)
    # ---- swapping (iakd)
    swap_schedule: str = _f("swap", "constant", "swap schedule p(t)", choices=tuple(SCHEDULES))
    for _name, _param in PARAMS.items():  # swap_p0, swap_p1, ...: one field per parameter of schedules.PARAMS
        __annotations__[f"swap_{_name}"] = "float" if _param.default is not None else "float | None"
        vars()[f"swap_{_name}"] = _f("swap", _param.default, _param.help, lo=_param.lo, hi=_param.hi)
    del _name, _param
    swap_profile: str = _f("swap", "uniform", "per-unit profile of swap probabilities", choices=tuple(PROFILES))
    swap_mode: str = _f("swap", "bernoulli", "how a batch's swap mask is drawn", choices=tuple(SWAP_MODES))
    teacher_bn: str = _f("swap", "eval", "BatchNorm of swapped-in teacher units: eval (the teacher's running "
                         "statistics) or batch (the current batch's; the teacher's buffers never change)",
                         choices=TEACHER_BN_MODES)
    student_bn: str = _f("swap", "clean", "BatchNorm running statistics of the student: clean (updated only from "
                         "the student's own activations; layers fed by a swapped-in teacher unit normalise with "
                         "the batch's statistics without updating them) or hybrid (every layer updates on whatever "
                         "it sees, teacher-fed batches included: the behaviour of runs made before this option)",
                         choices=STUDENT_BN_MODES)
    # ---- losses
    if TYPE_CHECKING:  # the generated fields (above and below), spelled out for type checkers only; test_config_data
        swap_p0: float = _GENERATED  # checks these names and types against the registries
        swap_p1: float | None = _GENERATED
        swap_step_at: float | None = _GENERATED
        swap_ramp_k: float | None = _GENERATED
        ce_weight: float = _GENERATED
        kd_weight: float = _GENERATED
        kd_temperature: float = _GENERATED
        feature_weight: float = _GENERATED
        hint_stage: int = _GENERATED
        student_ce_weight: float = _GENERATED
    for _name, _hp in HYPERPARAMETERS.items():  # ce_weight, kd_weight, ...: every method's declared hyperparameters
        __annotations__[_name] = "int" if _hp.integer else "float"
        vars()[_name] = _bounded("loss", _hp.default, _hp.help, _hp.lo, _hp.hi)
    del _name, _hp
    feature_term: str = _f("loss", "none", "iakd: add a feature term on the hybrid's stage outputs",
                           choices=("none", "fitnet", "at"))
    bn_recalibration_batches: int = _f("loss", 0, "before each evaluation, recompute the student's BatchNorm "
                                       "statistics "
                                       "on this many student-only training batches (0: off)", lo=0, hi=10_000)
    # ---- optimisation
    epochs: int = _f("optimisation", 10, "training epochs (the fidelity ASHA cuts)", lo=1, hi=10_000)
    batch_size: int = _f("optimisation", 64, "batch size", lo=1, hi=65_536)
    lr: float = _f("optimisation", 0.05, "initial learning rate", lo=0, hi=1000)
    momentum: float = _f("optimisation", 0.9, "SGD momentum", lo=0, hi=1)
    nesterov: bool = _f("optimisation", False, "Nesterov momentum")
    weight_decay: float = _f("optimisation", 5e-4, "weight decay", lo=0, hi=1)
    lr_schedule: str = _f("optimisation", "multistep", "learning-rate schedule",
                          choices=("multistep", "cosine", "constant"))
    lr_milestones: tuple[float, ...] = _f("optimisation", (0.625, 0.75, 0.875),
                                          "multistep: fractions of training where lr *= gamma")
    lr_gamma: float = _f("optimisation", 0.1, "multistep decay factor", lo=0, hi=1)
    # ---- teacher recipe (trained once and cached; see iakd_core.teacher)
    teacher_epochs: int = _f("teacher", 30, "epochs of the cached teacher's training", lo=1, hi=10_000)
    teacher_train_size: int | None = _f("teacher", None, "images the cached teacher trains on (None: train_size); "
                                        "drawn from "
                                        "the same seeded pool, so the student's images are a subset and val is "
                                        "never seen", lo=1)
    teacher_seed: int = _f("teacher", 0, "seed of the cached teacher's training", lo=0)
    teacher_cache: str = _f("teacher", "results/teachers", "folder of cached teachers", runtime_only=True)
    teacher_weights: str | None = _f("teacher", None, "a teacher state_dict trained elsewhere (a .pt file, loaded with "
                                     "weights_only=True and checked against the teacher architecture); replaces "
                                     "the cached teacher recipe")
    # ---- runtime (seed and numerics change results; the fields marked runtime_only do not)
    seed: int = _f("runtime", 0, "seed of initialisation, batch order, augmentation and swap draws", lo=0)
    threads: int | None = _f("runtime", None, "torch CPU threads (None: torch's default)", lo=1, hi=1024,
                             runtime_only=True)
    device: str = _f("runtime", "auto", "auto (CUDA when present), cpu, cuda or cuda:N", runtime_only=True)
    precision: str = _f("numerics", "auto", "fp32, bf16 (autocast), or auto: bf16 where the device computes it "
                        "natively "
                        "(CUDA with bf16, CPUs with AVX512-BF16/AMX), else fp32; the manifest records the choice",
                        choices=PRECISIONS)
    channels_last: bool = _f("numerics", True, "channels-last memory format (measured faster on CPU: bench/README.md)")
    eval_batch_size: int = _f("runtime", 1024, "batch size for evaluation", lo=1, runtime_only=True)
    kd_targets: str = _f("runtime", "auto", "where the KD term's teacher logits come from: auto (on CPU, a table of "
                         "the teacher's logits for every training image in every augmented form, when a sweep or "
                         "ablation has built one: the same values, looked up; iakd_core.targets) or online (the "
                         "teacher runs every step)", choices=("auto", "online"), runtime_only=True)
    compat_size: int = _f("runtime", 512, "iakd: validation images (the first N of the seeded val split) on which "
                          "the teacher-unit compatibility diagnostic runs: the student alone, the teacher alone and "
                          "the hybrid with exactly one unit swapped in, for each unit (0: off)", lo=0,
                          runtime_only=True)
    compat_epochs: tuple[int, ...] = _f("runtime", (), "iakd: epochs at which the compatibility diagnostic runs "
                                        "besides the last (sweeps pass their ASHA rungs)", runtime_only=True)
    evaluate_test: bool = _f("runtime", False, "evaluate on the official test set at the end (final runs only, never "
                             "tuning)", runtime_only=True)

    # ------------------------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any] | TrialConfig | None = None, **overrides: Any) -> TrialConfig:
        """Validate and convert; ``None`` values mean 'the default'."""
        raw = dataclasses.asdict(values) if isinstance(values, TrialConfig) else dict(values or {})
        raw.update(overrides)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; valid keys: {', '.join(known)}")
        kwargs = {}
        for name, value in raw.items():
            if value is None:  # None means "the default" (which may itself be None)
                continue
            kwargs[name] = _coerce(known[name], value)
        cfg = cls(**kwargs)
        cfg._check_relations()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> TrialConfig:
        return TrialConfig.from_dict(self, **changes)

    def schedule_params(self) -> dict[str, float]:
        """The parameters the chosen swap schedule uses, by their short names (p0, p1, step_at, ramp_k)."""
        return schedule_params(vars(self))

    @property
    def feature_kind(self) -> str:
        """The feature term in use: the method's own (fitnet, at) or iakd's optional one."""
        return self.method if self.method in ("fitnet", "at") else self.feature_term

    @property
    def uses_teacher(self) -> bool:
        return self.method != "student"

    def _check_relations(self) -> None:
        from .models import MODELS, is_known_architecture

        for role in ("teacher", "student"):
            if not is_known_architecture(getattr(self, role)):
                raise ConfigError(f"unknown architecture {role}={getattr(self, role)!r}; choose one of: "
                                  f"{', '.join(MODELS)} (or any wrn_D_K)")
        if self.method == "iakd":
            missing = [f"swap_{p}" for p in SCHEDULES[self.swap_schedule].params if p not in self.schedule_params()]
            if missing:
                raise ConfigError(f"swap_schedule={self.swap_schedule!r} needs {', '.join(missing)}; set them")
        if self.method == "student" and (self.kd_weight or self.feature_weight or self.student_ce_weight):
            raise ConfigError("method 'student' trains on CE alone: set kd_weight, feature_weight and "
                              "student_ce_weight to 0, or choose method kd / iakd / fitnet / at")
        if self.method in ("fitnet", "at") and self.feature_term not in ("none", self.method):
            raise ConfigError(f"method {self.method!r} uses its own feature term: drop feature_term or set it to "
                              f"{self.method!r}")
        if self.feature_kind != "none" and self.feature_weight <= 0:
            raise ConfigError(f"the {self.feature_kind} term needs feature_weight > 0 (literature: fitnet 100, "
                              "at 1000)")
        if self.ce_weight + self.kd_weight + self.student_ce_weight + self.feature_weight <= 0:
            raise ConfigError("every loss weight is 0: set ce_weight or kd_weight above 0")
        if any(not 0 < m < 1 for m in self.lr_milestones):
            raise ConfigError(f"lr_milestones={self.lr_milestones}: give fractions of training strictly in (0, 1)")
        if any(e < 1 for e in self.compat_epochs):
            raise ConfigError(f"compat_epochs={self.compat_epochs}: give epoch numbers >= 1")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device={self.device!r}: use auto, cpu, cuda or cuda:N")


_HINTS = typing.get_type_hints(TrialConfig)  # the fields' real types (annotations are strings here)


def _value_type(f: dataclasses.Field) -> tuple[type, type | None]:
    """(the field's type without ``None``, the element type when it is a tuple), from its real annotation
    (``typing.get_type_hints``, which also resolves the fields generated from the registries)."""
    hint = _HINTS[f.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return tuple, typing.get_args(hint)[0]
    return hint, None


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    meta, name = f.metadata, f.name
    kind, element = _value_type(f)
    try:
        if kind is tuple:
            if isinstance(value, str):  # "0.5,0.75", "0.5 0.75" or "[0.5, 0.75]"
                value = [v for v in value.strip().strip("[]()").replace(",", " ").split() if v]
            value = tuple(float(v) for v in value)
            if element is int:
                if not all(v.is_integer() for v in value):
                    raise ValueError
                value = tuple(int(v) for v in value)
        elif kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                value = value.lower() in ("1", "true", "yes")
            value = bool(value)
        elif kind is int:
            if isinstance(value, float) and not value.is_integer() or isinstance(value, bool):
                raise ValueError
            value = int(value)
        elif kind is float:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError
        else:
            value = str(value)
    except (TypeError, ValueError):
        what = f"tuple[{getattr(element, '__name__', element)}, ...]" if kind is tuple else kind.__name__
        raise ConfigError(f"{name}={value!r} is not a valid {what}") from None
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{name}={value!r} is not one of: {', '.join(meta['choices'])}")
    if "lo" in meta and value < meta["lo"] or "hi" in meta and value > meta["hi"]:
        lo, hi = meta.get("lo", "-inf"), meta.get("hi", "inf")
        raise ConfigError(f"{name}={value!r} is out of range [{lo}, {hi}]")
    return value


def fields_where(*groups: str, runtime_only: bool | None = None) -> frozenset[str]:
    """Names of the TrialConfig fields in ``groups`` (all groups when none given), optionally only those that are
    (or are not) runtime-only."""
    return frozenset(f.name for f in dataclasses.fields(TrialConfig)
                     if (not groups or f.metadata["group"] in groups)
                     and (runtime_only is None or f.metadata["runtime_only"] == runtime_only))



def stable_hash(values: dict[str, Any], length: int = 16) -> str:
    """Hex digest of a JSON-serialisable dict, independent of key order."""
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
