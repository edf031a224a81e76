"""Fixed-initialisation golden values of the VITS generator (issue 16, point 6).

Seeded weights, fixed units, spectrogram, speaker embedding and noise: the training pass and
inference must give these numbers. A refactor that keeps them kept the model; one that changes
them changed the model, and must say so here (recompute with the code in each test's body).
Values are from torch 2.11.0 on CPU (the locked version), to a relative 1e-5.
"""

from __future__ import annotations

import pytest
import torch

from dvcli.models.vits import VitsConfig, VitsGenerator

GOLDEN_TRAIN = {
    "m_p": 523.1673038075678,
    "logs_p": 589.3293819170794,
    "z_p": 970.3504561465234,
    "m_q": 148.4206421128183,
    "wav_slice": 259.6151773617603,
}
GOLDEN_ALIGNED_FRAMES = 71  # 40 + 31 frames, each aligned to one token
GOLDEN_DURATION_LOSS = 2.7823526859283447
GOLDEN_SLICES = [13, 12]
GOLDEN_INFER_ABS = [64.85202651796862, 64.85201329598203]


def _inputs() -> tuple[VitsGenerator, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    generator = VitsGenerator(VitsConfig.tiny(n_units=12, speaker_embedding_dim=8))
    units = torch.tensor([[1, 5, 5, 7, 2, 11, 3, 0], [4, 4, 9, 1, 0, 0, 0, 0]])
    return generator, units, torch.tensor([8, 5]), torch.linspace(-1, 1, 16).reshape(2, 8)


def test_training_pass_matches_the_golden_values() -> None:
    generator, units, lengths, embedding = _inputs()
    channels = generator.config.spec_channels
    spec = torch.randn(2, channels, 40, generator=torch.Generator().manual_seed(2)).abs()
    generator.train()
    with torch.no_grad():
        out = generator(units, lengths, spec, torch.tensor([40, 31]), embedding, rng=torch.Generator().manual_seed(1))
    for name, value in GOLDEN_TRAIN.items():
        assert float(getattr(out, name).double().abs().sum()) == pytest.approx(value, rel=1e-5), name
    assert float(out.attn.sum()) == GOLDEN_ALIGNED_FRAMES
    assert float(out.duration_loss) == pytest.approx(GOLDEN_DURATION_LOSS, rel=1e-5)
    assert out.ids_slice.tolist() == GOLDEN_SLICES


def test_inference_matches_the_golden_values() -> None:
    generator, units, lengths, embedding = _inputs()
    generator.eval()
    with torch.no_grad():
        wav, wav_lengths = generator.infer(units, lengths, embedding, rng=torch.Generator().manual_seed(1))
    assert wav_lengths.tolist() == [2048, 2048]
    sums = [float(wav[i, : wav_lengths[i]].double().abs().sum()) for i in range(2)]
    assert sums == pytest.approx(GOLDEN_INFER_ABS, rel=1e-5)
