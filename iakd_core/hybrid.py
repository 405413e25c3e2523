"""The IAKD hybrid network: student stem -> per unit, the student's or the (frozen) teacher's -> student head.

A swap mask is drawn per batch from the schedule (``draw_mask``); ``forward(x, mask)`` runs the hybrid. Teacher
units are frozen by construction: their parameters have ``requires_grad=False`` and are never handed to the
optimizer, and the teacher stays in eval mode, yet autograd flows *through* them to the student units before them.
Their BatchNorm layers normalise with the teacher's running statistics (``teacher_bn="eval"``) or with the
current batch's statistics (``"batch"``: a student's features may not match the statistics the teacher was
trained on); in both modes the teacher's buffers never change. Realised swap counts are kept per unit.

The student's own BatchNorm running statistics (``student_bn``) must describe the student alone, because the
student is deployed and evaluated alone. In ``"clean"`` mode (the default) a student layer downstream of a
swapped-in teacher unit (later student units, the head) normalises with the batch's statistics, exactly as in
training mode, but updates no running statistics there; those come from student-path activations only: the
shared prefix before the first swapped unit, and the student-only continuation from it (the student-only pass of
the ``student_ce`` term when there is one, else a no-grad forward of the student's remaining units that does
nothing but update them). Forward values and gradients are those of ``"hybrid"`` mode, which lets every student
layer update its statistics on whatever it sees, hybrid features included (the behaviour before this mode
existed; with heavy swapping it leaves the student with statistics it never produces alone). With no unit
swapped both modes are the plain student step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from .models import Backbone, batch_norms
from .schedules import SWAP_MODES, unit_probabilities
from .units import UnitPairing

TEACHER_BN_MODES = ("eval", "batch")
STUDENT_BN_MODES = ("clean", "hybrid")


@contextlib.contextmanager
def batch_statistics(unit: nn.Module) -> Iterator[None]:
    """Within the block, ``unit``'s BatchNorm layers normalise with the batch's own statistics and update nothing
    (training mode without running-statistics tracking makes ``F.batch_norm`` get no buffers)."""
    norms = batch_norms(unit)
    saved = [(m.training, m.track_running_stats) for m in norms]
    for m in norms:
        m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, (training, tracking) in zip(norms, saved, strict=True):
            m.training, m.track_running_stats = training, tracking


class HybridNetwork(nn.Module):
    """``pairing`` (from :func:`units.pair_units`) says which student and teacher units stand for each other;
    ``probability(progress)`` is the schedule p(t); ``profile`` and ``swap_mode`` turn it into one mask per batch."""

    def __init__(self, student: Backbone, pairing: UnitPairing, probability: Callable[[float], float],
                 profile: str = "uniform", swap_mode: str = "bernoulli", teacher_bn: str = "eval",
                 seed: int = 0, student_bn: str = "clean") -> None:
        super().__init__()
        if teacher_bn not in TEACHER_BN_MODES:
            raise ValueError(f"teacher_bn={teacher_bn!r}: use one of {TEACHER_BN_MODES}")
        if student_bn not in STUDENT_BN_MODES:
            raise ValueError(f"student_bn={student_bn!r}: use one of {STUDENT_BN_MODES}")
        self.student = student
        # the teacher is kept out of the module tree: .train(), .parameters() and state_dict() never see it
        self._teacher_units = pairing.teacher_units
        self._student_units = pairing.student_units
        self.adapters_in, self.adapters_out = pairing.adapters_in, pairing.adapters_out
        self.num_units = pairing.num_units
        self.units_per_stage = pairing.units_per_stage
        self.probability, self.teacher_bn, self.student_bn = probability, teacher_bn, student_bn
        self.profile, self.draw = profile, SWAP_MODES[swap_mode]
        self.generator = torch.Generator().manual_seed(seed)  # swap draws never disturb data/init randomness
        self.reset_counts()

    def reset_counts(self) -> None:
        self.swap_counts = torch.zeros(self.num_units, dtype=torch.long)
        self.batches = 0
        self.probability_sum = 0.0

    def probabilities(self, progress: float) -> torch.Tensor:
        return torch.tensor(unit_probabilities(self.probability(progress), self.num_units, self.profile))

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
        logits, feats, _ = self.forward_with_student(x, mask, stage_features, student_pass=False)
        return logits, feats

    def forward_with_student(self, x: torch.Tensor, mask: list[bool], stage_features: bool = False,
                             student_pass: bool = True):
        """Hybrid logits, stage outputs (or None) and, with ``student_pass``, the student-alone logits.

        The student pass shares the hybrid's prefix: the stem and the units before the first swapped one are the
        same computation in both, so they run once and the student's own units continue from there (with no unit
        swapped the hybrid *is* the student and its logits are returned twice). Forward values and gradients are
        those of two separate passes; only the BatchNorm running statistics of the shared prefix are updated
        once per batch instead of twice. In ``student_bn="clean"`` mode the student's layers after the first
        swapped unit update their running statistics from the student's own continuation only (module doc).
        """
        first = mask.index(True) if True in mask else None
        clean = self.student_bn == "clean" and self.training and first is not None
        h = self.student.stem(x)
        feats, prefix = [], None
        for i, swapped in enumerate(mask):
            if i == first:
                prefix = h  # the end of the part the hybrid and the student share
            if swapped:
                unit = self._teacher_units[i]
                with batch_statistics(unit) if self.teacher_bn == "batch" else contextlib.nullcontext():
                    h = self.adapters_out[i](unit(self.adapters_in[i](h)))
            else:
                with self._downstream(self._student_units[i], clean and first is not None and i > first):
                    h = self._student_units[i](h)
            if stage_features and (i + 1) % self.units_per_stage == 0:
                feats.append(h)
        with self._downstream(self.student.head, clean):
            logits = self.student.head(h)
        student_logits = None
        if student_pass:
            student_logits = logits if first is None or prefix is None else self._student_suffix(prefix, first)
        elif clean and first is not None and prefix is not None:
            with torch.no_grad():  # the student's own statistics for the layers the hybrid fed teacher features
                self._student_suffix(prefix, first)
        return logits, (feats if stage_features else None), student_logits

    @staticmethod
    def _downstream(module: nn.Module, fed_by_teacher: bool):
        """A student module after a swapped-in teacher unit, in clean mode: batch statistics, no update."""
        return batch_statistics(module) if fed_by_teacher else contextlib.nullcontext()

    def _student_suffix(self, h: torch.Tensor, start: int) -> torch.Tensor:
        for unit in self._student_units[start:]:
            h = unit(h)
        return self.student.head(h)

    def realised_rates(self) -> list[float]:
        return (self.swap_counts.double() / max(self.batches, 1)).tolist()
