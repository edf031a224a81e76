"""VITS losses: least-squares GAN, feature matching, KL between posterior and prior, mel L1.

The duration loss comes from the duration predictor itself (:mod:`dvcli.models.vits.duration`).
All losses are computed in float32 whatever precision the networks ran in.
"""

from __future__ import annotations

import torch

from dvcli.models.vits.discriminators import Output


def discriminator_loss(real: list[Output], fake: list[Output]) -> torch.Tensor:
    """LSGAN: ``sum_k E[(1 - D_k(y))^2] + E[D_k(G(z))^2]``."""
    loss = real[0][0].new_zeros((), dtype=torch.float32)
    for (score_real, _), (score_fake, _) in zip(real, fake):
        loss = loss + torch.mean((1 - score_real.float()) ** 2) + torch.mean(score_fake.float() ** 2)
    return loss


def generator_adversarial_loss(fake: list[Output]) -> torch.Tensor:
    """LSGAN: ``sum_k E[(1 - D_k(G(z)))^2]``."""
    loss = fake[0][0].new_zeros((), dtype=torch.float32)
    for score_fake, _ in fake:
        loss = loss + torch.mean((1 - score_fake.float()) ** 2)
    return loss


def feature_matching_loss(real: list[Output], fake: list[Output]) -> torch.Tensor:
    """``2 * sum_k sum_l E|D_k^l(y) - D_k^l(G(z))|`` (the factor 2 is VITS'); real features are targets."""
    loss = fake[0][0].new_zeros((), dtype=torch.float32)
    for (_, features_real), (_, features_fake) in zip(real, fake):
        for fr, ff in zip(features_real, features_fake):
            loss = loss + torch.mean(torch.abs(fr.detach().float() - ff.float()))
    return 2 * loss


def kl_loss(
    z_p: torch.Tensor, logs_q: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor, z_mask: torch.Tensor
) -> torch.Tensor:
    """Single-sample KL estimate ``log q(z|x) - log p(z_p|c)`` with the flow's zero log-determinant.

    Args:
        z_p: ``(B, C, T)`` flow output of the posterior sample.
        logs_q: ``(B, C, T)`` posterior log-scale.
        m_p, logs_p: ``(B, C, T)`` prior mean and log-scale, expanded to frames by the alignment.
        z_mask: ``(B, 1, T)``.

    Returns:
        Scalar, averaged over valid frames (summed over channels).
    """
    z_p, logs_q, m_p, logs_p, z_mask = (t.float() for t in (z_p, logs_q, m_p, logs_p, z_mask))
    kl = logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p) ** 2 * torch.exp(-2.0 * logs_p)
    return torch.sum(kl * z_mask) / torch.sum(z_mask)


def mel_l1_loss(mel_real: torch.Tensor, mel_fake: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of log-mel spectrograms (weighted by ``c_mel`` = 45 in the total)."""
    return torch.mean(torch.abs(mel_real.float() - mel_fake.float()))
