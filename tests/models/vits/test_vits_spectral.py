"""Spectrogram ops against torchaudio."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchaudio

from dvcli.models.vits.config import VitsConfig
from dvcli.models.vits.spectral import Spectrogram, hz_to_mel, mel_filterbank, mel_to_hz


@pytest.mark.parametrize(
    "n_fft,n_mels,rate,fmin,fmax",
    [
        (1024, 80, 16000, 0.0, None),
        (1024, 80, 22050, 0.0, None),
        (1024, 100, 24000, 0.0, 12000.0),
        (512, 40, 16000, 55.0, 7600.0),
    ],
)
def test_mel_filterbank_matches_torchaudio(n_fft: int, n_mels: int, rate: int, fmin: float, fmax: float | None) -> None:
    ours = mel_filterbank(n_fft, n_mels, rate, fmin, fmax)
    ref = torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, fmin, fmax or rate / 2, n_mels, rate, norm="slaney", mel_scale="slaney"
    ).T
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-4)


def test_mel_scale_round_trip_and_knee() -> None:
    freqs = torch.tensor([0.0, 500.0, 1000.0, 4000.0, 11025.0], dtype=torch.float64)
    torch.testing.assert_close(mel_to_hz(hz_to_mel(freqs)), freqs)
    assert float(hz_to_mel(torch.tensor(1000.0, dtype=torch.float64))) == pytest.approx(15.0)  # Slaney's knee


def test_spectrogram_frames_and_values_match_torchaudio() -> None:
    config = VitsConfig.tiny()
    spec = Spectrogram.from_config(config)
    torch.manual_seed(0)
    wav = torch.rand(2, 8192) - 0.5
    linear = spec.linear(wav)
    assert linear.shape == (2, 513, 8192 // 256)
    pad = (1024 - 256) // 2
    padded = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    ref = torchaudio.transforms.Spectrogram(n_fft=1024, hop_length=256, win_length=1024, center=False, power=None)
    ref_mag = torch.sqrt(ref(padded).abs().pow(2) + 1e-6)
    torch.testing.assert_close(linear, ref_mag, atol=1e-4, rtol=1e-4)
    mel = torchaudio.transforms.MelScale(80, 16000, 0.0, None, 513, norm="slaney", mel_scale="slaney")(ref_mag)
    torch.testing.assert_close(spec.mel(wav), torch.log(torch.clamp(mel, min=1e-5)), atol=1e-4, rtol=1e-4)
