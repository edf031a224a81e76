"""The VITS generator: units + speaker vector -> waveform (VITS' ``SynthesizerTrn``).

Training (``forward``)::

    spec --posterior_encoder--> z ~ q(z|x) --flow--> z_p           c = units --text_encoder--> (m_p, logs_p)
    alignment A = MAS(log N(z_p; m_p, logs_p))     duration loss on sum_y A
    waveform slice = decoder(random slice of z)    KL(q(z|x) || p(z_p|c, A)) on all frames

Inference (``infer``): durations from the duration predictor expand (m_p, logs_p) to frames,
``z_p ~ N(m_p, noise_scale * exp(logs_p))``, ``z = flow^-1(z_p)``, waveform = decoder(z).

The speaker vector (a CAM++ embedding in DINO-VITS) goes through ``speaker_proj`` to the
conditioning ``g`` that enters the posterior encoder, every flow coupling, the duration predictor and
the decoder. Gradients flow back into the vector, so a speaker encoder can train jointly.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from dvcli.models.vits.config import VitsConfig
from dvcli.models.vits.decoder import HifiGanGenerator
from dvcli.models.vits.duration import DurationPredictor, StochasticDurationPredictor
from dvcli.models.vits.flow import ResidualCouplingFlow
from dvcli.models.vits.modules import random_segment_starts, sequence_mask, slice_segments
from dvcli.models.vits.monotonic_align import maximum_path
from dvcli.models.vits.posterior_encoder import PosteriorEncoder
from dvcli.models.vits.text_encoder import TextEncoder, intersperse_blank

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclasses.dataclass
class VitsOutput:
    """Everything the training losses need from one generator forward pass.

    ``N`` = tokens, ``T`` = spectrogram frames, ``S`` = ``segment_frames``.
    """

    wav_slice: torch.Tensor  # (B, 1, S * hop) decoded waveform of the random slice
    ids_slice: torch.Tensor  # (B,) first frame of each slice
    attn: torch.Tensor  # (B, T, N) 0/1 monotonic alignment of frames to tokens
    duration_loss: torch.Tensor  # () duration predictor loss (already normalised by token count)
    x_mask: torch.Tensor  # (B, 1, N) token mask
    y_mask: torch.Tensor  # (B, 1, T) frame mask
    z: torch.Tensor  # (B, C, T) posterior sample
    z_p: torch.Tensor  # (B, C, T) flow(z)
    m_p: torch.Tensor  # (B, C, T) prior mean expanded to frames
    logs_p: torch.Tensor  # (B, C, T) prior log-scale expanded to frames
    m_q: torch.Tensor  # (B, C, T) posterior mean
    logs_q: torch.Tensor  # (B, C, T) posterior log-scale


def alignment_scores(z_p: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor) -> torch.Tensor:
    """``log N(z_p[:, :, y]; m_p[:, :, x], exp(logs_p[:, :, x]))`` summed over channels: ``(B, T, N)``.

    Expanded as four matrix products so no ``(B, C, T, N)`` tensor is formed.
    """
    inv_var = torch.exp(-2 * logs_p)  # (B, C, N)
    const = torch.sum(-_HALF_LOG_2PI - logs_p, dim=1, keepdim=True)  # (B, 1, N)
    quad_z = torch.matmul(-0.5 * z_p.transpose(1, 2).pow(2), inv_var)  # (B, T, N)
    cross = torch.matmul(z_p.transpose(1, 2), m_p * inv_var)  # (B, T, N)
    quad_m = torch.sum(-0.5 * m_p.pow(2) * inv_var, dim=1, keepdim=True)  # (B, 1, N)
    return quad_z + cross + const + quad_m


def durations_to_path(durations: torch.Tensor, x_mask: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
    """Integer frame counts per token -> hard alignment ``(B, T, N)``; token ``x`` owns frames
    ``[cum[x-1], cum[x])``.

    Args:
        durations: ``(B, N)`` non-negative whole numbers (as floats).
        x_mask: ``(B, 1, N)``. y_mask: ``(B, 1, T)``.
    """
    t_y = y_mask.shape[2]
    end = torch.cumsum(durations, dim=1)  # (B, N)
    start = end - durations
    frames = torch.arange(t_y, device=durations.device, dtype=durations.dtype)[None, :, None]  # (1, T, 1)
    path = (frames >= start[:, None, :]) & (frames < end[:, None, :])  # (B, T, N)
    return path.to(x_mask.dtype) * x_mask * y_mask.transpose(1, 2)


class VitsGenerator(nn.Module):
    """VITS generator over unit tokens with an external speaker vector.

    Submodules (paper symbols): ``text_encoder`` (prior encoder, p(z|c)), ``posterior_encoder``
    (q(z|x_lin)), ``flow`` (f_theta), ``duration_predictor``, ``decoder`` (G), ``speaker_proj``.
    """

    def __init__(self, config: VitsConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        gin = c.gin_channels if c.speaker_embedding_dim else 0
        self.speaker_proj = nn.Linear(c.speaker_embedding_dim, gin) if gin else None
        self.text_encoder = TextEncoder(
            c.vocab_size,
            c.pad_id,
            c.inter_channels,
            c.hidden_channels,
            c.filter_channels,
            c.n_heads,
            c.n_layers,
            c.kernel_size,
            c.dropout,
            c.attention_window,
        )
        self.posterior_encoder = PosteriorEncoder(
            c.spec_channels, c.inter_channels, c.hidden_channels, c.posterior_kernel_size, 1, c.posterior_layers, gin
        )
        self.flow = ResidualCouplingFlow(
            c.inter_channels, c.hidden_channels, c.flow_kernel_size, 1, c.flow_layers, c.flow_couplings, gin
        )
        if c.stochastic_duration:
            self.duration_predictor: StochasticDurationPredictor | DurationPredictor = StochasticDurationPredictor(
                c.hidden_channels,
                c.duration_channels,
                c.duration_kernel_size,
                c.duration_dropout,
                c.duration_flows,
                gin,
            )
        else:
            self.duration_predictor = DurationPredictor(
                c.hidden_channels, c.duration_channels, c.duration_kernel_size, c.duration_dropout, gin
            )
        self.decoder = HifiGanGenerator(
            c.inter_channels,
            c.upsample_rates,
            c.upsample_kernel_sizes,
            c.upsample_initial_channels,
            c.resblock_kernel_sizes,
            c.resblock_dilations,
            gin,
            resblock=c.resblock,
        )

    # ---------------------------------------------------------------------------------------------
    def speaker_condition(self, speaker_embedding: torch.Tensor | None) -> torch.Tensor | None:
        """``(B, speaker_embedding_dim)`` -> ``g`` ``(B, gin_channels, 1)`` (None without speakers)."""
        if self.speaker_proj is None or speaker_embedding is None:
            return None
        return self.speaker_proj(speaker_embedding).unsqueeze(-1)

    def prepare_units(self, units: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interleave blanks when the config asks for them (a no-op otherwise)."""
        if self.config.add_blank:
            return intersperse_blank(units, lengths, self.config.blank_id, self.config.pad_id)
        return units, lengths

    def forward(
        self,
        units: torch.Tensor,
        unit_lengths: torch.Tensor,
        spec: torch.Tensor,
        spec_lengths: torch.Tensor,
        speaker_embedding: torch.Tensor | None = None,
        rng: torch.Generator | None = None,
    ) -> VitsOutput:
        """Training pass.

        Args:
            units: ``(B, N)`` long unit ids (padding anywhere past ``unit_lengths``).
            unit_lengths: ``(B,)``; each must be <= its ``spec_lengths`` (MAS needs a frame per token;
                with ``add_blank``, ``2 * N + 1`` of them).
            spec: ``(B, n_fft // 2 + 1, T)`` linear magnitude spectrogram.
            spec_lengths: ``(B,)`` valid frames.
            speaker_embedding: ``(B, speaker_embedding_dim)`` or None for an unconditioned model.
            rng: source of every random draw of the pass (posterior noise, duration noise,
                slice positions) for exactly reproducible steps; None = the global RNG.

        Returns:
            :class:`VitsOutput`.
        """
        units, unit_lengths = self.prepare_units(units, unit_lengths)
        g = self.speaker_condition(speaker_embedding)
        h_text, m_p, logs_p, x_mask = self.text_encoder(units, unit_lengths)
        z, m_q, logs_q, y_mask = self.posterior_encoder(spec, spec_lengths, g, rng)
        z_p = self.flow(z, y_mask, g)

        with torch.no_grad():
            scores = alignment_scores(z_p.float(), m_p.float(), logs_p.float())  # (B, T, N)
            attn_mask = y_mask.transpose(1, 2) * x_mask  # (B, T, N)
            attn = maximum_path(scores, attn_mask).to(m_p.dtype)

        durations = attn.sum(1).unsqueeze(1)  # (B, 1, N) frames per token
        nll = self.duration_predictor.nll(h_text, x_mask, durations, g, rng)
        duration_loss = torch.sum(nll.float()) / torch.sum(x_mask)

        m_p = torch.matmul(attn, m_p.transpose(1, 2)).transpose(1, 2)  # (B, C, T)
        logs_p = torch.matmul(attn, logs_p.transpose(1, 2)).transpose(1, 2)

        frames = self.config.segment_frames
        ids_slice = random_segment_starts(spec_lengths, frames, rng)
        wav_slice = self.decoder(slice_segments(z, ids_slice, frames), g)
        return VitsOutput(
            wav_slice=wav_slice,
            ids_slice=ids_slice,
            attn=attn,
            duration_loss=duration_loss,
            x_mask=x_mask,
            y_mask=y_mask,
            z=z,
            z_p=z_p,
            m_p=m_p,
            logs_p=logs_p,
            m_q=m_q,
            logs_q=logs_q,
        )

    @torch.no_grad()
    def infer(
        self,
        units: torch.Tensor,
        unit_lengths: torch.Tensor,
        speaker_embedding: torch.Tensor | None = None,
        noise_scale: float = 0.667,
        noise_scale_w: float = 0.8,
        length_scale: float = 1.0,
        max_frames: int | None = None,
        rng: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthesize waveforms.

        Args:
            units: ``(B, N)`` long unit ids. unit_lengths: ``(B,)``.
            speaker_embedding: ``(B, speaker_embedding_dim)`` or None.
            noise_scale: standard-deviation scale of the prior sample (VITS: 0.667).
            noise_scale_w: noise scale of the stochastic duration predictor (VITS: 0.8).
            length_scale: > 1 speaks slower.
            max_frames: decode at most this many frames (bounds memory).
            rng: noise source (None = global RNG).

        Returns:
            ``wav`` ``(B, T_wav)`` in [-1, 1] (zero past each length) and ``wav_lengths`` ``(B,)``.
        """
        units, unit_lengths = self.prepare_units(units, unit_lengths)
        g = self.speaker_condition(speaker_embedding)
        h_text, m_p, logs_p, x_mask = self.text_encoder(units, unit_lengths)
        logw = self.duration_predictor.log_durations(h_text, x_mask, g, noise_scale_w, rng)
        durations = torch.ceil(torch.exp(logw) * x_mask * length_scale)[:, 0]  # (B, N)
        y_lengths = torch.clamp_min(durations.sum(1), 1).long()
        if max_frames is not None:
            y_lengths = y_lengths.clamp(max=max_frames)
        y_mask = sequence_mask(y_lengths).unsqueeze(1).to(m_p.dtype)  # (B, 1, T)
        attn = durations_to_path(durations, x_mask, y_mask)  # (B, T, N)
        m_p = torch.matmul(attn, m_p.transpose(1, 2)).transpose(1, 2)  # (B, C, T)
        logs_p = torch.matmul(attn, logs_p.transpose(1, 2)).transpose(1, 2)
        noise = torch.randn(m_p.shape, generator=rng, device=m_p.device, dtype=m_p.dtype)
        z_p = m_p + noise * torch.exp(logs_p) * noise_scale
        z = self.flow(z_p, y_mask, g, reverse=True)
        wav = self.decoder(z * y_mask, g)[:, 0]  # (B, T * hop)
        wav_lengths = y_lengths * self.config.hop_length
        wav = wav * sequence_mask(wav_lengths, wav.shape[1]).to(wav.dtype)
        return wav, wav_lengths
