"""Building blocks shared by several VITS parts: masks, segment slicing, channel LayerNorm, WaveNet.

Tensors are channels-first, ``(B, C, T)``, with a ``(B, 1, T)`` float mask that is 1 on valid
frames; every block multiplies its output by the mask so padding never leaks into valid frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def sequence_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, max_length)`` bool, True on positions ``< length``."""
    max_length = int(lengths.max()) if max_length is None else max_length
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the length of an odd-kernel convolution."""
    return (kernel_size * dilation - dilation) // 2


def init_normal(module: nn.Module, std: float = 0.01) -> None:
    """HiFi-GAN's initialisation of convolution weights: N(0, std)."""
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        module.weight.data.normal_(0.0, std)


def slice_segments(x: torch.Tensor, starts: torch.Tensor, size: int) -> torch.Tensor:
    """Cut ``size`` steps from each row of ``x``: ``(B, C, T)`` -> ``(B, C, size)``.

    Rows shorter than ``start + size`` are zero-padded on the right.
    """
    if x.shape[-1] < int(starts.max()) + size:
        x = F.pad(x, (0, int(starts.max()) + size - x.shape[-1]))
    index = starts[:, None, None] + torch.arange(size, device=x.device)[None, None, :]  # (B, 1, size)
    return torch.gather(x, 2, index.expand(x.shape[0], x.shape[1], size))


def random_segment_starts(lengths: torch.Tensor, size: int, rng: torch.Generator | None = None) -> torch.Tensor:
    """Uniform random start per row such that ``start + size <= length`` (0 when the row is shorter).

    Args:
        lengths: ``(B,)`` valid lengths.
        size: segment length.
        rng: source of randomness (for exactly reproducible steps); None = global RNG.

    Returns:
        ``(B,)`` long starts.
    """
    choices = torch.clamp(lengths - size + 1, min=1)
    device = lengths.device if rng is None else rng.device
    draw = torch.rand(lengths.shape, generator=rng, device=device).to(lengths.device)
    return (draw * choices).long()


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, T)`` tensor."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.channels = channels  # a Python int: the ONNX exporter needs a constant normalised shape
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.transpose(1, -1), (self.channels,), self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


def gated_activation(x: torch.Tensor, n_channels: int) -> torch.Tensor:
    """WaveNet's gate: ``tanh(a) * sigmoid(b)`` for ``x = [a; b]`` along channels."""
    return torch.tanh(x[:, :n_channels]) * torch.sigmoid(x[:, n_channels:])


class WaveNet(nn.Module):
    """Non-causal WaveNet stack with a global conditioning vector (VITS' ``WN``).

    Each layer: dilated conv -> (+ speaker bias) -> tanh*sigmoid gate -> 1x1 conv to a residual half
    (added to the running input) and a skip half (summed over layers; the last layer is skip-only).

    Args:
        channels: hidden width.
        kernel_size: odd kernel of the dilated convolutions.
        dilation_rate: dilation grows as ``dilation_rate ** layer``.
        n_layers: depth.
        gin_channels: size of the conditioning vector ``g``; 0 = unconditioned.
        dropout: dropout on the gated activations.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        assert kernel_size % 2 == 1, "WaveNet kernels must be odd to keep the length"
        self.channels = channels
        self.n_layers = n_layers
        self.dropout = nn.Dropout(dropout)
        # One 1x1 conv computes the speaker bias of every layer at once.
        self.cond_layer = weight_norm(nn.Conv1d(gin_channels, 2 * channels * n_layers, 1)) if gin_channels else None
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = dilation_rate**i
            padding = same_padding(kernel_size, dilation)
            conv = nn.Conv1d(channels, 2 * channels, kernel_size, dilation=dilation, padding=padding)
            self.in_layers.append(weight_norm(conv))
            out = 2 * channels if i < n_layers - 1 else channels  # last layer: skip output only
            self.res_skip_layers.append(weight_norm(nn.Conv1d(channels, out, 1)))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, T)`` -> ``(B, C, T)`` (masked); ``g`` is ``(B, gin, 1)`` or None."""
        output = torch.zeros_like(x)
        cond = self.cond_layer(g) if (g is not None and self.cond_layer is not None) else None  # (B, 2CL, 1)
        width = 2 * self.channels
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            x_in = in_layer(x)
            if cond is not None:
                x_in = x_in + cond[:, i * width : (i + 1) * width]
            acts = self.dropout(gated_activation(x_in, self.channels))
            res_skip = res_skip_layer(acts)
            if i < self.n_layers - 1:
                x = (x + res_skip[:, : self.channels]) * x_mask
                output = output + res_skip[:, self.channels :]
            else:
                output = output + res_skip
        return output * x_mask
