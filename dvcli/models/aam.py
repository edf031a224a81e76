"""Additive angular margin softmax (AAM-Softmax, ArcFace) for speaker classification.

For an embedding ``x`` and class weight ``w_c`` at angle ``theta_c``, the target class's logit is
``s * cos(theta_y + m)`` and every other class's is ``s * cos(theta_c)``: the margin ``m`` makes a
speaker's embeddings cluster tighter than plain softmax would. Where ``theta_y + m`` would pass pi
(cosine no longer decreasing) the target logit continues as ``cos(theta_y) - (1 + cos(pi - m))``,
which meets ``cos(pi) = -1`` at ``theta_y = pi - m`` and keeps the logit monotone in the angle.
Defaults follow 3D-Speaker's CAM++ recipe: scale 32, margin ramped from 0 to 0.2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class AAMSoftmax(nn.Module):
    """Cosine classifier with an additive angular margin on the target class.

    Args:
        embedding_size: input dimension.
        num_classes: speakers.
        scale: ``s``, the logit scale.
        margin: ``m`` in radians; :meth:`forward` can override it (for a margin ramp).
    """

    def __init__(self, embedding_size: int, num_classes: int, *, scale: float = 32.0, margin: float = 0.2) -> None:
        super().__init__()
        # Named like 3D-Speaker's CosineClassifier.weight: (classes, embedding).
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.xavier_uniform_(self.weight)
        self.scale = scale
        self.margin = margin

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, D) -> (B, num_classes)`` cosine similarity to every class centre."""
        return F.linear(F.normalize(embeddings, dim=-1), F.normalize(self.weight, dim=-1))

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor, margin: float | None = None) -> torch.Tensor:
        """Scaled logits with the margin applied to each row's target class: ``(B, num_classes)``."""
        m = self.margin if margin is None else margin
        cosine = self.cosine(embeddings).float()
        target = cosine.gather(1, labels[:, None])  # (B, 1)
        if m != 0.0:
            # clamp: sqrt's gradient is infinite at |cos| = 1.
            sine = (1.0 - target.pow(2)).clamp_min(1e-7).sqrt()
            shifted = target * math.cos(m) - sine * math.sin(m)  # cos(theta + m)
            fallback = target - (1.0 + math.cos(math.pi - m))
            target = torch.where(target > math.cos(math.pi - m), shifted, fallback)
        logits = cosine.scatter(1, labels[:, None], target)
        return self.scale * logits

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, margin: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy loss (mean over the batch) and the margin logits ``(B, num_classes)``."""
        logits = self.logits(embeddings, labels, margin)
        return F.cross_entropy(logits, labels), logits


def margin_at(step: int, final: float = 0.2, start: int = 0, end: int = 0) -> float:
    """The margin ramp: 0 before ``start``, linear to ``final`` at ``end``, then ``final``."""
    if step >= end:
        return final
    if step < start:
        return 0.0
    return final * (step - start) / max(1, end - start)
