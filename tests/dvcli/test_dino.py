"""DINO head, loss, centering and EMA teacher against hand-written formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dvcli.dino import (
    DinoConfig,
    DinoHead,
    DinoLoss,
    ema_update,
    embedding_std,
    make_teacher,
    teacher_momentum,
    teacher_temperature,
)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_loss_is_the_cross_entropy_over_both_crop_pairings() -> None:
    gen = torch.Generator().manual_seed(0)
    k, b = 7, 3
    config = DinoConfig(out_dim=k, student_temp=0.1, teacher_temp=0.04, center_momentum=0.9)
    loss_fn = DinoLoss(k, config)
    center = torch.randn(1, k, generator=gen)
    loss_fn.center.copy_(center)
    s = [torch.randn(b, k, generator=gen) for _ in range(2)]
    t = [torch.randn(b, k, generator=gen) for _ in range(2)]
    loss, stats = loss_fn(s, t)

    c = center.numpy().astype(np.float64)
    sn, tn = [x.numpy().astype(np.float64) for x in s], [x.numpy().astype(np.float64) for x in t]
    expected = 0.0
    for i, j in ((0, 1), (1, 0)):  # teacher crop i teaches the student's view of crop j
        q = _softmax((tn[i] - c) / 0.04)
        log_p = np.log(_softmax(sn[j] / 0.1))
        expected += np.mean(-(q * log_p).sum(-1))
    assert float(loss) == pytest.approx(expected / 2, rel=1e-5)
    entropy = np.mean([np.mean(-(q * np.log(q)).sum(-1)) for q in (_softmax((x - c) / 0.04) for x in tn)])
    assert stats["teacher_entropy"] == pytest.approx(entropy, rel=1e-4)

    # Centering: C <- 0.9 C + 0.1 mean(teacher logits over both crops and the batch), after the loss.
    new_center = 0.9 * c + 0.1 * np.concatenate(tn).mean(0, keepdims=True)
    np.testing.assert_allclose(loss_fn.center.numpy(), new_center, rtol=1e-5, atol=1e-6)


def test_gradient_reaches_the_student_only() -> None:
    loss_fn = DinoLoss(5, DinoConfig(out_dim=5))
    s = [torch.randn(2, 5, requires_grad=True) for _ in range(2)]
    t = [torch.randn(2, 5, requires_grad=True) for _ in range(2)]
    loss, _ = loss_fn(s, t)
    loss.backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)
    assert all(x.grad is None for x in t)


def test_identical_confident_views_give_a_small_loss() -> None:
    """Student logits equal to sharp teacher logits: the loss falls to about the teacher's entropy."""
    k = 16
    loss_fn = DinoLoss(k, DinoConfig(out_dim=k, student_temp=0.04, teacher_temp=0.04))
    logits = torch.eye(k)[:4] * 5
    loss, stats = loss_fn([logits, logits], [logits, logits])
    assert float(loss) == pytest.approx(stats["teacher_entropy"], abs=1e-3)
    assert float(loss) < 0.01


def test_teacher_temperature_warm_up_and_momentum_cosine() -> None:
    config = DinoConfig(warmup_teacher_temp=0.02, teacher_temp=0.06, warmup_teacher_temp_steps=10)
    # facebookresearch/dino (DINOLoss.__init__): linspace over the warm-up, then constant; it reaches
    # teacher_temp at the warm-up's last step (9), not one step later.
    reference = np.concatenate((np.linspace(0.02, 0.06, 10), np.ones(90) * 0.06))
    assert [teacher_temperature(i, config) for i in range(100)] == pytest.approx(reference.tolist())
    assert teacher_temperature(9, config) == pytest.approx(0.06) and teacher_temperature(0, config) == 0.02
    single = DinoConfig(warmup_teacher_temp=0.02, teacher_temp=0.06, warmup_teacher_temp_steps=1)
    assert [teacher_temperature(i, single) for i in range(3)] == pytest.approx([0.02, 0.06, 0.06])
    assert teacher_temperature(0, DinoConfig()) == 0.04
    assert teacher_momentum(0, 100) == pytest.approx(0.996)
    assert teacher_momentum(50, 100) == pytest.approx(0.998)
    assert teacher_momentum(100, 100) == pytest.approx(1.0)
    assert teacher_momentum(25, 100) == pytest.approx(1 - 0.004 * (1 + math.cos(math.pi / 4)) / 2)


def test_ema_update_averages_parameters_and_buffers() -> None:
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    student(torch.randn(8, 3))  # moves the running statistics and num_batches_tracked
    ema_update(teacher, student, 0.9)
    for name, value in teacher.state_dict().items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(value, 0.9 * before[name] + 0.1 * student.state_dict()[name])
        else:
            assert torch.equal(value, student.state_dict()[name])


def test_head_shapes_normalisation_and_weight_norm() -> None:
    torch.manual_seed(0)
    head = DinoHead(12, out_dim=50, hidden_dim=32, bottleneck_dim=8)
    assert [m.out_features for m in head.mlp if isinstance(m, nn.Linear)] == [32, 32, 8]
    assert sum(isinstance(m, nn.GELU) for m in head.mlp) == 2
    x = torch.randn(5, 12)
    with torch.no_grad():
        out = head(x)
    assert out.shape == (5, 50)
    # A cosine to unit prototypes: within [-1, 1], and unchanged when a prototype is rescaled.
    assert float(out.abs().max()) <= 1.0 + 1e-6
    with torch.no_grad():
        head.prototypes[3].mul_(7.0)
        torch.testing.assert_close(head(x), out)
    default = DinoHead(192)
    assert default.prototypes.shape == (65536, 256) and default.mlp[0].out_features == 2048


def test_embedding_std_detects_collapse() -> None:
    torch.manual_seed(0)
    assert embedding_std(torch.ones(8, 16)) == pytest.approx(0.0, abs=1e-6)
    assert embedding_std(torch.randn(512, 16)) == pytest.approx(1 / math.sqrt(16), rel=0.1)


def test_center_update_uses_every_process_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a second process (simulated all-reduce), the center moves to the mean over both batches."""
    from dvcli import dino

    gen = torch.Generator().manual_seed(1)
    mine = [torch.randn(3, 4, generator=gen) for _ in range(2)]
    other = [torch.randn(5, 4, generator=gen) for _ in range(2)]  # the other rank's batch (another size)
    other_sum, other_count = torch.cat(other).sum(0, keepdim=True), torch.tensor(10.0)

    def fake_all_reduce(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.add_(other_sum if tensor.dim() else other_count)

    monkeypatch.setattr(dino, "is_initialized", lambda: True)
    monkeypatch.setattr(dino, "all_reduce_sum", fake_all_reduce)
    loss_fn = DinoLoss(4, DinoConfig(out_dim=4, center_momentum=0.9))
    loss_fn.update_center(mine)
    expected = 0.1 * torch.cat(mine + other).mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center, expected)
