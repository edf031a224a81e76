"""Linear and log-mel spectrograms as VITS computes them (torch.stft, no centring, reflect padding).

The mel filterbank is the Slaney-style one of librosa (and of the original VITS): Slaney mel scale,
triangles normalised to unit area. ``tests/models/vits/test_spectral.py`` checks it against
``torchaudio.functional.melscale_fbanks(..., norm="slaney", mel_scale="slaney")``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dvcli.models.vits.config import VitsConfig

_MIN_LOG_HZ = 1000.0  # the Slaney scale is linear below 1 kHz and logarithmic above
_LIN_STEP = 200.0 / 3  # Hz per mel in the linear part
_LOG_STEP = math.log(6.4) / 27.0  # log-Hz per mel in the logarithmic part


def hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale (linear to 1 kHz, logarithmic above)."""
    min_log_mel = _MIN_LOG_HZ / _LIN_STEP
    linear = freq / _LIN_STEP
    log = min_log_mel + torch.log(torch.clamp(freq, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return torch.where(freq >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    min_log_mel = _MIN_LOG_HZ / _LIN_STEP
    linear = mel * _LIN_STEP
    log = _MIN_LOG_HZ * torch.exp(_LOG_STEP * (mel - min_log_mel))
    return torch.where(mel >= min_log_mel, log, linear)


def mel_filterbank(
    n_fft: int, n_mels: int, sample_rate: int, fmin: float = 0.0, fmax: float | None = None
) -> torch.Tensor:
    """Triangular Slaney mel filters, ``(n_mels, n_fft // 2 + 1)`` float32, each of unit area."""
    fmax = sample_rate / 2 if fmax is None else fmax
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # FFT bin centres
    mel_lo, mel_hi = (float(hz_to_mel(torch.tensor(f, dtype=torch.float64))) for f in (fmin, fmax))
    edges = mel_to_hz(torch.linspace(mel_lo, mel_hi, n_mels + 2, dtype=torch.float64))  # triangle corners
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    triangles = torch.clamp(torch.minimum(rising, falling), min=0.0)  # (n_mels, n_freq)
    area_norm = 2.0 / (upper - lower)  # Slaney normalisation: constant energy per band
    return (triangles * area_norm).float()


class Spectrogram(nn.Module):
    """Magnitude STFT and log-mel features with VITS' framing: ``len(wav) // hop`` frames.

    The waveform is reflect-padded by ``(n_fft - hop) / 2`` on each side and framed without
    centring, so frame ``t`` covers samples ``[t * hop, (t + 1) * hop)`` at its centre and a segment
    of ``k * hop`` samples maps to exactly ``k`` frames.
    """

    window: torch.Tensor
    mel_basis: torch.Tensor

    def __init__(
        self,
        *,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        win_length: int,
        n_mels: int,
        fmin: float = 0.0,
        fmax: float | None = None,
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        self.register_buffer("mel_basis", mel_filterbank(n_fft, n_mels, sample_rate, fmin, fmax), persistent=False)

    def linear(self, wav: torch.Tensor) -> torch.Tensor:
        """Magnitude spectrogram.

        Args:
            wav: ``(B, T)`` or ``(B, 1, T)`` waveform in [-1, 1].

        Returns:
            ``(B, n_fft // 2 + 1, T // hop)`` float32 magnitudes.
        """
        wav = wav.reshape(-1, wav.shape[-1]).float()
        pad = (self.n_fft - self.hop_length) // 2
        wav = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        with torch.autocast(wav.device.type, enabled=False):  # STFT in float32 whatever the caller runs
            spec = torch.stft(
                wav,
                self.n_fft,
                hop_length=self.hop_length,
                win_length=self.win_length,
                window=self.window,
                center=False,
                return_complex=True,
            )
        # The epsilon keeps the gradient of |X| finite at X = 0 (the mel loss backpropagates here).
        return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-6)

    def linear_to_mel(self, spec: torch.Tensor) -> torch.Tensor:
        """``(B, n_freq, frames)`` magnitudes -> ``(B, n_mels, frames)`` log-mel (natural log, floor 1e-5)."""
        mel = torch.matmul(self.mel_basis, spec.float())
        return torch.log(torch.clamp(mel, min=1e-5))

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` waveform -> ``(B, n_mels, T // hop)`` log-mel."""
        return self.linear_to_mel(self.linear(wav))

    @classmethod
    def from_config(cls, config: VitsConfig) -> Spectrogram:
        """The spectrogram a :class:`VitsConfig` describes."""
        return cls(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            win_length=config.win_length,
            n_mels=config.n_mels,
            fmin=config.mel_fmin,
            fmax=config.mel_fmax,
        )
