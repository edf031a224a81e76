"""Transformer encoder with windowed relative-position self-attention (Shaw et al., 2018), as in VITS.

Each head adds two learned terms for the relative distance ``d = j - i`` between query ``i`` and
key ``j``, for ``|d| <= window`` (zero beyond): a key embedding to the logits and a value embedding to
the output. The band of ``2 * window + 1`` distances is moved to and from the ``(T, T)`` attention
matrix with a pad-and-reshape skew, so the cost is O(T * window) per head instead of O(T^2) for the
relative terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dvcli.models.vits.modules import ChannelLayerNorm


def band_to_absolute(rel: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, 2w+1)`` scores by relative distance -> ``(B, H, T, T)``; ``out[i, j] = rel[i, j - i + w]``.

    Entries with ``|j - i| > w`` are zero.
    """
    b, h, t, width = rel.shape
    w = (width - 1) // 2
    # Rows of width t+2w+1 re-read with width t+2w shift row i right by i.
    x = F.pad(rel, (0, t)).reshape(b, h, t * (t + width))
    x = x[:, :, : t * (t + width - 1)].reshape(b, h, t, t + width - 1)
    return x[..., w : w + t]


def absolute_to_band(p: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, T, T)`` -> ``(B, H, T, 2w+1)`` with ``out[i, m] = p[i, i + m - w]`` (zero outside the matrix)."""
    b, h, t, _ = p.shape
    width = 2 * window + 1
    # Rows of width t+2w+1 re-read with width t+2w+2 shift row i left by i.
    x = F.pad(p, (window, window + 1)).reshape(b, h, t * (t + width))
    x = F.pad(x, (0, t)).reshape(b, h, t, t + width + 1)
    return x[..., :width]


class RelativeMultiHeadAttention(nn.Module):
    """Multi-head self-attention with windowed relative-position key and value embeddings.

    Args:
        channels: model width (divisible by ``n_heads``).
        n_heads: heads.
        window: relative distances ``-window .. window`` get embeddings (shared by all heads).
        dropout: dropout on the attention weights.
    """

    def __init__(self, channels: int, n_heads: int, window: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_channels = channels // n_heads
        self.window = window
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)
        scale = self.head_channels**-0.5
        # Index m holds relative distance m - window.
        self.emb_rel_k = nn.Parameter(torch.randn(1, 2 * window + 1, self.head_channels) * scale)
        self.emb_rel_v = nn.Parameter(torch.randn(1, 2 * window + 1, self.head_channels) * scale)
        for conv in (self.conv_q, self.conv_k, self.conv_v):
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """Self-attention over ``x``.

        Args:
            x: ``(B, C, T)``.
            attn_mask: ``(B, 1, T, T)`` bool, True where query ``i`` may attend to key ``j``.

        Returns:
            ``(B, C, T)``.
        """
        b, c, t = x.shape
        heads, hc = self.n_heads, self.head_channels

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, heads, hc, t).transpose(2, 3)  # (B, H, T, hc)

        q = split(self.conv_q(x)) * hc**-0.5
        k, v = split(self.conv_k(x)), split(self.conv_v(x))
        scores = torch.matmul(q, k.transpose(-2, -1))  # (B, H, T, T)
        rel_logits = torch.matmul(q, self.emb_rel_k.transpose(-2, -1))  # (B, H, T, 2w+1)
        scores = scores + band_to_absolute(rel_logits)
        scores = scores.masked_fill(~attn_mask, -1e4)
        weights = self.dropout(torch.softmax(scores, dim=-1))  # (B, H, T, T)
        out = torch.matmul(weights, v) + torch.matmul(absolute_to_band(weights, self.window), self.emb_rel_v)
        out = out.transpose(2, 3).reshape(b, c, t)  # (B, C, T)
        return self.conv_o(out)


class ConvFeedForward(nn.Module):
    """Position-wise feed-forward made of two convolutions (kernel > 1 mixes neighbouring tokens)."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size, padding=pad)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size, padding=pad)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> ``(B, C, T)``; inputs are masked before each convolution."""
        x = self.dropout(torch.relu(self.conv_1(x * x_mask)))
        return self.conv_2(x * x_mask) * x_mask


class TransformerEncoder(nn.Module):
    """Post-norm transformer layers: ``x = LN(x + attn(x)); x = LN(x + ffn(x))``."""

    def __init__(
        self,
        channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        dropout: float = 0.0,
        window: int = 4,
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.attn_layers = nn.ModuleList(
            RelativeMultiHeadAttention(channels, n_heads, window, dropout) for _ in range(n_layers)
        )
        self.norm_layers_1 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(
            ConvFeedForward(channels, filter_channels, kernel_size, dropout) for _ in range(n_layers)
        )
        self.norm_layers_2 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` with ``(B, 1, T)`` mask -> ``(B, C, T)``; valid outputs ignore padded positions."""
        attn_mask = (x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)).bool()  # (B, 1, T, T)
        x = x * x_mask
        for attn, norm_1, ffn, norm_2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2):
            x = norm_1(x + self.dropout(attn(x, attn_mask)))
            x = norm_2(x + self.dropout(ffn(x, x_mask)))
        return x * x_mask
