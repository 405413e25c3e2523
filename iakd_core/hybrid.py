"""The IAKD hybrid network: student stem -> per unit, the student's or the (frozen) teacher's -> student head.

A swap mask is drawn per batch from the schedule (``draw_mask``); ``forward(x, mask)`` runs the hybrid. Teacher
units are frozen by construction: their parameters have ``requires_grad=False`` and are never handed to the
optimizer, and the teacher stays in eval mode (BatchNorm uses and never updates its running statistics), yet
autograd flows *through* them to the student units before them. Realised swap counts are kept per unit.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import Backbone
from .schedules import SWAP_MODES, schedule_value, unit_probabilities
from .units import pair_units


class HybridNetwork(nn.Module):
    def __init__(self, student: Backbone, teacher: Backbone, units_per_stage: int, swap_schedule: str,
                 schedule_params: dict[str, float], swap_profile: str, swap_mode: str, seed: int) -> None:
        super().__init__()
        pairing = pair_units(teacher, student, units_per_stage)
        self.student = student
        # the teacher is kept out of the module tree: .train(), .parameters() and state_dict() never see it
        self._teacher_units = pairing.teacher_units
        self._student_units = pairing.student_units
        self.adapters_in, self.adapters_out = pairing.adapters_in, pairing.adapters_out
        self.num_units = pairing.num_units
        self.units_per_stage = units_per_stage
        self.schedule, self.schedule_params = swap_schedule, dict(schedule_params)
        self.profile, self.draw = swap_profile, SWAP_MODES[swap_mode]
        self.generator = torch.Generator().manual_seed(seed)  # swap draws never disturb data/init randomness
        self.reset_counts()

    def reset_counts(self) -> None:
        self.swap_counts = torch.zeros(self.num_units, dtype=torch.long)
        self.batches = 0
        self.probability_sum = 0.0

    def probabilities(self, progress: float) -> torch.Tensor:
        p = schedule_value(self.schedule, progress, **self.schedule_params)
        return torch.tensor(unit_probabilities(p, self.num_units, self.profile))

    def draw_mask(self, progress: float) -> torch.Tensor:
        """Draw one batch's mask (True = teacher unit) and count it."""
        probs = self.probabilities(progress)
        mask = self.draw(probs, self.generator)
        self.swap_counts += mask
        self.batches += 1
        self.probability_sum += float(probs.mean())
        return mask

    def forward(self, x: torch.Tensor, mask: list[bool], stage_features: bool = False):
        """Hybrid logits (and, if asked, the output of every stage, in student widths)."""
        h = self.student.stem(x)
        feats = []
        for i, swapped in enumerate(mask):
            if swapped:
                h = self.adapters_out[i](self._teacher_units[i](self.adapters_in[i](h)))
            else:
                h = self._student_units[i](h)
            if stage_features and (i + 1) % self.units_per_stage == 0:
                feats.append(h)
        return self.student.head(h), (feats if stage_features else None)

    def realised_rates(self) -> list[float]:
        return (self.swap_counts.double() / max(self.batches, 1)).tolist()
