"""Noise: signal power, mixing at an SNR, and generated noises (coloured, mains hum, traffic-like rumble)."""

from __future__ import annotations

import math

import torch

from dvcli.audio import SAMPLE_RATE
from dvcli.augment.draws import _rand, _randn, _uniform


def _valid_mask(wavs: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``(B, T)`` 1.0 where a row holds audio, 0.0 in its padding."""
    if lengths is None:
        return torch.ones_like(wavs)
    return (torch.arange(wavs.shape[1], device=wavs.device)[None, :] < lengths.to(wavs.device)[:, None]).to(wavs.dtype)


def power(wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Mean square per row over its valid samples: ``(B, T) -> (B,)``."""
    mask = _valid_mask(wavs, lengths)
    return (wavs.pow(2) * mask).sum(-1) / mask.sum(-1).clamp_min(1)


def mix_at_snr(
    signal: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """``signal + g * noise`` with ``g`` per row so that ``10 log10(P_signal / P_g*noise) = snr_db``.

    Powers are measured over each row's valid samples; the padding stays as it was. A silent
    signal or silent noise row is returned unchanged.

    Args:
        signal, noise: ``(B, T)``.
        snr_db: ``(B,)``.
    """
    mask = _valid_mask(signal, lengths)
    p_signal, p_noise = power(signal, lengths), power(noise * mask, lengths)
    gain = torch.sqrt(p_signal / (p_noise.clamp_min(1e-20) * 10 ** (snr_db.to(signal) / 10)))
    gain = torch.where((p_noise > 0) & (p_signal > 0), gain, torch.zeros_like(gain))
    return signal + gain[:, None] * noise * mask


def _fft_size(samples: int) -> int:
    # Power-of-two transforms: an arbitrary (e.g. prime) length would take the slow FFT path.
    return 1 << max(1, samples - 1).bit_length()


def colored_noise(
    batch: int, samples: int, exponent: float, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Noise with power spectral density ~ 1/f^exponent (0 white, 1 pink, 2 brown): ``(B, T)``, unit power."""
    if exponent == 0:
        return _randn((batch, samples), gen, device)
    size = _fft_size(samples)
    spectrum = torch.fft.rfft(_randn((batch, size), gen, device))
    freqs = torch.fft.rfftfreq(size, device=device)
    shape = freqs.clamp_min(float(freqs[1])).pow(-exponent / 2)
    shape[0] = 0.0  # no DC
    noise = torch.fft.irfft(spectrum * shape, size)[:, :samples]
    return noise / noise.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)


def mains_hum(
    batch: int, samples: int, gen: torch.Generator, device: torch.device, rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """50 or 60 Hz hum with decaying odd/even harmonics, random phases, a little hiss: ``(B, T)``."""
    base = torch.where(_rand((batch,), gen, device) < 0.5, 50.0, 60.0)[:, None]  # (B, 1)
    base = base * (1 + 0.002 * (2 * _rand((batch, 1), gen, device) - 1))  # mains drifts slightly
    harmonics = torch.arange(1, 9, device=device, dtype=torch.float32)  # (H,)
    amplitude = 1.0 / harmonics * (0.5 + _rand((batch, 8), gen, device))  # (B, H)
    phase = 2 * math.pi * _rand((batch, 8), gen, device)  # (B, H)
    t = torch.arange(samples, device=device, dtype=torch.float32) / rate  # (T,)
    angle = 2 * math.pi * base[:, :, None] * harmonics[None, :, None] * t + phase[:, :, None]  # (B, H, T)
    hum = (amplitude[:, :, None] * torch.sin(angle)).sum(1)
    return hum + 0.01 * hum.std(-1, keepdim=True) * _randn((batch, samples), gen, device)


def rumble(
    batch: int, samples: int, gen: torch.Generator, device: torch.device, rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """Traffic-like rumble: brown noise low-passed at 80-400 Hz under a slow pass-by envelope: ``(B, T)``."""
    size = _fft_size(samples)
    noise = colored_noise(batch, size, 2.0, gen, device)
    cutoff = _uniform(batch, 80.0, 400.0, gen, device)[:, None]  # (B, 1)
    freqs = torch.fft.rfftfreq(size, d=1.0 / rate, device=device)[None, :]  # (1, F)
    lowpass = 1.0 / (1.0 + (freqs / cutoff).pow(4))  # 4th-order-like roll-off
    noise = torch.fft.irfft(torch.fft.rfft(noise) * lowpass, size)[:, :samples]
    t = torch.arange(samples, device=device, dtype=torch.float32) / rate
    speed = _uniform(batch, 0.05, 0.4, gen, device)[:, None]  # pass-bys per second
    phase = 2 * math.pi * _rand((batch, 1), gen, device)
    envelope = 1.0 + 0.8 * torch.sin(2 * math.pi * speed * t + phase)
    return noise * envelope
