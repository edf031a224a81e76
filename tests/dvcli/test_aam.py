"""AAM-Softmax against logits computed by hand from known angles."""

from __future__ import annotations

import math

import pytest
import torch

from dvcli.models.aam import AAMSoftmax, margin_at


def _head_with_class_angles(angles: list[float]) -> AAMSoftmax:
    head = AAMSoftmax(2, len(angles), scale=32.0, margin=0.2)
    with torch.no_grad():
        # Different norms on purpose: only directions may matter.
        head.weight.copy_(torch.tensor([[(k + 1) * math.cos(a), (k + 1) * math.sin(a)] for k, a in enumerate(angles)]))
    return head


def test_target_logit_is_scaled_cos_of_angle_plus_margin() -> None:
    head = _head_with_class_angles([0.5, 2.0, -1.0])
    embedding = torch.tensor([[3.0, 0.0]])  # angle 0
    logits = head.logits(embedding, torch.tensor([0]))
    expected = torch.tensor([[32 * math.cos(0.5 + 0.2), 32 * math.cos(2.0), 32 * math.cos(-1.0)]])
    torch.testing.assert_close(logits, expected)
    # Margin 0 = plain scaled cosine; the loss is cross-entropy of the logits.
    torch.testing.assert_close(
        head.logits(embedding, torch.tensor([0]), margin=0.0)[0, 0], torch.tensor(32 * math.cos(0.5))
    )
    loss, _ = head(embedding, torch.tensor([0]))
    by_hand = -expected[0, 0] + torch.logsumexp(expected[0], 0)
    torch.testing.assert_close(loss, by_hand)


def test_past_pi_minus_margin_the_target_logit_falls_back_linearly() -> None:
    head = _head_with_class_angles([3.0, 0.0])  # theta = 3.0 > pi - 0.2
    logits = head.logits(torch.tensor([[1.0, 0.0]]), torch.tensor([0])).detach()
    expected = 32 * (math.cos(3.0) - (1 + math.cos(math.pi - 0.2)))
    assert float(logits[0, 0]) == pytest.approx(expected, rel=1e-5)
    assert float(logits[0, 0]) < 32 * math.cos(3.0)  # still a penalty


def test_gradients_stay_finite_when_embedding_hits_its_class_centre() -> None:
    head = _head_with_class_angles([0.0, 1.0])
    embedding = torch.tensor([[2.0, 0.0]], requires_grad=True)
    loss, _ = head(embedding, torch.tensor([0]))
    loss.backward()
    assert torch.isfinite(embedding.grad).all() and torch.isfinite(head.weight.grad).all()


def test_margin_ramp() -> None:
    assert margin_at(0, 0.2, 100, 200) == 0.0
    assert margin_at(150, 0.2, 100, 200) == pytest.approx(0.1)
    assert margin_at(200, 0.2, 100, 200) == 0.2 and margin_at(10_000, 0.2, 100, 200) == 0.2
    assert margin_at(0, 0.2) == 0.2  # no ramp
