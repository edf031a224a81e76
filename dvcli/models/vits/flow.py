"""The flow f_theta between the posterior latent z and the prior's space z_p: residual couplings + flips.

Each coupling keeps the first half of the channels and shifts the second half by a WaveNet of the
first half (mean-only, so volume-preserving, as in VITS); a flip between couplings swaps which half
moves. ``reverse=True`` runs the exact inverse (used at inference: z_p -> z).
"""

from __future__ import annotations

import torch
from torch import nn

from dvcli.models.vits.modules import WaveNet


class ResidualCoupling(nn.Module):
    """``x1 <- x1 + m(x0, g)`` (mean-only affine coupling; log-determinant 0).

    Args:
        channels: channels of z (even).
        hidden_channels, kernel_size, dilation_rate, n_layers: the WaveNet computing ``m``.
        gin_channels: speaker conditioning width.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden_channels, 1)
        self.enc = WaveNet(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels)
        self.post = nn.Conv1d(hidden_channels, self.half, 1)
        # Start as the identity map, which keeps early training stable.
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False
    ) -> torch.Tensor:
        """``(B, C, T)`` -> ``(B, C, T)``; ``reverse`` undoes the forward map exactly."""
        x0, x1 = torch.split(x, self.half, dim=1)
        h = self.enc(self.pre(x0) * x_mask, x_mask, g)
        m = self.post(h) * x_mask
        x1 = (x1 + m) * x_mask if not reverse else (x1 - m) * x_mask
        return torch.cat([x0, x1], dim=1)


class ResidualCouplingFlow(nn.Module):
    """``n_couplings`` x (coupling, channel flip): z -> z_p forward, z_p -> z with ``reverse=True``."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        n_couplings: int = 4,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.couplings = nn.ModuleList(
            ResidualCoupling(channels, hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels)
            for _ in range(n_couplings)
        )

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False
    ) -> torch.Tensor:
        """``(B, C, T)`` with mask ``(B, 1, T)`` and conditioning ``(B, gin, 1)`` -> ``(B, C, T)``."""
        if not reverse:
            for coupling in self.couplings:
                x = torch.flip(coupling(x, x_mask, g), dims=[1])
        else:
            for coupling in reversed(self.couplings):
                x = coupling(torch.flip(x, dims=[1]), x_mask, g, reverse=True)
        return x
