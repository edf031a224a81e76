"""Duration predictors: VITS' stochastic one (a flow over durations) and a deterministic one.

Both read the text encoder's hidden states (detached, as in VITS: the duration loss must not
shape the prior) and the speaker conditioning, and expose the same two calls:

- ``nll(h, mask, durations, g)``: per-example training loss (summed over tokens), ``(B,)``;
- ``log_durations(h, mask, g, noise_scale)``: predicted ``log d`` per token, ``(B, 1, N)``.

The stochastic predictor models ``d`` with variational dequantisation: ``u ~ q(u | d, h)`` in
``[0, 1)`` makes ``d - u`` continuous, and a flow of spline couplings maps ``(log(d - u), nu)`` to
Gaussian noise. Its loss is the variational bound ``-log p(d | h) <= E_q[log q - log p]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dvcli.models.vits.modules import ChannelLayerNorm
from dvcli.models.vits.splines import rational_quadratic_spline

_LOG_2PI = math.log(2 * math.pi)


class DilatedDepthSeparableConv(nn.Module):
    """Residual stack of dilated depthwise + pointwise convolutions (VITS' ``DDSConv``).

    Layer ``i`` has dilation ``kernel_size ** i``, so three layers of kernel 3 see 27 tokens.
    """

    def __init__(self, channels: int, kernel_size: int, n_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.convs_sep = nn.ModuleList()
        self.convs_1x1 = nn.ModuleList()
        self.norms_1 = nn.ModuleList()
        self.norms_2 = nn.ModuleList()
        for i in range(n_layers):
            dilation = kernel_size**i
            padding = (kernel_size * dilation - dilation) // 2
            self.convs_sep.append(
                nn.Conv1d(channels, channels, kernel_size, groups=channels, dilation=dilation, padding=padding)
            )
            self.convs_1x1.append(nn.Conv1d(channels, channels, 1))
            self.norms_1.append(ChannelLayerNorm(channels))
            self.norms_2.append(ChannelLayerNorm(channels))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, N)`` -> ``(B, C, N)``; ``g`` (same shape or broadcastable) is added first."""
        if g is not None:
            x = x + g
        for sep, pointwise, norm_1, norm_2 in zip(self.convs_sep, self.convs_1x1, self.norms_1, self.norms_2):
            y = F.gelu(norm_1(sep(x * x_mask)))
            y = F.gelu(norm_2(pointwise(y)))
            x = x + self.dropout(y)
        return x * x_mask


class ElementwiseAffine(nn.Module):
    """``y = m + exp(logs) * x`` per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.m = nn.Parameter(torch.zeros(channels, 1))
        self.logs = nn.Parameter(torch.zeros(channels, 1))

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(y, logdet)``; ``logdet`` is ``(B,)`` (zero in reverse, where it is unused)."""
        if reverse:
            return (x - self.m) * torch.exp(-self.logs) * x_mask, x.new_zeros(x.shape[0])
        y = (self.m + torch.exp(self.logs) * x) * x_mask
        return y, torch.sum(self.logs * x_mask, dim=[1, 2])


class LogFlow(nn.Module):
    """``y = log(x)`` (durations are positive; the flow works in the log domain)."""

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if reverse:
            return torch.exp(x) * x_mask, x.new_zeros(x.shape[0])
        y = torch.log(torch.clamp_min(x, 1e-5)) * x_mask
        return y, torch.sum(-y, dim=[1, 2])


class Flip(nn.Module):
    """Swap the two channels so the next coupling transforms the other one."""

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.flip(x, dims=[1]), x.new_zeros(x.shape[0])


class SplineCoupling(nn.Module):
    """Coupling over 2 channels: channel 1 goes through a spline whose knots depend on channel 0 and ``g``.

    (VITS' ``ConvFlow``.) The knot network's last layer starts at zero, i.e. at the identity map.
    """

    def __init__(self, channels: int, kernel_size: int, n_layers: int, n_bins: int = 10, bound: float = 5.0) -> None:
        super().__init__()
        self.channels = channels
        self.n_bins = n_bins
        self.bound = bound
        self.pre = nn.Conv1d(1, channels, 1)
        self.convs = DilatedDepthSeparableConv(channels, kernel_size, n_layers, dropout=0.0)
        self.proj = nn.Conv1d(channels, 3 * n_bins - 1, 1)  # widths, heights, inner derivatives
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 2, N)`` -> ``(B, 2, N)`` and ``logdet`` ``(B,)``."""
        x0, x1 = x[:, :1], x[:, 1:]
        h = self.convs(self.pre(x0), x_mask, g)
        params = (self.proj(h) * x_mask).transpose(1, 2)  # (B, N, 3K - 1)
        k, scale = self.n_bins, math.sqrt(self.channels)
        widths, heights, derivatives = params[..., :k] / scale, params[..., k : 2 * k] / scale, params[..., 2 * k :]
        y1, logabsdet = rational_quadratic_spline(
            x1[:, 0], widths, heights, derivatives, inverse=reverse, bound=self.bound
        )  # (B, N)
        y = torch.cat([x0, y1.unsqueeze(1)], dim=1) * x_mask
        return y, torch.sum(logabsdet * x_mask[:, 0], dim=1)


def _run(flows: list[nn.Module], z: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None, reverse: bool):
    logdet = z.new_zeros(z.shape[0])
    for flow in flows:
        z, ld = flow(z, mask, g, reverse)
        logdet = logdet + ld
    return z, logdet


class StochasticDurationPredictor(nn.Module):
    """VITS' flow-based duration model p(d | h_text, speaker).

    Args:
        in_channels: text encoder width.
        channels: width of the predictor.
        kernel_size: kernel of its convolutions.
        dropout: dropout in the conditioning stacks.
        n_flows: spline couplings (main flow and posterior flow each).
        gin_channels: speaker conditioning width (0 = none).
    """

    def __init__(
        self, in_channels: int, channels: int, kernel_size: int, dropout: float, n_flows: int = 4, gin_channels: int = 0
    ) -> None:
        super().__init__()
        # Main flow: (log(d - u), nu) -> N(0, I), conditioned on the text (and speaker).
        self.log_flow = LogFlow()
        self.flows = nn.ModuleList([ElementwiseAffine(2)])
        for _ in range(n_flows):
            self.flows.extend([SplineCoupling(channels, kernel_size, n_layers=3), Flip()])
        # Posterior flow: noise -> (u, nu) given the observed durations (variational dequantisation).
        self.post_pre = nn.Conv1d(1, channels, 1)
        self.post_proj = nn.Conv1d(channels, channels, 1)
        self.post_convs = DilatedDepthSeparableConv(channels, kernel_size, n_layers=3, dropout=dropout)
        self.post_flows = nn.ModuleList([ElementwiseAffine(2)])
        for _ in range(n_flows):
            self.post_flows.extend([SplineCoupling(channels, kernel_size, n_layers=3), Flip()])
        # Conditioning on the text hidden states and the speaker.
        self.pre = nn.Conv1d(in_channels, channels, 1)
        self.proj = nn.Conv1d(channels, channels, 1)
        self.convs = DilatedDepthSeparableConv(channels, kernel_size, n_layers=3, dropout=dropout)
        self.cond = nn.Conv1d(gin_channels, channels, 1) if gin_channels else None

    def _condition(self, h: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        x = self.pre(h.detach())
        if g is not None and self.cond is not None:
            x = x + self.cond(g.detach())
        return self.proj(self.convs(x, x_mask)) * x_mask

    def nll(
        self,
        h: torch.Tensor,
        x_mask: torch.Tensor,
        durations: torch.Tensor,
        g: torch.Tensor | None = None,
        rng: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Variational bound on ``-log p(d)``, summed over tokens.

        Args:
            h: ``(B, C, N)`` text hidden states. x_mask: ``(B, 1, N)``.
            durations: ``(B, 1, N)`` frames per token (from the alignment).
            g: ``(B, gin, 1)`` or None. rng: noise source (None = global RNG).

        Returns:
            ``(B,)``.
        """
        x = self._condition(h, x_mask, g)
        h_w = self.post_proj(self.post_convs(self.post_pre(durations), x_mask)) * x_mask
        e_q = torch.randn((h.shape[0], 2, h.shape[2]), generator=rng, device=h.device, dtype=h.dtype) * x_mask
        z_q, logdet_q = _run(list(self.post_flows), e_q, x_mask, x + h_w, reverse=False)
        z_u, z1 = z_q[:, :1], z_q[:, 1:]
        u = torch.sigmoid(z_u) * x_mask  # dequantisation noise in (0, 1)
        z0 = (durations - u) * x_mask
        logdet_q = logdet_q + torch.sum((F.logsigmoid(z_u) + F.logsigmoid(-z_u)) * x_mask, dim=[1, 2])
        log_q = torch.sum(-0.5 * (_LOG_2PI + e_q.pow(2)) * x_mask, dim=[1, 2]) - logdet_q

        z0, logdet = self.log_flow(z0, x_mask)
        z, logdet_flows = _run(list(self.flows), torch.cat([z0, z1], dim=1), x_mask, x, reverse=False)
        nll = torch.sum(0.5 * (_LOG_2PI + z.pow(2)) * x_mask, dim=[1, 2]) - logdet - logdet_flows
        return nll + log_q

    def reverse_flows(self) -> list[nn.Module]:
        """The main flow in inverse order, minus the first coupling: it only transforms channel 1 (nu),
        which sampling discards, so skipping it changes nothing in the predicted durations."""
        flows = list(reversed(self.flows))
        return flows[:-2] + [flows[-1]]

    def log_durations(
        self,
        h: torch.Tensor,
        x_mask: torch.Tensor,
        g: torch.Tensor | None = None,
        noise_scale: float = 1.0,
        rng: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample ``log d`` per token: ``(B, 1, N)`` (masked).

        ``noise`` ``(B, 2, N)``, when given, replaces the standard-normal draw (still scaled by
        ``noise_scale``): exported inference graphs take their randomness as an input.
        """
        x = self._condition(h, x_mask, g)
        if noise is None:
            noise = torch.randn((h.shape[0], 2, h.shape[2]), generator=rng, device=h.device, dtype=h.dtype)
        z, _ = _run(self.reverse_flows(), noise * noise_scale, x_mask, x, reverse=True)
        return z[:, :1] * x_mask


class DurationPredictor(nn.Module):
    """Deterministic duration predictor (two conv layers), trained with MSE on ``log d``."""

    def __init__(
        self, in_channels: int, channels: int, kernel_size: int, dropout: float, gin_channels: int = 0
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.conv_1 = nn.Conv1d(in_channels, channels, kernel_size, padding=kernel_size // 2)
        self.norm_1 = ChannelLayerNorm(channels)
        self.conv_2 = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.norm_2 = ChannelLayerNorm(channels)
        self.proj = nn.Conv1d(channels, 1, 1)
        self.cond = nn.Conv1d(gin_channels, in_channels, 1) if gin_channels else None

    def log_durations(
        self,
        h: torch.Tensor,
        x_mask: torch.Tensor,
        g: torch.Tensor | None = None,
        noise_scale: float = 1.0,
        rng: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted ``log d``: ``(B, 1, N)``. ``noise_scale``, ``rng`` and ``noise`` are accepted and ignored."""
        x = h.detach()
        if g is not None and self.cond is not None:
            x = x + self.cond(g.detach())
        x = self.dropout(self.norm_1(torch.relu(self.conv_1(x * x_mask))))
        x = self.dropout(self.norm_2(torch.relu(self.conv_2(x * x_mask))))
        return self.proj(x * x_mask) * x_mask

    def nll(
        self,
        h: torch.Tensor,
        x_mask: torch.Tensor,
        durations: torch.Tensor,
        g: torch.Tensor | None = None,
        rng: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Squared error of ``log d`` summed over tokens: ``(B,)``."""
        target = torch.log(durations + 1e-6) * x_mask
        return torch.sum((self.log_durations(h, x_mask, g) - target).pow(2), dim=[1, 2])
