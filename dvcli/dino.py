"""DINO self-distillation (Caron et al., 2021) for a speaker encoder: head, loss, EMA teacher.

In DINO-VITS the student is CAM++ + :class:`DinoHead`; the teacher is an exponential moving average
of the student (encoder and head). Both see two random crops of the same utterance, each with its
own noise/reverb augmentation; the loss is the cross-entropy between the teacher's centred,
sharpened distribution on one crop and the student's distribution on the other, over both pairings::

    q_i = softmax((t_i - C) / tau_t)   (no gradient)        p_j = log_softmax(s_j / tau_s)
    L   = mean over pairs (i != j) of  -sum_k q_i[k] * p_j[k]          (averaged over the batch)
    C  <- m_c * C + (1 - m_c) * mean over crops and batch (and processes) of t_i

Centering (C) keeps one output dimension from dominating; the low teacher temperature keeps the
output from going uniform. The teacher's momentum follows a cosine from 0.996 to 1
(:func:`teacher_momentum`). The teacher never conditions VITS and is not part of the published model.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from dvcli.training.distributed import all_reduce_sum, is_initialized


@dataclasses.dataclass(kw_only=True)
class DinoConfig:
    """Sizes and temperatures of the DINO sidecar (nested as ``dino.*`` in train-joint's config)."""

    out_dim: int = 65536  # K, the number of DINO output dimensions ("prototypes")
    hidden_dim: int = 2048  # width of the head's two hidden layers
    bottleneck_dim: int = 256  # output of the MLP, L2-normalised before the last layer
    student_temp: float = 0.1  # tau_s
    teacher_temp: float = 0.04  # tau_t after the warm-up
    warmup_teacher_temp: float = 0.04  # tau_t at step 0 (DINO warms 0.04 -> 0.07 on ImageNet; equal = no warm-up)
    warmup_teacher_temp_steps: int = 0  # steps of the linear tau_t warm-up
    center_momentum: float = 0.9  # EMA factor of the center C
    momentum_start: float = 0.996  # teacher EMA momentum at step 0
    momentum_end: float = 1.0  # teacher EMA momentum at the last step (cosine schedule)


class DinoHead(nn.Module):
    """Projection head: 3-layer MLP (GELU) -> L2 normalisation -> weight-normalised linear to K.

    The last layer's weight norm has its gain fixed at 1 (DINO's ``norm_last_layer``), so the
    layer is a cosine similarity to K learned prototypes: ``W = V / ||V||`` row-wise.

    Args:
        in_dim: encoder embedding size.
        out_dim: K. hidden_dim: MLP width. bottleneck_dim: MLP output.
    """

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))  # V of the weight norm
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    @classmethod
    def from_config(cls, in_dim: int, config: DinoConfig) -> DinoHead:
        return cls(in_dim, config.out_dim, config.hidden_dim, config.bottleneck_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim)`` embeddings -> ``(B, K)`` logits."""
        x = F.normalize(self.mlp(x), dim=-1)  # (B, bottleneck)
        return F.linear(x, F.normalize(self.prototypes, dim=-1))


def teacher_temperature(step: int, config: DinoConfig) -> float:
    """tau_t at ``step``: facebookresearch/dino's schedule, ``np.linspace(warmup_teacher_temp,
    teacher_temp, W)`` over the first ``W = warmup_teacher_temp_steps`` steps (so ``teacher_temp`` is
    reached at step ``W - 1``), then ``teacher_temp``."""
    warmup = config.warmup_teacher_temp_steps
    if step >= warmup:
        return config.teacher_temp
    if warmup == 1:
        return config.warmup_teacher_temp
    frac = step / (warmup - 1)
    return config.warmup_teacher_temp + frac * (config.teacher_temp - config.warmup_teacher_temp)


def teacher_momentum(step: int, total: int, start: float = 0.996, end: float = 1.0) -> float:
    """EMA momentum on a cosine: ``end - (end - start) * (1 + cos(pi * step / total)) / 2``."""
    if total <= 0:
        return end
    progress = min(1.0, max(0.0, step / total))
    return end - (end - start) * (1 + math.cos(math.pi * progress)) / 2


class DinoLoss(nn.Module):
    """Two-crop DINO loss with an EMA center (all-reduced across processes).

    Args:
        out_dim: K.
        config: temperatures and center momentum.
    """

    center: torch.Tensor

    def __init__(self, out_dim: int, config: DinoConfig | None = None) -> None:
        super().__init__()
        self.config = config or DinoConfig(out_dim=out_dim)
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(
        self, student: list[torch.Tensor], teacher: list[torch.Tensor], step: int = 0
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss over every (teacher crop i, student crop j != i) pair; then update the center.

        Args:
            student: one ``(B, K)`` logit tensor per crop (with gradients).
            teacher: one ``(B, K)`` logit tensor per crop (gradients are ignored).
            step: the training step (for the teacher-temperature warm-up).

        Returns:
            The scalar loss and monitors: ``teacher_entropy`` (mean entropy of the teacher's
            distributions, in nats; near log K = uniform collapse, near 0 = one-hot collapse) and
            ``teacher_temp``.
        """
        tau_t = teacher_temperature(step, self.config)
        targets = [F.softmax((t.detach().float() - self.center) / tau_t, dim=-1) for t in teacher]
        log_probs = [F.log_softmax(s.float() / self.config.student_temp, dim=-1) for s in student]
        total, pairs = student[0].new_zeros((), dtype=torch.float32), 0
        for i, q in enumerate(targets):
            for j, log_p in enumerate(log_probs):
                if i == j:
                    continue
                total = total + torch.sum(-q * log_p, dim=-1).mean()
                pairs += 1
        loss = total / max(1, pairs)
        with torch.no_grad():
            entropy = torch.stack([-(q * q.clamp_min(1e-12).log()).sum(-1).mean() for q in targets]).mean()
        self.update_center(teacher)
        return loss, {"teacher_entropy": float(entropy), "teacher_temp": tau_t}

    @torch.no_grad()
    def update_center(self, teacher: list[torch.Tensor]) -> None:
        """``C <- m C + (1 - m) * mean of the teacher logits`` over crops, batch and processes."""
        logits = torch.cat([t.detach().float() for t in teacher])  # (crops * B, K)
        summed = logits.sum(dim=0, keepdim=True)
        count = torch.tensor(float(logits.shape[0]), device=logits.device)
        if is_initialized():
            all_reduce_sum(summed)
            all_reduce_sum(count)
        m = self.config.center_momentum
        self.center.mul_(m).add_(summed / count, alpha=1 - m)


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of ``student`` (no gradients; the EMA moves it)."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``theta_t <- m * theta_t + (1 - m) * theta_s`` for every parameter and floating buffer.

    Buffers (batch-norm running statistics) follow the same average, so the teacher, which runs in
    eval mode, normalises with statistics that move as slowly as its weights.
    """
    for (name_t, p_t), (name_s, p_s) in zip(teacher.state_dict().items(), student.state_dict().items()):
        if name_t != name_s:
            raise ValueError(f"teacher and student differ: {name_t} vs {name_s}")
        if p_t.dtype.is_floating_point:
            p_t.mul_(momentum).add_(p_s.detach().to(p_t.dtype), alpha=1 - momentum)
        else:
            p_t.copy_(p_s)


def embedding_std(embeddings: torch.Tensor) -> float:
    """Mean per-dimension standard deviation of L2-normalised embeddings ``(B, D)`` over the batch.

    A collapse monitor: ~1/sqrt(D) for well-spread embeddings, 0 when every input maps to one point.
    """
    if embeddings.shape[0] < 2:
        return 0.0
    return float(F.normalize(embeddings.detach().float(), dim=-1).std(dim=0).mean())
