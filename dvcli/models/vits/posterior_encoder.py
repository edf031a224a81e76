"""The posterior encoder q(z | x_lin): linear spectrogram -> WaveNet -> a sample of z (VITS' ``enc_q``)."""

from __future__ import annotations

import torch
from torch import nn

from dvcli.models.vits.modules import WaveNet, sequence_mask


class PosteriorEncoder(nn.Module):
    """Linear spectrogram frames -> ``z ~ N(m_q, exp(logs_q))``, conditioned on the speaker.

    Args:
        in_channels: spectrogram bins (``n_fft // 2 + 1``).
        out_channels: channels of z.
        channels: WaveNet width.
        kernel_size, dilation_rate, n_layers: WaveNet settings.
        gin_channels: speaker conditioning width (0 = none).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, channels, 1)
        self.enc = WaveNet(channels, kernel_size, dilation_rate, n_layers, gin_channels)
        self.proj = nn.Conv1d(channels, 2 * out_channels, 1)

    def forward(
        self,
        spec: torch.Tensor,
        lengths: torch.Tensor,
        g: torch.Tensor | None = None,
        rng: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample z with the reparameterisation trick.

        Args:
            spec: ``(B, in_channels, T)`` linear magnitudes.
            lengths: ``(B,)`` valid frames.
            g: ``(B, gin, 1)`` speaker conditioning or None.
            rng: source of the sampling noise (None = global RNG).

        Returns:
            ``z``, ``m_q``, ``logs_q`` ``(B, out_channels, T)`` and the mask ``(B, 1, T)``.
        """
        y_mask = sequence_mask(lengths, spec.shape[2]).unsqueeze(1).to(spec.dtype)
        h = self.enc(self.pre(spec) * y_mask, y_mask, g)
        stats = self.proj(h) * y_mask
        m_q, logs_q = torch.split(stats, self.out_channels, dim=1)
        noise = torch.randn(m_q.shape, generator=rng, device=m_q.device, dtype=m_q.dtype)
        z = (m_q + noise * torch.exp(logs_q)) * y_mask
        return z, m_q, logs_q, y_mask
