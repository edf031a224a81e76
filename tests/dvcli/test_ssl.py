"""The SimCLR / MoCo / BYOL / VICReg sidecars (dvcli.ssl) against brute-force formulas, and across processes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from dvcli.ssl import SSL_LOSSES, SslConfig, SslHead, byol_loss, moco_loss, nt_xent, vicreg_loss
from dvcli.training.distributed import DistInfo, launch


def _pairs(b: int = 5, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(b, d, generator=g, dtype=torch.float64)
    return z1, z1 + 0.5 * torch.randn(b, d, generator=g, dtype=torch.float64)


def test_nt_xent_is_the_pairwise_softmax_written_out() -> None:
    z1, z2 = _pairs()
    t = 0.2
    z = [v / v.norm() for v in torch.cat([z1, z2])]
    n, b = len(z), len(z1)
    losses = []
    for i in range(n):
        partner = (i + b) % n
        denominator = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        losses.append(-math.log(math.exp(float(z[i] @ z[partner]) / t) / denominator))
    assert float(nt_xent(z1, z2, t)) == pytest.approx(np.mean(losses), rel=1e-9)


def test_byol_is_the_normalised_mse() -> None:
    p, z = _pairs()
    by_hand = np.mean([float((a / a.norm() - c / c.norm()).pow(2).sum()) for a, c in zip(p, z)])
    assert float(byol_loss(p, z)) == pytest.approx(by_hand, rel=1e-9)
    p.requires_grad_(True)
    z.requires_grad_(True)
    byol_loss(p, z).backward()
    assert z.grad is None or not z.grad.any()  # no gradient into the target


def test_moco_is_infonce_against_the_queue_written_out() -> None:
    q, k = _pairs()
    queue = torch.randn(7, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = 0.07
    losses = []
    for a, c in zip(q, k):
        a, c = a / a.norm(), c / c.norm()
        positive = math.exp(float(a @ c) / t)
        negatives = sum(math.exp(float(a @ (n / n.norm())) / t) for n in queue)
        losses.append(-math.log(positive / (positive + negatives)))
    assert float(moco_loss(q, k, queue, t)) == pytest.approx(np.mean(losses), rel=1e-9)


def test_vicreg_terms_by_hand() -> None:
    z1, z2 = _pairs(b=6, d=4)
    x, y = z1.numpy(), z2.numpy()
    invariance = np.mean((x - y) ** 2)

    def variance(a: np.ndarray) -> float:
        return float(np.mean(np.maximum(0.0, 1 - np.sqrt(a.var(axis=0, ddof=1) + 1e-4))))

    def covariance(a: np.ndarray) -> float:
        c = np.cov(a, rowvar=False)  # ddof 1
        return float(sum(c[i, j] ** 2 for i, j in itertools.product(range(4), range(4)) if i != j) / 4)

    loss, terms = vicreg_loss(z1, z2, sim=25, std=25, cov=1)
    assert terms["vicreg_invariance"] == pytest.approx(invariance, rel=1e-9)
    assert terms["vicreg_variance"] == pytest.approx((variance(x) + variance(y)) / 2, rel=1e-9)
    assert terms["vicreg_covariance"] == pytest.approx(covariance(x) + covariance(y), rel=1e-9)
    assert float(loss) == pytest.approx(
        25 * invariance + 25 * (variance(x) + variance(y)) / 2 + covariance(x) + covariance(y), rel=1e-9
    )


@pytest.mark.parametrize("kind", SSL_LOSSES)
def test_each_head_learns_two_views_apart_from_other_utterances(kind: str) -> None:
    """A few steps on fixed toy 'utterances' lower the loss (the target is an EMA copy for moco and byol)."""
    torch.manual_seed(0)
    head = SslHead(kind, 16, SslConfig(hidden_dim=32, out_dim=8, queue_size=16, predictor_dim=16))
    target = SslHead(kind, 16, SslConfig(hidden_dim=32, out_dim=8, queue_size=16, predictor_dim=16)).projector
    target.load_state_dict(head.projector.state_dict())
    base = torch.randn(12, 16)
    optimiser = torch.optim.Adam(head.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        views = torch.cat([base + 0.3 * torch.randn_like(base), base + 0.3 * torch.randn_like(base)])
        with torch.no_grad():
            t = target(views)
        loss, monitors = head.loss(head(views), t)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            for pt, ps in zip(target.parameters(), head.projector.parameters()):
                pt.mul_(0.9).add_(ps, alpha=0.1)
        losses.append(float(loss.detach()))
        assert all(math.isfinite(v) for v in monitors.values())
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_moco_queue_takes_the_newest_keys() -> None:
    head = SslHead("moco", 4, SslConfig(hidden_dim=8, out_dim=3, queue_size=5))
    keys = torch.eye(3)[[0, 1, 2, 0, 1, 2, 0]].float()
    head.enqueue(keys)
    assert int(head.queue_ptr) == 7 % 5
    torch.testing.assert_close(head.queue, keys[[5, 6, 2, 3, 4]])  # slots 0,1 overwritten by the last two


def _per_process(info: DistInfo, kind: str, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rank r takes rows r::world of the batch; returns the averaged loss and every rank's gradient in batch order."""
    import torch.distributed as dist

    rank, world = info.rank, info.world_size
    mine = [z[rank::world].clone().requires_grad_(True) for z in (z1, z2)]
    if kind == "simclr":
        loss = nt_xent(*mine, 0.2)
    elif kind == "vicreg":
        loss = vicreg_loss(*mine)[0]
    else:  # moco: the queue after enqueuing this step's keys
        head = SslHead("moco", 4, SslConfig(hidden_dim=8, out_dim=z1.shape[1], queue_size=64))
        head.queue.zero_()
        head.enqueue(torch.cat(mine).detach())
        return {"queue": head.queue[: 2 * z1.shape[0]].clone()}
    loss.backward()
    out = {"loss": loss.detach().clone()}
    if world > 1:
        dist.all_reduce(out["loss"])
        out["loss"] /= world
    for name, z in zip(("g1", "g2"), mine):
        grads = [z.grad]
        if world > 1:
            grads = [torch.empty_like(z.grad) for _ in range(world)]
            dist.all_gather(grads, z.grad)
        full = torch.empty(z1.shape, dtype=z.dtype)
        for r in range(world):
            full[r::world] = grads[r] / world  # DDP averages what each process's loss sends back
        out[name] = full
    return out


@pytest.mark.parametrize("kind", ["simclr", "vicreg", "moco"])
def test_two_gloo_processes_give_the_one_process_loss_gradients_and_queue(kind: str) -> None:
    z1, z2 = (z.float() for z in _pairs(b=6, d=5, seed=4))
    single = launch(_per_process, 1, kind, z1, z2, device="cpu")
    double = launch(_per_process, 2, kind, z1, z2, device="cpu")
    if kind == "moco":  # every process's keys in the queue: the same set as one process enqueuing them all
        rows = {tuple(np.round(r.numpy(), 5)) for r in single["queue"]}
        assert {tuple(np.round(r.numpy(), 5)) for r in double["queue"]} == rows
        return
    torch.testing.assert_close(double["loss"], single["loss"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(double["g1"], single["g1"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(double["g2"], single["g2"], rtol=1e-4, atol=1e-6)
