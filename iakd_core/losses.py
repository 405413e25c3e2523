"""Loss terms as plain functions (each pinned by tests against hand-computed values)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.: T^2 * KL(softmax(teacher/T) || softmax(logits/T)), averaged over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher_logits / t, 1), reduction="batchmean",
                    log_target=True) * (t * t)


def fitnet_loss(regressed: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """FitNets (Romero et al.): mean squared error between the regressed student hint and the teacher's feature."""
    return F.mse_loss(regressed, teacher_feature)


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Zagoruyko & Komodakis: channel-mean of |f|^p, flattened and L2-normalised per sample."""
    return F.normalize(feature.pow(p).mean(1).flatten(1))


def at_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor], p: float = 2.0):
    """Attention transfer (RepDistiller form): sum over stage pairs of the mean squared difference of the maps."""
    terms = [(attention_map(s, p) - attention_map(t, p)).pow(2).mean()
             for s, t in zip(student_features, teacher_features, strict=True)]
    return torch.stack(terms).sum()
