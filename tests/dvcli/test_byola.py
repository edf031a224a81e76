"""BYOL-A's encoder and training pieces against BYOL-A's published layout, torchaudio, scikit-learn and
the formulas of BYOL-A's paper and code."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio
from sklearn.decomposition import PCA

from dvcli.errors import UserError
from dvcli.models.byola import (
    AudioNTT2020,
    ByolaConfig,
    ByolaEncoder,
    ByolaLogMel,
    body_state_from_upstream,
    config_from_body_state,
    pca_projection,
)
from dvcli.speaker.byola import UtteranceSegments, mixup, normalize_batch, random_resize_crop
from dvcli.speaker.encoder import SpeakerFrontend, build_speaker_encoder, load_speaker_encoder
from dvcli.testing import make_corpus

#: The tensors of BYOL-A's published ``AudioNTT2020-BYOLA-64x96d512.pth`` (nttcslab/byol-a), in file order.
UPSTREAM_D512 = [
    ("features.0.weight", (64, 1, 3, 3)),
    ("features.0.bias", (64,)),
    ("features.1.weight", (64,)),
    ("features.1.bias", (64,)),
    ("features.1.running_mean", (64,)),
    ("features.1.running_var", (64,)),
    ("features.1.num_batches_tracked", ()),
    ("features.4.weight", (64, 64, 3, 3)),
    ("features.4.bias", (64,)),
    ("features.5.weight", (64,)),
    ("features.5.bias", (64,)),
    ("features.5.running_mean", (64,)),
    ("features.5.running_var", (64,)),
    ("features.5.num_batches_tracked", ()),
    ("features.8.weight", (64, 64, 3, 3)),
    ("features.8.bias", (64,)),
    ("features.9.weight", (64,)),
    ("features.9.bias", (64,)),
    ("features.9.running_mean", (64,)),
    ("features.9.running_var", (64,)),
    ("features.9.num_batches_tracked", ()),
    ("fc.0.weight", (512, 512)),
    ("fc.0.bias", (512,)),
    ("fc.3.weight", (512, 512)),
    ("fc.3.bias", (512,)),
]


def test_the_body_has_byol_a_s_published_layout_and_parameter_count() -> None:
    body = AudioNTT2020(n_mels=64, d=512)
    assert [(k, tuple(v.shape)) for k, v in body.state_dict().items()] == UPSTREAM_D512
    assert sum(p.numel() for p in body.parameters()) == 600_192  # the published d = 512 file's parameters
    # d = 2048 (BYOL-A's default): 3 convs + 2 linear layers, counted from the layout.
    convs = (9 * 64 + 64) + 2 * (9 * 64 * 64 + 64) + 3 * 2 * 64
    assert sum(p.numel() for p in AudioNTT2020(64, 2048).parameters()) == convs + (512 * 2048 + 2048) + (
        2048 * 2048 + 2048
    )
    # A published file (here: random tensors of its layout) is recognised and sized from its shapes.
    upstream = {k: torch.randn(shape) if shape else torch.tensor(0) for k, shape in UPSTREAM_D512}
    found = body_state_from_upstream({f"module.model.{k}": v for k, v in upstream.items()})
    assert found is not None and list(found) == [k for k, _ in UPSTREAM_D512]
    assert config_from_body_state(found) == ByolaConfig(feature_d=512)
    AudioNTT2020(64, 512).load_state_dict(found, strict=True)


def test_log_mel_equals_torchaudio_and_ignores_padding() -> None:
    config = ByolaConfig()
    log_mel = ByolaLogMel(config)
    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=1024, win_length=1024, hop_length=160, n_mels=64, f_min=60, f_max=7800, power=2
    )
    gen = torch.Generator().manual_seed(0)
    wav = 0.1 * torch.randn(2, 16000, generator=gen)
    expected = (reference(wav) + torch.finfo(torch.float32).eps).log().transpose(1, 2)  # (B, 101, 64)
    got, frames = log_mel(wav)
    assert got.shape == (2, 101, 64) and frames.tolist() == [101, 101]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    # A shorter row padded with zeros gets the features of the row alone (reflection at its own end).
    padded = torch.cat([wav[1:, :12000], torch.zeros(1, 4000)], dim=1)
    got, frames = log_mel(torch.cat([wav[:1], padded]), torch.tensor([16000, 12000]))
    alone = (reference(wav[1, :12000]) + torch.finfo(torch.float32).eps).log().T
    assert frames.tolist() == [101, 76]
    torch.testing.assert_close(got[1, :76], alone, rtol=0, atol=1e-4)
    assert float(got[1, 76:].abs().max()) == 0.0


def test_pca_projection_is_scikit_learn_s_pca() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 12, generator=gen) @ torch.randn(12, 12, generator=gen) + 3.0
    weight, bias = pca_projection(x, 5)
    ours = (x @ weight.T + bias).double()
    theirs = torch.from_numpy(PCA(5).fit_transform(x.double().numpy()))
    signs = torch.sign((ours * theirs).sum(dim=0))
    torch.testing.assert_close(ours, theirs * signs, rtol=0, atol=1e-4)
    variances = ours.var(dim=0)
    assert bool((variances[:-1] >= variances[1:]).all())  # by falling variance
    # Fewer points than outputs: the directions the data span, then zero rows.
    weight, _ = pca_projection(x[:4], 5)
    assert float(weight[3:].abs().max()) == 0.0 and float(weight[:3].norm(dim=1).min()) > 0.99


def test_the_encoder_embeds_through_the_projection_and_the_frontend() -> None:
    encoder = ByolaEncoder(ByolaConfig.tiny(embedding_size=16)).eval()
    encoder.norm_mean.fill_(-5.0)
    encoder.norm_std.fill_(2.0)
    feats = torch.randn(3, 40, 64)
    with torch.no_grad():
        rep = encoder.body(((feats + 5.0) / 2.0).transpose(1, 2).unsqueeze(1))
        frames = encoder.body.frame_features(((feats + 5.0) / 2.0).transpose(1, 2).unsqueeze(1))
        torch.testing.assert_close(rep, frames.max(dim=1).values + frames.mean(dim=1))  # max + mean over time
        torch.testing.assert_close(encoder(feats), encoder.projection(rep))
    assert encoder.last_layer_parameters() == list(encoder.projection.parameters())
    with pytest.raises(ValueError, match="8 frames"):
        encoder(torch.randn(1, 7, 64))
    rebuilt = build_speaker_encoder({"arch": "byol-a", "feature_d": 256, "embedding_size": 16})
    assert isinstance(rebuilt, ByolaEncoder) and rebuilt.config == encoder.config
    frontend = SpeakerFrontend(encoder)
    wavs = 0.1 * torch.randn(2, 16000)
    assert isinstance(frontend.fbank, ByolaLogMel) and frontend.embed(wavs).shape == (2, 16)


def test_a_bare_byol_a_body_is_refused_with_the_command_that_makes_it_usable(tmp_path) -> None:
    path = tmp_path / "AudioNTT2020-BYOLA-64x96d512.pth"
    torch.save(AudioNTT2020(64, 512).state_dict(), path)
    with pytest.raises(UserError, match="--objective byol-a --init"):
        load_speaker_encoder(path)


def test_mixup_is_byol_a_s_log_mixup_exp() -> None:
    x = torch.randn(4, 8, 10)
    memory = torch.randn(1, 8, 10)
    assert mixup(x, None, 0.4, torch.Generator()) is x
    got = mixup(x, memory, 0.4, torch.Generator().manual_seed(3))
    alpha = 0.4 * torch.rand(4, 1, 1, generator=torch.Generator().manual_seed(3))  # the same draw
    expected = torch.log((1 - alpha) * x.exp() + alpha * memory.exp() + torch.finfo(torch.float32).eps)
    torch.testing.assert_close(got, expected)
    assert float(alpha.max()) <= 0.4


def test_random_resize_crop_identity_and_squeeze() -> None:
    x = torch.randn(3, 16, 24)
    gen = torch.Generator().manual_seed(0)
    same = random_resize_crop(x, gen, virtual_crop=(1.0, 1.0), freq_scale=(1.0, 1.0), time_scale=(1.0, 1.0))
    torch.testing.assert_close(same, x, rtol=0, atol=1e-5)
    # The whole 1.5x-wide canvas resized to the input: the input squeezed into the middle two thirds.
    squeezed = random_resize_crop(x, gen, virtual_crop=(1.0, 1.5), freq_scale=(1.0, 1.0), time_scale=(1.5, 1.5))
    assert float(squeezed[:, :, :3].abs().max()) < 0.05 * float(x.abs().max())
    assert float(squeezed[:, :, 8:16].abs().mean()) > 0.3
    varied = random_resize_crop(x, torch.Generator().manual_seed(1))
    assert varied.shape == x.shape and not torch.allclose(varied[0], varied[1])


def test_normalize_batch_standardises_every_value() -> None:
    x = 3 + 5 * torch.randn(6, 1, 8, 10)
    y = normalize_batch(x)
    assert abs(float(y.mean())) < 1e-5 and math.isclose(float(y.std()), 1.0, rel_tol=1e-5)


def test_segments_visit_every_utterance_once_per_epoch_across_processes(tmp_path) -> None:
    rows = make_corpus(tmp_path / "c", speakers=2, utterances=5, seconds=(0.5, 1.5))
    ranks = [
        UtteranceSegments(rows, batch_size=2, segment_seconds=0.95, seed=3, rank=r, world_size=2, steps=10)
        for r in (0, 1)
    ]
    epoch = [i for step in range(5) for r in ranks for i in r.indices(step)]
    assert sorted(epoch[:10]) == list(range(10))  # steps 0-4 of both ranks: each utterance once
    batch = ranks[0][1]
    assert batch.shape == (2, 15200) and torch.equal(batch, ranks[0][1])  # the step alone fixes it
    short = next(u for u in rows if u.duration < 0.9)
    segment = ranks[0].read_segment(short, 0.5)
    pad = 15200 - int(round(short.duration * 16000))
    assert float(segment[: pad // 2 - 1].abs().max()) == 0.0 and float(segment[-(pad // 2 - 1) :].abs().max()) == 0.0
