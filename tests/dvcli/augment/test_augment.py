"""Augmentation: exact SNRs, sane reverberation, per-sample probabilities, reproducible draws."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dvcli.audio import find_audio, tile_to
from dvcli.augment.augmenter import NOISE_KINDS, AugmentConfig, Augmenter
from dvcli.augment.noises import mix_at_snr
from dvcli.augment.reverb import apply_rir, generated_rirs
from dvcli.errors import UserError
from dvcli.testing import voice

CPU = torch.device("cpu")


def _speech(batch: int = 4, seconds: float = 1.0) -> torch.Tensor:
    return torch.stack([torch.from_numpy(voice(seconds, pitch=100 + 30 * i, seed=i)) for i in range(batch)])


def _snr(clean: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(clean.pow(2).mean(-1) / (mixed - clean).pow(2).mean(-1))


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_each_generated_noise_lands_at_the_requested_snr(kind: str) -> None:
    clean = _speech()
    speech = [torch.from_numpy(voice(2.0, pitch=180, seed=9))]
    augmenter = Augmenter(AugmentConfig(), speech=speech)
    snr = torch.tensor([0.0, 5.0, 10.0, 15.0])
    mixed = augmenter.add_noise(clean, snr, torch.Generator().manual_seed(0), kinds=[kind])
    torch.testing.assert_close(_snr(clean, mixed), snr, atol=1e-3, rtol=0)


def test_random_snrs_stay_in_range_and_padding_stays_silent() -> None:
    clean = _speech(8)
    lengths = torch.tensor([16000, 12000, 8000, 16000, 9000, 16000, 10000, 11000])
    for i, n in enumerate(lengths.tolist()):
        clean[i, n:] = 0
    augmenter = Augmenter(AugmentConfig(noise_prob=1.0, reverb_prob=0.0, snr_min=3.0, snr_max=7.0))
    mixed = augmenter(clean, torch.Generator().manual_seed(1), lengths)
    for i, n in enumerate(lengths.tolist()):
        snr = 10 * math.log10(clean[i, :n].pow(2).mean() / (mixed[i, :n] - clean[i, :n]).pow(2).mean())
        assert 3.0 - 1e-3 <= snr <= 7.0 + 1e-3
        assert torch.count_nonzero(mixed[i, n:]) == 0


def test_mix_at_snr_leaves_silence_alone() -> None:
    signal = torch.zeros(1, 100)
    assert torch.equal(mix_at_snr(signal, torch.randn(1, 100), torch.tensor([5.0])), signal)


def test_a_unit_impulse_rir_changes_nothing() -> None:
    clean = _speech(2)
    delta = torch.zeros(2, 400)
    delta[:, 37] = 1.0  # a delayed direct path: the output is aligned back onto it
    torch.testing.assert_close(apply_rir(clean, delta), clean, atol=1e-5, rtol=1e-4)


def _schroeder_rt60(rir: torch.Tensor, rate: int = 16000) -> float:
    """RT60 from the -5..-25 dB slope of the backward-integrated energy decay (T20 x 3)."""
    energy = rir.double().pow(2).flip(0).cumsum(0).flip(0)
    decay = 10 * torch.log10(energy / energy[0])
    t5, t25 = int((decay > -5).sum()), int((decay > -25).sum())
    return 3 * (t25 - t5) / rate


def test_generated_rirs_decay_at_the_drawn_rt60_and_keep_length_and_power() -> None:
    rt60 = torch.tensor([0.3, 0.6, 0.9])
    rirs = generated_rirs(rt60, torch.Generator().manual_seed(2), CPU)
    torch.testing.assert_close(rirs.pow(2).sum(-1), torch.ones(3))
    assert rirs.shape[1] >= int(0.9 * 16000)
    for rir, target in zip(rirs, rt60.tolist()):
        assert _schroeder_rt60(rir) == pytest.approx(target, rel=0.25)
    clean = _speech(3)
    wet = apply_rir(clean, rirs)
    assert wet.shape == clean.shape
    torch.testing.assert_close(wet.pow(2).mean(-1), clean.pow(2).mean(-1), rtol=1e-4, atol=0)
    assert not torch.allclose(wet, clean, atol=1e-2)


def test_same_generator_same_output_other_seed_other_output() -> None:
    clean = _speech(6)
    augmenter = Augmenter(AugmentConfig(noise_prob=0.7, reverb_prob=0.5), speech=list(_speech(3, 2.0)))
    a = augmenter(clean, torch.Generator().manual_seed(5))
    b = augmenter(clean, torch.Generator().manual_seed(5))
    c = augmenter(clean, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_per_sample_probabilities() -> None:
    clean = _speech(1).repeat(400, 1)
    none = Augmenter(AugmentConfig(noise_prob=0.0, reverb_prob=0.0))
    assert torch.equal(none(clean, torch.Generator().manual_seed(0)), clean)
    half = Augmenter(AugmentConfig(noise_prob=0.5, reverb_prob=0.0, noise_kinds=("white",)))
    changed = (half(clean, torch.Generator().manual_seed(0)) != clean).any(-1).float().mean()
    assert 0.4 < float(changed) < 0.6


def test_noise_and_rir_folders(tmp_path: Path) -> None:
    # MUSAN layout: noise/<source>/*.wav; a 1 kHz tone must dominate what gets added.
    tone = np.sin(2 * np.pi * 1000 * np.arange(40000) / 16000).astype(np.float32)
    (tmp_path / "musan" / "noise" / "free-sound").mkdir(parents=True)
    sf.write(str(tmp_path / "musan" / "noise" / "free-sound" / "noise-free-sound-0000.wav"), tone, 16000)
    # RIRS_NOISES layout: only the impulse responses count, not the isotropic noises beside them.
    rir_dir = tmp_path / "RIRS_NOISES" / "real_rirs_isotropic_noises"
    rir_dir.mkdir(parents=True)
    delta = np.zeros(800, np.float32)
    delta[10] = 1.0
    sf.write(str(rir_dir / "RVB2014_type1_rir_largeroom1_near_angla.wav"), delta, 16000)
    sf.write(str(rir_dir / "RVB2014_type1_noise_largeroom1_1.wav"), tone, 16000)
    assert [p.name for p in find_audio(tmp_path / "RIRS_NOISES", rirs=True)] == [
        "RVB2014_type1_rir_largeroom1_near_angla.wav"
    ]

    augmenter = Augmenter(AugmentConfig(noise_dir=tmp_path / "musan", rir_dir=tmp_path / "RIRS_NOISES"))
    clean = _speech(2)
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(augmenter.reverberate(clean, gen), clean, atol=1e-5, rtol=1e-4)
    noisy = augmenter.add_noise(clean, 0.0, gen)
    spectrum = torch.fft.rfft(noisy - clean).abs()
    peak_hz = spectrum.argmax(-1).float() * 16000 / clean.shape[1]
    torch.testing.assert_close(peak_hz, torch.full((2,), 1000.0))
    torch.testing.assert_close(_snr(clean, noisy), torch.zeros(2), atol=1e-3, rtol=0)


def test_bad_settings_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="noise_kinds"):
        AugmentConfig(noise_kinds=("thunder",))
    with pytest.raises(UserError, match="probability"):
        AugmentConfig(noise_prob=1.5)
    with pytest.raises(UserError, match="folder not found"):
        Augmenter(AugmentConfig(noise_dir=tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no audio files"):
        Augmenter(AugmentConfig(rir_dir=tmp_path / "empty"))


def test_tile_to_repeats_and_cuts_to_the_length() -> None:
    wav = torch.arange(3.0)
    assert tile_to(wav, 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert tile_to(wav, 2).tolist() == [0, 1] and tile_to(wav, 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="empty"):
        tile_to(torch.zeros(0), 4)
