"""Training methods in one registry, each with its hyperparameters declared once.

A method is a named set of loss terms. The base class computes CE, the KD term and a feature term from the
config's weights, so student, KD, FitNet and AT are that base with their own declared hyperparameters and
literature values and own no code beyond that; IAKD owns its forward (the hybrid) and its swap statistics.

``forward_train(x, y, progress, batch=None)`` returns ``(logits, {term: weighted loss})``; the trainer sums the
dict, so a new loss term needs no trainer change. The teacher's outputs for the losses come from the method's
``targets`` (``iakd_core.targets.TeacherTargets``: online, a contiguous copy, or a table, asked with the batch's
image and form numbers); ``epoch_diagnostics`` is a per-epoch hook (IAKD: teacher-unit compatibility).

**Hyperparameters.** A method lists what it tunes in ``hyperparameters`` (name -> :class:`Hyperparameter`: help,
valid range, config default, search range) and its literature values in ``@register(name, **literature)``. From
there derive: the config field of every declared name and its validation (``iakd_core.config``), its ``--option``
(``iakd train``), the method's literature config (:func:`method_overrides`: the ablation's comparator arms, Table
1's rows) and the sweep's search space for ``run_sweep.py --method <name>`` (``study/space.py``: every declared
hyperparameter with a search range). Shared names (``kd_weight`` for KD and IAKD) are declared from the same
object, so both methods search the same range; two declarations of one name must agree on everything but the
search range.

The teacher is frozen by structure: it is not a registered submodule (so it is in no optimizer, no ``state_dict``
and no ``.train()`` call), its parameters have ``requires_grad=False``, and it is put in eval mode once and kept
there.

Add a method: subclass :class:`Method`, declare ``hyperparameters``, decorate it with ``@register("name", **its
literature values)``; override ``forward_train`` if its loss is not the base's.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .hybrid import HybridNetwork
from .losses import at_loss, fitnet_loss, kd_loss
from .models import Backbone
from .schedules import schedule_value
from .units import pair_units

if TYPE_CHECKING:
    from .config import TrialConfig
    from .data import Batch, DataSplits
    from .targets import TeacherTargets


@dataclass(frozen=True)
class Hyperparameter:
    """A method's hyperparameter: the config field's help, valid range [lo, hi] and default (the term off, or its
    neutral value), and the range a sweep of the method searches (None: never searched)."""

    help: str
    lo: float
    hi: float | None = None
    default: float = 0.0
    search: tuple[float, float] | None = None
    log: bool = False
    integer: bool = False

    def fixed(self) -> Hyperparameter:
        """The same field, not searched (a method that declares it but keeps its literature value)."""
        return dataclasses.replace(self, search=None, log=False)

    def searched(self, lo: float, hi: float, log: bool = False) -> Hyperparameter:
        return dataclasses.replace(self, search=(lo, hi), log=log)


# Shared declarations (one object per name, so every method that tunes it searches the same range).
CE_WEIGHT = Hyperparameter("weight of cross-entropy on the trained network's (or hybrid's) logits", lo=0,
                           default=1.0, search=(0.05, 1.0), log=True)
KD_WEIGHT = Hyperparameter("weight of the KD term T^2 KL(teacher || output) (kd, iakd)", lo=0, default=0.0,
                           search=(0.05, 1.0), log=True)
KD_TEMPERATURE = Hyperparameter("KD temperature T", lo=0.05, hi=100, default=4.0, search=(1.0, 8.0))
STUDENT_CE_WEIGHT = Hyperparameter("iakd: weight of CE of an extra student-only forward pass", lo=0, default=0.0,
                                   search=(0.05, 1.0), log=True)
FEATURE_WEIGHT = Hyperparameter("weight of the feature term (fitnet: 100, at: 1000 in the literature)", lo=0,
                                default=0.0)
HINT_STAGE = Hyperparameter("fitnet: which stage's output (0-based) is hinted", lo=0, default=1, integer=True)

# A loss term's weight and the hyperparameters that only matter when it is on (a sweep switches them together).
TERMS: dict[str, tuple[str, ...]] = {"kd": ("kd_weight", "kd_temperature"), "student_ce": ("student_ce_weight",)}

METHODS: dict[str, type[Method]] = {}


HYPERPARAMETERS: dict[str, Hyperparameter] = {}  # every declared name -> its config field (search: the first's)


def register(name: str, **literature: Any):
    """Register a method under ``name`` with its literature values (config keys: its declared hyperparameters,
    or any other key such a run sets, e.g. IAKD's swap schedule)."""

    def add(cls: type[Method]) -> type[Method]:
        for key, hp in cls.hyperparameters.items():
            known = HYPERPARAMETERS.setdefault(key, hp)
            if dataclasses.replace(known, search=None, log=False) != hp.fixed():
                raise ValueError(f"method {name!r} declares {key!r} differently from another method: declare "
                                 "it from the same Hyperparameter object (only the search range may differ)")
        cls.name, cls.literature = name, dict(literature)
        METHODS[name] = cls
        return cls

    return add


def optional_terms_off() -> dict[str, Any]:
    """Every declared hyperparameter at its default (each optional loss term off) and no feature term: the base a
    conventional method's literature values go on."""
    return {**{k: hp.default for k, hp in HYPERPARAMETERS.items()}, "feature_term": "none"}


def method_overrides(method: str) -> dict[str, Any]:
    """The config keys that make a run ``method`` with its literature values: a conventional method also switches
    every other loss term and BN recalibration off (whatever a base config had); iakd gets the paper's setting as
    this harness reconstructs it (docs: the paper's method details are not available)."""
    base = {} if method == "iakd" else {**optional_terms_off(), "bn_recalibration_batches": 0}
    return {"method": method, **base, **METHODS[method].literature}


def searched_hyperparameters(method: str) -> dict[str, Hyperparameter]:
    """What a sweep of ``method`` searches besides the optimizer: its declared hyperparameters with a range."""
    return {k: hp for k, hp in METHODS[method].hyperparameters.items() if hp.search is not None}


def freeze(teacher: Backbone) -> Backbone:
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher


class Method(nn.Module):
    name = "base"
    hyperparameters: ClassVar[dict[str, Hyperparameter]] = {}
    literature: ClassVar[dict[str, Any]] = {}
    teacher: Backbone | None  # (both kept out of the module tree: in __dict__, see __init__)
    targets: TeacherTargets | None

    def __init__(self, cfg: TrialConfig, student: Backbone, teacher: Backbone | None,
                 targets: TeacherTargets | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.student = student
        self.__dict__["teacher"] = None if teacher is None else freeze(teacher)  # deliberately unregistered
        # where the teacher's outputs for the losses come from (iakd_core.targets.teacher_targets builds it; without
        # one, the teacher itself computes them online)
        if targets is None and teacher is not None:
            from .targets import TeacherTargets

            targets = TeacherTargets(teacher)
        self.__dict__["targets"] = targets
        self.feature_term: FeatureTerm | None = None
        if cfg.feature_kind != "none":
            if teacher is None:
                raise ValueError(f"the {cfg.feature_kind} term needs a teacher")
            self.feature_term = FeatureTerm(cfg, student, teacher)

    def train(self, mode: bool = True) -> Method:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything the optimizer updates: the student and any method-owned modules, never the teacher."""
        return [p for p in self.parameters() if p.requires_grad]

    def loss_terms(self, logits, y, x, stage_features=None, batch: Batch | None = None) -> dict[str, torch.Tensor]:
        """CE, and the KD/feature terms whose weights are > 0, with the teacher's outputs for ``x`` (the rows of
        ``batch``) from ``self.targets``."""
        cfg = self.cfg
        terms = {"ce": cfg.ce_weight * F.cross_entropy(logits, y)} if cfg.ce_weight > 0 else {}
        term = self.feature_term
        if cfg.kd_weight > 0 or term is not None:
            targets = self.targets
            if targets is None:
                raise ValueError(f"method {self.name!r} has no teacher to ask for targets")
            if term is not None:
                teacher_logits, t_feats = targets.features(x)
            else:
                teacher_logits = targets.logits(x, *((batch.image, batch.variant) if batch is not None else ()))
            if cfg.kd_weight > 0:
                terms["kd"] = cfg.kd_weight * kd_loss(logits, teacher_logits, cfg.kd_temperature)
            if term is not None:
                terms[term.kind] = cfg.feature_weight * term(stage_features, t_feats)
        return terms

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, progress: float, batch: Batch | None = None):
        """Logits and loss terms of one training step on ``x`` (the prepared images of ``batch``)."""
        if self.feature_term is None:
            logits = self.student(x)
            return logits, self.loss_terms(logits, y, x, batch=batch)
        logits, feats = self.student.features(x)
        return logits, self.loss_terms(logits, y, x, feats)

    def epoch_stats(self) -> dict[str, Any]:
        """Per-epoch statistics beyond the losses (IAKD: realised swap rates); resets the counters."""
        return {}

    def epoch_diagnostics(self, data: DataSplits, epoch: int, device: torch.device) -> dict[str, float]:
        """Diagnostics after ``epoch``'s validation, recorded with its metrics (IAKD: teacher-unit
        compatibility); none by default."""
        return {}


@register("student", ce_weight=1.0)
class Student(Method):
    """The student alone, cross-entropy only (nothing to tune but the optimizer: ``--search-optimizer``)."""


@register("kd", ce_weight=0.1, kd_weight=0.9, kd_temperature=4.0)
class KD(Method):
    """Hinton KD: ce_weight * CE + kd_weight * T^2 KL (literature: 0.1 / 0.9, T = 4)."""

    hyperparameters = {"ce_weight": CE_WEIGHT, "kd_weight": KD_WEIGHT, "kd_temperature": KD_TEMPERATURE}


@register("fitnet", ce_weight=1.0, feature_weight=100.0, hint_stage=1)
class FitNet(Method):
    """FitNets: CE (+ optional KD) + feature_weight * MSE(regressor(student hint), teacher hint)."""

    hyperparameters = {"feature_weight": FEATURE_WEIGHT.searched(10.0, 1000.0, log=True), "hint_stage": HINT_STAGE}


@register("at", ce_weight=1.0, feature_weight=1000.0)
class AT(Method):
    """Attention transfer over every stage output: CE (+ optional KD) + feature_weight * sum of AT losses."""

    hyperparameters = {"feature_weight": FEATURE_WEIGHT.searched(100.0, 10_000.0, log=True)}


# The paper's plain setting as this harness reconstructs it (the paper's method details are not available): constant
# p = 0.5, one unit per stage, every unit alike, CE on the hybrid only, the teacher's BN statistics in its units.
@register("iakd", ce_weight=1.0, kd_weight=0.0, student_ce_weight=0.0, swap_schedule="constant", swap_p0=0.5,
          units_per_stage=1, swap_profile="uniform", swap_mode="bernoulli", teacher_bn="eval", student_bn="clean",
          bn_recalibration_batches=0)
class IAKD(Method):
    """Interactive KD: CE on the hybrid (student with randomly swapped-in teacher units), plus optional
    KD between hybrid and teacher logits, CE of an extra student-only pass, and a feature term. Its sweep's
    space is the swap schedule's (``study/space.py``) plus the optional terms (``TERMS``) switched on or off."""

    hyperparameters = {"ce_weight": CE_WEIGHT.fixed(), "kd_weight": KD_WEIGHT, "kd_temperature": KD_TEMPERATURE,
                       "student_ce_weight": STUDENT_CE_WEIGHT, "feature_weight": FEATURE_WEIGHT,
                       "hint_stage": HINT_STAGE}

    def __init__(self, cfg: TrialConfig, student: Backbone, teacher: Backbone,
                 targets: TeacherTargets | None = None) -> None:
        from .config import SWAP_SEED_OFFSET

        super().__init__(cfg, student, teacher, targets)
        params = cfg.schedule_params()
        self.hybrid = HybridNetwork(
            student, pair_units(freeze(teacher), student, cfg.units_per_stage),
            functools.partial(schedule_value, cfg.swap_schedule, **params), cfg.swap_profile, cfg.swap_mode,
            cfg.teacher_bn, seed=cfg.seed + SWAP_SEED_OFFSET, student_bn=cfg.student_bn)

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, progress: float, batch: Batch | None = None):
        mask = self.hybrid.draw_mask(progress).tolist()
        student_pass = self.cfg.student_ce_weight > 0
        logits, feats, student_logits = self.hybrid.forward_with_student(
            x, mask, stage_features=self.feature_term is not None, student_pass=student_pass)
        terms = self.loss_terms(logits, y, x, feats, batch)
        if student_pass:
            terms["student_ce"] = self.cfg.student_ce_weight * F.cross_entropy(student_logits, y)
        return logits, terms

    def epoch_stats(self) -> dict[str, Any]:
        h = self.hybrid
        stats = {"swap_rate": sum(h.realised_rates()) / h.num_units,
                 "swap_prob_scheduled": h.probability_sum / max(h.batches, 1)}
        stats.update({f"swap_rate_u{i}": r for i, r in enumerate(h.realised_rates())})
        h.reset_counts()
        return stats

    def epoch_diagnostics(self, data: DataSplits, epoch: int, device: torch.device) -> dict[str, float]:
        from .train import compatibility_diagnostic  # (train imports the methods)

        return compatibility_diagnostic(self, data, epoch, device)


