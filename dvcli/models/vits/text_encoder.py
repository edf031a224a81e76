"""The prior encoder over unit tokens: embedding -> transformer -> (mean, log-scale) of p(z | c).

Units play the part VITS' phonemes play; the vocabulary is the unit ids, a padding id and,
with ``add_blank``, a blank id interleaved between units (:func:`intersperse_blank`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dvcli.models.vits.attention import TransformerEncoder
from dvcli.models.vits.modules import sequence_mask


def intersperse_blank(
    units: torch.Tensor, lengths: torch.Tensor, blank_id: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Insert ``blank_id`` before, between and after the units of each row (VITS' ``add_blank``).

    Args:
        units: ``(B, N)`` long token ids, padded with anything past ``lengths``.
        lengths: ``(B,)`` valid lengths.

    Returns:
        ``(B, 2N + 1)`` ids padded with ``pad_id`` and the new lengths ``2 * lengths + 1``.
    """
    b, n = units.shape
    out = torch.full((b, 2 * n + 1), blank_id, dtype=units.dtype, device=units.device)
    out[:, 1::2] = units
    new_lengths = 2 * lengths + 1
    out[~sequence_mask(new_lengths, 2 * n + 1)] = pad_id
    return out, new_lengths


class TextEncoder(nn.Module):
    """Unit ids -> hidden states ``h_text`` and the prior's per-token mean ``mu_theta`` and log-scale.

    Args:
        vocab_size: embedding rows (units + padding [+ blank]).
        pad_id: the padding id (its embedding stays zero).
        out_channels: channels of z (``inter_channels``).
        channels, filter_channels, n_heads, n_layers, kernel_size, dropout, window: transformer settings.
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int,
        out_channels: int,
        channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        dropout: float,
        window: int = 4,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels
        self.emb = nn.Embedding(vocab_size, channels, padding_idx=pad_id)
        nn.init.normal_(self.emb.weight, 0.0, channels**-0.5)
        with torch.no_grad():
            self.emb.weight[pad_id].zero_()
        self.encoder = TransformerEncoder(channels, filter_channels, n_heads, n_layers, kernel_size, dropout, window)
        self.proj = nn.Conv1d(channels, 2 * out_channels, 1)

    def forward(
        self, units: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode a padded batch of unit sequences.

        Args:
            units: ``(B, N)`` long ids.
            lengths: ``(B,)`` valid lengths.

        Returns:
            ``h`` ``(B, channels, N)``, ``m_p`` and ``logs_p`` ``(B, out_channels, N)``, mask ``(B, 1, N)``.
        """
        x = self.emb(units) * math.sqrt(self.channels)  # (B, N, C)
        x = x.transpose(1, 2)  # (B, C, N)
        x_mask = sequence_mask(lengths, units.shape[1]).unsqueeze(1).to(x.dtype)  # (B, 1, N)
        h = self.encoder(x * x_mask, x_mask)
        stats = self.proj(h) * x_mask
        m_p, logs_p = torch.split(stats, self.out_channels, dim=1)
        return h, m_p, logs_p, x_mask
