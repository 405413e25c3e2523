"""Training methods in one registry. A method is a named set of loss terms: the base class computes CE, the KD term
and a feature term from the config's weights, so student, KD, FitNet and AT are that base with their literature
weights (``presets.METHOD_DEFAULTS``) and own no code beyond a name; IAKD owns its forward (the hybrid) and its
swap statistics.

``forward_train(x, y, progress, teacher_logits=None)`` returns ``(logits, {term: weighted loss})``; the trainer sums
the dict, so a new loss term needs no trainer change. ``teacher_logits``, when the trainer has them from a table
(``iakd_core.targets``), replace the teacher's forward for the KD term.

The teacher is frozen by structure: it is not a registered submodule (so it is in no optimizer, no ``state_dict``
and no ``.train()`` call), its parameters have ``requires_grad=False``, and it is put in eval mode once and kept
there.

Add a method: subclass :class:`Method`, decorate it with ``@register("name")``, and give its literature weights
in ``presets.METHOD_DEFAULTS`` (the config's method names, the ablation's comparator arms and Table 1 follow).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import SWAP_SEED_OFFSET, TrialConfig
from .hybrid import HybridNetwork
from .losses import at_loss, fitnet_loss, kd_loss
from .models import Backbone
from .schedules import schedule_value
from .units import pair_units

METHODS: dict[str, type[Method]] = {}


def register(name: str):
    def add(cls):
        cls.name = name
        METHODS[name] = cls
        return cls

    return add


def freeze(teacher: Backbone) -> Backbone:
    teacher.requires_grad_(False)
    return teacher.eval()


class Method(nn.Module):
    name = "base"

    def __init__(self, cfg: TrialConfig, student: Backbone, teacher: Backbone | None,
                 teacher_targets: Backbone | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.student = student
        self.__dict__["teacher"] = None if teacher is None else freeze(teacher)  # deliberately unregistered
        # the network that computes whole-teacher targets (KD logits, feature hints): the teacher itself, or a
        # copy of it in another memory layout where that is faster (iakd_core.trial); frozen the same way
        self.__dict__["teacher_targets"] = self.teacher if teacher_targets is None else freeze(teacher_targets)
        self.feature_term = FeatureTerm(cfg, student, teacher) if cfg.feature_kind != "none" else None

    def train(self, mode: bool = True) -> Method:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything the optimizer updates: the student and any method-owned modules, never the teacher."""
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor, features: bool = False):
        teacher = self.teacher_targets
        if teacher is not self.teacher:
            x = x.contiguous()
        return teacher.features(x) if features else (teacher(x), None)

    def loss_terms(self, logits, y, x, stage_features=None, teacher_logits=None) -> dict[str, torch.Tensor]:
        """CE, and the KD/feature terms whose weights are > 0 (teacher run only when a term needs it; not for KD
        alone when ``teacher_logits``, the teacher's logits for ``x``, are given)."""
        cfg = self.cfg
        terms = {"ce": cfg.ce_weight * F.cross_entropy(logits, y)} if cfg.ce_weight > 0 else {}
        features = self.feature_term is not None
        if cfg.kd_weight > 0 or features:
            if teacher_logits is None or features:
                teacher_logits, t_feats = self.teacher_outputs(x, features=features)
            if cfg.kd_weight > 0:
                terms["kd"] = cfg.kd_weight * kd_loss(logits, teacher_logits, cfg.kd_temperature)
            if features:
                terms[self.feature_term.kind] = cfg.feature_weight * self.feature_term(stage_features, t_feats)
        return terms

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, progress: float,
                      teacher_logits: torch.Tensor | None = None):
        if self.feature_term is None:
            logits = self.student(x)
            return logits, self.loss_terms(logits, y, x, teacher_logits=teacher_logits)
        logits, feats = self.student.features(x)
        return logits, self.loss_terms(logits, y, x, feats)

    def epoch_stats(self) -> dict[str, Any]:
        """Per-epoch statistics beyond the losses (IAKD: realised swap rates); resets the counters."""
        return {}


@register("student")
class Student(Method):
    """The student alone, cross-entropy only."""


@register("kd")
class KD(Method):
    """Hinton KD: ce_weight * CE + kd_weight * T^2 KL (literature: 0.1 / 0.9, T = 4)."""


@register("fitnet")
class FitNet(Method):
    """FitNets: CE (+ optional KD) + feature_weight * MSE(regressor(student hint), teacher hint)."""


@register("at")
class AT(Method):
    """Attention transfer over every stage output: CE (+ optional KD) + feature_weight * sum of AT losses."""


@register("iakd")
class IAKD(Method):
    """Interactive KD: CE on the hybrid (student with randomly swapped-in teacher units), plus optional
    KD between hybrid and teacher logits, CE of an extra student-only pass, and a feature term."""

    def __init__(self, cfg: TrialConfig, student: Backbone, teacher: Backbone,
                 teacher_targets: Backbone | None = None) -> None:
        super().__init__(cfg, student, teacher, teacher_targets)
        params = cfg.schedule_params()
        self.hybrid = HybridNetwork(
            student, pair_units(self.teacher, student, cfg.units_per_stage),
            functools.partial(schedule_value, cfg.swap_schedule, **params), cfg.swap_profile, cfg.swap_mode,
            cfg.teacher_bn, seed=cfg.seed + SWAP_SEED_OFFSET, student_bn=cfg.student_bn)

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, progress: float,
                      teacher_logits: torch.Tensor | None = None):
        mask = self.hybrid.draw_mask(progress).tolist()
        student_pass = self.cfg.student_ce_weight > 0
        logits, feats, student_logits = self.hybrid.forward_with_student(
            x, mask, stage_features=self.feature_term is not None, student_pass=student_pass)
        terms = self.loss_terms(logits, y, x, feats, teacher_logits)
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
                 teacher_targets: Backbone | None = None) -> Method:
    if cfg.uses_teacher and teacher is None:
        raise ValueError(f"method {cfg.method!r} needs a teacher")
    if not cfg.uses_teacher:
        return METHODS[cfg.method](cfg, student, None)
    return METHODS[cfg.method](cfg, student, teacher, teacher_targets)
