"""The batched fbank equals torchaudio's Kaldi fbank, utterance by utterance."""

from __future__ import annotations

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from dvcli.features.fbank import KaldiFbank, num_frames


def _reference(wav: torch.Tensor, mean_normalize: bool = True) -> torch.Tensor:
    feats = kaldi.fbank(wav[None], num_mel_bins=80, sample_frequency=16000, frame_length=25, frame_shift=10, dither=0.0)
    return feats - feats.mean(0, keepdim=True) if mean_normalize else feats


def test_matches_torchaudio_kaldi_fbank() -> None:
    gen = torch.Generator().manual_seed(0)
    wavs = 0.1 * torch.randn(3, 16000, generator=gen)
    wavs[1] += 0.3 * torch.sin(torch.arange(16000) * 2 * torch.pi * 440 / 16000)  # a tone, far from noise
    fbank = KaldiFbank(mean_normalize=False)
    feats, frames = fbank(wavs)
    assert feats.shape == (3, 98, 80) and frames.tolist() == [98, 98, 98]
    for i in range(3):
        torch.testing.assert_close(feats[i], _reference(wavs[i], mean_normalize=False), atol=1e-4, rtol=1e-5)


def test_padded_rows_match_their_unpadded_features() -> None:
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([16000, 9123, 4000])
    wavs = torch.zeros(3, 16000)
    for i, n in enumerate(lengths.tolist()):
        wavs[i, :n] = 0.2 * torch.randn(n, generator=gen)
    feats, frames = KaldiFbank()(wavs, lengths)
    assert frames.tolist() == [num_frames(int(n)) for n in lengths]
    for i, n in enumerate(lengths.tolist()):
        ref = _reference(wavs[i, :n])
        torch.testing.assert_close(feats[i, : ref.shape[0]], ref, atol=1e-4, rtol=1e-5)
        assert torch.count_nonzero(feats[i, ref.shape[0] :]) == 0


def test_frame_count_and_short_input() -> None:
    assert num_frames(399) == 0 and num_frames(400) == 1 and num_frames(560) == 2 and num_frames(48000) == 298
    feats, frames = KaldiFbank()(torch.zeros(2, 300))
    assert feats.shape == (2, 0, 80) and frames.tolist() == [0, 0]


def test_mean_normalisation_zeroes_each_bins_mean() -> None:
    feats, _ = KaldiFbank()(0.1 * torch.randn(2, 8000))
    torch.testing.assert_close(feats.mean(1), torch.zeros(2, 80), atol=1e-5, rtol=0)


def test_dither_draws_from_the_generator() -> None:
    wav = 0.1 * torch.randn(1, 4000)
    fbank = KaldiFbank()
    a, _ = fbank(wav, dither=0.01, generator=torch.Generator().manual_seed(3))
    b, _ = fbank(wav, dither=0.01, generator=torch.Generator().manual_seed(3))
    c, _ = fbank(wav)
    assert torch.equal(a, b) and not torch.allclose(a, c)


@pytest.mark.parametrize("shape", [(16000,), (1, 2, 16000)])
def test_rejects_other_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        KaldiFbank()(torch.zeros(shape))
