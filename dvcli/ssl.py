"""Self-supervised sidecars beside DINO: SimCLR, MoCo, BYOL and VICReg (the seed analysis's Experiment 1).

Each sees what DINO sees in joint training: two crops of every utterance, augmented independently,
embedded by the student CAM++; a projector with the DINO head's MLP shape (``in -> hidden ->
hidden -> out``, GELU) maps the embeddings to the space the loss works in. Formulas:

- ``simclr`` (Chen et al. 2020, NT-Xent): over the ``2N`` normalised projections of a batch (every
  process's, gathered), ``l_i = -log(exp(s(i, p(i)) / t) / sum_{k != i} exp(s(i, k) / t))`` with
  ``p(i)`` the other crop of ``i``'s utterance and ``s`` the cosine; the loss is the mean over i.
- ``moco`` (He et al. 2020, MoCo v2): queries from the student, keys from an EMA copy of encoder +
  projector (the momentum encoder); ``l = -log(exp(q.k+ / t) / (exp(q.k+ / t) + sum_j exp(q.n_j / t)))``
  with the negatives ``n_j`` a queue of earlier keys (every process's, gathered, enqueued after the
  step); symmetrised over the two crops.
- ``byol`` (Grill et al. 2020): a predictor MLP after the student's projector, an EMA target of
  encoder + projector; ``l = 2 - 2 cos(p_1, z'_2)`` plus the same with the crops swapped.
- ``vicreg`` (Bardes et al. 2022): ``25 * MSE(z_1, z_2) + 25 * [mean_d relu(1 - sqrt(Var z_d + 1e-4))]``
  (averaged over the two crops) ``+ 1 * [sum_{d != e} C(z)_de^2 / D]`` (summed over the two crops),
  variance and covariance over the whole batch of every process (gathered with gradients, as the
  official FullGatherLayer).

The EMA targets follow DINO's teacher momentum schedule (``dino.momentum_start`` -> ``momentum_end``,
cosine). Each loss returns its monitors beside the value (the embedding spread is logged for every
sidecar by the trainer).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dvcli.training.distributed import is_initialized

SslLoss = Literal["simclr", "moco", "byol", "vicreg"]
SSL_LOSSES: tuple[str, ...] = ("simclr", "moco", "byol", "vicreg")
#: The sidecars that learn against an EMA copy of the student (the target / momentum encoder).
EMA_TARGET = ("moco", "byol")


@dataclasses.dataclass(kw_only=True)
class SslConfig:
    """Sizes and weights of the SimCLR / MoCo / BYOL / VICReg sidecars (``ssl.*`` in train-joint's config)."""

    hidden_dim: int = 2048  # projector width (the DINO head's MLP)
    out_dim: int = 256  # projector output (the DINO head's bottleneck)
    temperature: float = 0.1  # simclr, moco
    queue_size: int = 4096  # moco: earlier keys kept as negatives
    predictor_dim: int = 1024  # byol: the predictor's hidden width
    vicreg_sim: float = 25.0  # vicreg: invariance weight (lambda)
    vicreg_std: float = 25.0  # vicreg: variance weight (mu)
    vicreg_cov: float = 1.0  # vicreg: covariance weight (nu)


def projector(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """The DINO head's MLP: ``Linear -> GELU -> Linear -> GELU -> Linear``, truncated-normal init."""
    mlp = nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.GELU(),
        nn.Linear(hidden_dim, hidden_dim),
        nn.GELU(),
        nn.Linear(hidden_dim, out_dim),
    )
    for module in mlp:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
    return mlp


class SslHead(nn.Module):
    """Projector (and for BYOL the predictor; for MoCo the key queue) of one SSL sidecar.

    Args:
        kind: simclr, moco, byol or vicreg. in_dim: the encoder's embedding size.
    """

    queue: torch.Tensor

    def __init__(self, kind: str, in_dim: int, config: SslConfig | None = None) -> None:
        super().__init__()
        if kind not in SSL_LOSSES:
            raise ValueError(f"unknown SSL sidecar {kind!r}")
        config = config or SslConfig()
        self.kind, self.config = kind, config
        self.projector = projector(in_dim, config.hidden_dim, config.out_dim)
        self.predictor = (
            nn.Sequential(
                nn.Linear(config.out_dim, config.predictor_dim),
                nn.GELU(),
                nn.Linear(config.predictor_dim, config.out_dim),
            )
            if kind == "byol"
            else None
        )
        if kind == "moco":
            self.register_buffer("queue", F.normalize(torch.randn(config.queue_size, config.out_dim), dim=1))
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim)`` -> ``(B, out_dim)``: the projection (BYOL: the prediction)."""
        z = self.projector(embeddings)
        return self.predictor(z) if self.predictor is not None else z

    def loss(self, student: torch.Tensor, target: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The sidecar loss of the two crops' outputs (crop 1 rows, then crop 2 rows).

        Args:
            student: ``(2B, out_dim)`` this head's outputs on the two crops.
            target: ``(2B, out_dim)`` the EMA target's projections (moco, byol), else None.

        Returns:
            The scalar loss and monitors (the loss's own terms).
        """
        s1, s2 = student.float().chunk(2)
        c = self.config
        if self.kind == "simclr":
            loss = nt_xent(s1, s2, c.temperature)
            return loss, {"loss_simclr": float(loss.detach())}
        if self.kind == "vicreg":
            loss, terms = vicreg_loss(s1, s2, c.vicreg_sim, c.vicreg_std, c.vicreg_cov)
            return loss, {"loss_vicreg": float(loss.detach()), **terms}
        if target is None:
            raise ValueError(f"{self.kind} needs the EMA target's projections")
        t1, t2 = target.detach().float().chunk(2)
        if self.kind == "byol":
            loss = byol_loss(s1, t2) + byol_loss(s2, t1)
            return loss, {"loss_byol": float(loss.detach())}
        queue = self.queue.clone()
        loss = (moco_loss(s1, t2, queue, c.temperature) + moco_loss(s2, t1, queue, c.temperature)) / 2
        self.enqueue(torch.cat([t1, t2]))
        return loss, {"loss_moco": float(loss.detach())}

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Put every process's normalised keys ``(N, D)`` into the queue (oldest overwritten first)."""
        keys = F.normalize(gather(keys.detach().float(), grad=False), dim=1)
        size = self.queue.shape[0]
        ptr = int(self.queue_ptr)
        index = (torch.arange(keys.shape[0], device=keys.device) + ptr) % size
        self.queue[index[-size:]] = keys[-size:]
        self.queue_ptr.fill_((ptr + keys.shape[0]) % size)