class FeatureTerm(nn.Module):
    """FitNet hint (with its trained 1x1 conv + BN + ReLU regressor) or attention transfer on stage outputs."""

    def __init__(self, cfg: TrialConfig, student: Backbone, teacher: Backbone) -> None:
        super().__init__()
        self.kind = cfg.feature_kind
        self.hint_stage = cfg.hint_stage
        n = len(student.stages)
        if self.kind == "fitnet":
            if not 0 <= cfg.hint_stage < n:
                raise ValueError(f"hint_stage={cfg.hint_stage} but the student has stages 0..{n - 1}")
            s_w, t_w = student.stage_widths[cfg.hint_stage], teacher.stage_widths[cfg.hint_stage]
            self.regressor = nn.Sequential(nn.Conv2d(s_w, t_w, 1, bias=False), nn.BatchNorm2d(t_w), nn.ReLU())

    def forward(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> torch.Tensor:
        if self.kind == "fitnet":
            k = self.hint_stage
            return fitnet_loss(self.regressor(student_feats[k]), teacher_feats[k])
        return at_loss(student_feats, teacher_feats)


def build_method(cfg: TrialConfig, student: Backbone, teacher: Backbone | None,
                 targets: TeacherTargets | None = None) -> Method:
    """``cfg``'s method around ``student``; ``targets``: where the teacher's outputs for its losses come from
    (``targets.teacher_targets``; default: the teacher online)."""
    if cfg.uses_teacher and teacher is None:
        raise ValueError(f"method {cfg.method!r} needs a teacher")
    if not cfg.uses_teacher:
        return METHODS[cfg.method](cfg, student, None)
    return METHODS[cfg.method](cfg, student, teacher, targets)
