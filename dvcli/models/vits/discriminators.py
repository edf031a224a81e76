"""Discriminators: multi-period (HiFi-GAN's MPD, periods 2/3/5/7/11) plus scale discriminators (MSD).

VITS uses one scale discriminator on the raw waveform next to the period ones; HiFi-GAN uses three
(raw, x2 and x4 average-pooled): ``discriminator_scales`` picks. Each sub-discriminator returns a
score map and its intermediate feature maps (for the feature-matching loss).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from dvcli.models.vits.config import VitsConfig

LRELU_SLOPE = 0.1
Output = tuple[torch.Tensor, list[torch.Tensor]]  # (flattened scores (B, S), feature maps)


def _conv_stack(convs: nn.ModuleList, conv_post: nn.Module, x: torch.Tensor) -> Output:
    """Leaky-ReLU convolutions then the score layer; every layer's output is a feature map."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        features.append(x)
    x = conv_post(x)
    features.append(x)
    return torch.flatten(x, 1, -1), features


class PeriodDiscriminator(nn.Module):
    """Folds the waveform into ``(T / period, period)`` and applies 2-D convolutions along time."""

    def __init__(self, period: int, channels: int = 1024, kernel_size: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.period = period
        pad = (kernel_size - 1) // 2
        widths = [1, channels // 32, channels // 8, channels // 2, channels]  # 32, 128, 512, 1024 in HiFi-GAN
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (kernel_size, 1), (stride, 1), padding=(pad, 0)))
            for c_in, c_out in itertools.pairwise(widths)
        )
        self.convs.append(weight_norm(nn.Conv2d(channels, channels, (kernel_size, 1), 1, padding=(pad, 0))))
        self.conv_post = weight_norm(nn.Conv2d(channels, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> Output:
        """``(B, 1, T)`` -> scores ``(B, S)`` and feature maps."""
        b, c, t = wav.shape
        if t % self.period:
            wav = F.pad(wav, (0, self.period - t % self.period), mode="reflect")
        x = wav.view(b, c, -1, self.period)  # (B, 1, T / period, period)
        return _conv_stack(self.convs, self.conv_post, x)


class ScaleDiscriminator(nn.Module):
    """Strided grouped 1-D convolutions over the waveform (MelGAN / HiFi-GAN's scale discriminator)."""

    def __init__(self, channels: int = 1024) -> None:
        super().__init__()
        c = channels
        # (in, out, kernel, stride); at c = 1024: 1-16-64-256-1024-1024-1024 as in HiFi-GAN
        layers = [
            (1, c // 64, 15, 1),
            (c // 64, c // 16, 41, 4),
            (c // 16, c // 4, 41, 4),
            (c // 4, c, 41, 4),
            (c, c, 41, 4),
            (c, c, 5, 1),
        ]
        self.convs = nn.ModuleList(
            # The strided layers are grouped with 4 input channels per group (HiFi-GAN's groups 4/16/64/256).
            weight_norm(nn.Conv1d(c_in, c_out, k, s, groups=max(1, c_in // 4) if k == 41 else 1, padding=(k - 1) // 2))
            for c_in, c_out, k, s in layers
        )
        self.conv_post = weight_norm(nn.Conv1d(c, 1, 3, 1, padding=1))

    def forward(self, wav: torch.Tensor) -> Output:
        """``(B, 1, T)`` -> scores ``(B, S)`` and feature maps."""
        return _conv_stack(self.convs, self.conv_post, wav)


class VitsDiscriminator(nn.Module):
    """Scale discriminators (on the waveform average-pooled by 1, 2, 4, ...) + one per period.

    Args:
        periods: periods of the period discriminators.
        scales: number of scale discriminators (VITS: 1).
        channels: widest layer of each sub-discriminator (1024 in HiFi-GAN / VITS).
    """

    def __init__(self, periods: list[int], scales: int = 1, channels: int = 1024) -> None:
        super().__init__()
        self.scales = nn.ModuleList(ScaleDiscriminator(channels) for _ in range(scales))
        self.periods = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    @classmethod
    def from_config(cls, config: VitsConfig) -> VitsDiscriminator:
        return cls(config.discriminator_periods, config.discriminator_scales, config.discriminator_channels)

    def forward(self, wav: torch.Tensor) -> list[Output]:
        """Score a batch of waveforms with every sub-discriminator.

        Args:
            wav: ``(B, 1, T)`` (real and generated examples may share one batch).

        Returns:
            One ``(scores (B, S_k), feature maps)`` per sub-discriminator.
        """
        outputs = []
        x = wav
        for i, disc in enumerate(self.scales):
            if i > 0:
                x = F.avg_pool1d(x, 4, 2, padding=2)
            outputs.append(disc(x))
        outputs.extend(disc(wav) for disc in self.periods)
        return outputs