def gather(x: torch.Tensor, *, grad: bool) -> torch.Tensor:
    """Every process's ``x`` concatenated along dim 0 in rank order (``x`` itself in one process).

    With ``grad``, gradients flow back to each process's own part, summed over every process's copy
    (:class:`_GatherWithGrad`, as VICReg's FullGatherLayer).
    """
    if not is_initialized():
        return x
    if grad:
        return torch.cat(_GatherWithGrad.apply(x.contiguous()))
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward all-reduces the copies' gradients and keeps this process's part
    (VICReg's FullGatherLayer). Only all_gather and all_reduce, which every backend has:
    ``torch.distributed.nn``'s version runs an all-to-all on gloo, and one two-process run in about
    thirty aborted at exit ("terminate called without an active exception")."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # noqa: D102
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        return tuple(parts)

    @staticmethod
    def backward(ctx: object, *grads: torch.Tensor) -> torch.Tensor:  # noqa: D102
        stacked = torch.stack(grads)
        dist.all_reduce(stacked)
        return stacked[dist.get_rank()]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's NT-Xent over the two crops ``(B, D)`` each; negatives are every other projection of every process."""
    local = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D): crop 1 rows, then crop 2 rows
    everyone = gather(local, grad=True)  # (2BW, D)
    b = z1.shape[0]
    offset = dist.get_rank() * 2 * b if is_initialized() else 0
    logits = local @ everyone.T / temperature  # (2B, 2BW)
    rows = torch.arange(2 * b, device=local.device)
    logits[rows, rows + offset] = float("-inf")  # a projection is not its own negative
    partners = (rows + b) % (2 * b) + offset
    return F.cross_entropy(logits, partners)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``mean(2 - 2 cos(p, z))`` with no gradient through the target ``z`` (BYOL's normalised MSE)."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=-1)).mean()


def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """MoCo's InfoNCE: queries ``(B, D)``, their keys ``(B, D)`` (no gradient), negatives ``queue (K, D)``."""
    q, k = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
    negative = q @ F.normalize(queue, dim=1).T  # (B, K)
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def vicreg_loss(
    z1: torch.Tensor, z2: torch.Tensor, sim: float = 25.0, std: float = 25.0, cov: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """VICReg over the two crops ``(B, D)`` each, statistics over every process's batch.

    Returns the loss and its terms: ``vicreg_invariance`` (MSE), ``vicreg_variance`` (the hinge on the
    standard deviation), ``vicreg_covariance`` (off-diagonal squares over D).
    """
    invariance = F.mse_loss(z1, z2)  # this process's pairs (the official code's repr_loss, before gathering)
    x, y = gather(z1, grad=True), gather(z2, grad=True)
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    std_x, std_y = torch.sqrt(x.var(dim=0) + 1e-4), torch.sqrt(y.var(dim=0) + 1e-4)
    variance = (F.relu(1 - std_x).mean() + F.relu(1 - std_y).mean()) / 2
    n, d = x.shape
    cov_x, cov_y = x.T @ x / (n - 1), y.T @ y / (n - 1)
    off = ~torch.eye(d, dtype=torch.bool, device=x.device)
    covariance = cov_x[off].pow(2).sum() / d + cov_y[off].pow(2).sum() / d
    loss = sim * invariance + std * variance + cov * covariance
    terms = {
        "vicreg_invariance": float(invariance.detach()),
        "vicreg_variance": float(variance.detach()),
        "vicreg_covariance": float(covariance.detach()),
    }
    return loss, terms
