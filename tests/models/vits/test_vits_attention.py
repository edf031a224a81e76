"""Relative-position attention against a brute-force loop, and padding invariance."""

from __future__ import annotations

import torch

from dvcli.models.vits.attention import (
    RelativeMultiHeadAttention,
    TransformerEncoder,
    absolute_to_band,
    band_to_absolute,
)


def test_band_skews_match_index_formulas() -> None:
    torch.manual_seed(0)
    for t, w in [(7, 2), (3, 4), (1, 4), (12, 4)]:
        rel = torch.randn(2, 3, t, 2 * w + 1)
        absolute = band_to_absolute(rel)
        p = torch.randn(2, 3, t, t)
        band = absolute_to_band(p, w)
        for i in range(t):
            for j in range(t):
                d = j - i
                expected = rel[:, :, i, d + w] if abs(d) <= w else torch.zeros(2, 3)
                torch.testing.assert_close(absolute[:, :, i, j], expected)
            for m in range(2 * w + 1):
                j = i + m - w
                expected = p[:, :, i, j] if 0 <= j < t else torch.zeros(2, 3)
                torch.testing.assert_close(band[:, :, i, m], expected)


def brute_force_attention(attn: RelativeMultiHeadAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Shaw et al. relative attention written as loops over query and key positions."""
    b, c, t = x.shape
    h, d, w = attn.n_heads, attn.head_channels, attn.window
    q = attn.conv_q(x).view(b, h, d, t)
    k = attn.conv_k(x).view(b, h, d, t)
    v = attn.conv_v(x).view(b, h, d, t)
    rel_k, rel_v = attn.emb_rel_k[0], attn.emb_rel_v[0]  # (2w+1, d)
    out = torch.zeros(b, h, d, t)
    for i in range(t):
        logits = torch.zeros(b, h, t)
        for j in range(t):
            logit = (q[:, :, :, i] * k[:, :, :, j]).sum(-1) / d**0.5
            if abs(j - i) <= w:
                logit = logit + (q[:, :, :, i] * rel_k[j - i + w]).sum(-1) / d**0.5
            logits[:, :, j] = logit.masked_fill(~mask[:, 0, i, j][:, None], -1e4)
        p = torch.softmax(logits, dim=-1)
        for j in range(t):
            value = v[:, :, :, j] + (rel_v[j - i + w] if abs(j - i) <= w else 0)
            out[:, :, :, i] += p[:, :, j, None] * value
    return attn.conv_o(out.reshape(b, c, t))


def test_relative_attention_matches_brute_force() -> None:
    torch.manual_seed(0)
    attn = RelativeMultiHeadAttention(channels=8, n_heads=2, window=2).eval()
    x = torch.randn(2, 8, 9)
    lengths = torch.tensor([9, 6])
    valid = torch.arange(9)[None] < lengths[:, None]
    mask = valid[:, None, :, None] & valid[:, None, None, :]
    torch.testing.assert_close(attn(x, mask), brute_force_attention(attn, x, mask), atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_valid_outputs() -> None:
    torch.manual_seed(0)
    encoder = TransformerEncoder(16, 32, n_heads=2, n_layers=3, kernel_size=3, dropout=0.1, window=4).eval()
    x = torch.randn(1, 16, 10)
    alone = encoder(x, torch.ones(1, 1, 10))
    padded = torch.cat([x, 100 * torch.randn(1, 16, 7)], dim=2)  # garbage in the padding
    mask = torch.cat([torch.ones(1, 1, 10), torch.zeros(1, 1, 7)], dim=2)
    out = encoder(padded, mask)
    torch.testing.assert_close(out[:, :, :10], alone, atol=1e-5, rtol=1e-5)
    assert torch.all(out[:, :, 10:] == 0)
