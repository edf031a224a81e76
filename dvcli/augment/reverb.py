"""Reverberation: FFT convolution with room impulse responses, and generated ones (RT60 drawn per sample)."""

from __future__ import annotations

import math

import torch

from dvcli.audio import SAMPLE_RATE
from dvcli.augment.draws import _randn, _uniform
from dvcli.augment.noises import _fft_size, _valid_mask, power


def fft_convolve(wavs: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Full linear convolution of each row with its kernel: ``(B, T), (B, L) -> (B, T + L - 1)``."""
    n = wavs.shape[-1] + kernels.shape[-1] - 1
    size = _fft_size(n)
    out = torch.fft.irfft(torch.fft.rfft(wavs, size) * torch.fft.rfft(kernels, size), size)
    return out[..., :n]


def apply_rir(wavs: torch.Tensor, rirs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Reverberate ``(B, T)`` with ``(B, L)`` impulse responses; same length and power as the input.

    The output is aligned on each RIR's direct path (its largest peak), so reverberation adds a
    tail without delaying the speech, and rescaled to the input's power over the valid samples.
    """
    mask = _valid_mask(wavs, lengths)
    wet = fft_convolve(wavs * mask, rirs)
    direct = rirs.abs().argmax(dim=-1)  # (B,)
    index = direct[:, None] + torch.arange(wavs.shape[1], device=wavs.device)[None, :]
    wet = wet.gather(1, index) * mask  # (B, T)
    gain = torch.sqrt(power(wavs, lengths) / power(wet, lengths).clamp_min(1e-20))
    return wet * gain[:, None]


def generated_rirs(
    rt60: torch.Tensor, gen: torch.Generator, device: torch.device, rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """Synthetic room impulse responses, one per RT60 in ``(B,)`` seconds: ``(B, L)``, unit energy.

    A direct-path impulse after a 1-5 ms pre-delay, then Gaussian noise decaying by 60 dB over RT60
    (amplitude ``exp(-6.91 t / RT60)``) at a direct-to-reverberant ratio drawn in [-5, 5] dB.
    """
    batch = rt60.shape[0]
    rt60 = rt60.to(device)
    length = int(math.ceil(float(rt60.max()) * rate)) + int(0.005 * rate) + 1
    delay = (_uniform(batch, 0.001, 0.005, gen, device) * rate).long()  # (B,)
    t = torch.arange(length, device=device)[None, :] - delay[:, None]  # samples after the direct path
    decay = torch.exp(-6.9078 * t.clamp_min(0) / (rt60[:, None] * rate))
    tail = _randn((batch, length), gen, device) * decay * (t > 0)
    drr_db = _uniform(batch, -5.0, 5.0, gen, device)
    tail = tail / tail.pow(2).sum(-1, keepdim=True).sqrt().clamp_min(1e-12) * 10 ** (-drr_db[:, None] / 20)
    rir = tail.scatter(1, delay[:, None], torch.ones(batch, 1, device=device))
    return rir / rir.pow(2).sum(-1, keepdim=True).sqrt()
