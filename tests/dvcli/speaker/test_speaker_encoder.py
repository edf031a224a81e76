"""The speaker-encoder API other stages use: loading from every source, waveform -> embedding."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dvcli.checkpoint import save_checkpoint
from dvcli.errors import UserError
from dvcli.features.fbank import KaldiFbank
from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig
from dvcli.speaker.encoder import ENCODER_FILE, ENCODER_KIND, TRAIN_KIND, SpeakerFrontend, load_speaker_encoder


@pytest.fixture
def encoder() -> CAMPPlus:
    torch.manual_seed(0)
    model = CAMPPlus(CAMPPlusConfig.tiny(embedding_size=24))
    model.train()
    model(torch.randn(4, 50, 80))  # move the batch-norm statistics away from their defaults
    return model.eval()


def _same(a: CAMPPlus, b: CAMPPlus) -> bool:
    return a.config == b.config and all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())
    )


def test_loads_from_every_kind_of_source(tmp_path: Path, encoder: CAMPPlus) -> None:
    state = encoder.state_dict()
    config = dataclasses.asdict(encoder.config)
    save_checkpoint({"model": state, "model_config": config}, tmp_path / "run" / ENCODER_FILE, kind=ENCODER_KIND)
    save_checkpoint({"model": state, "model_config": config, "classifier": {}}, tmp_path / "ckpt.pt", kind=TRAIN_KIND)
    torch.save(state, tmp_path / "plain.bin")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.bin")
    for source in (
        tmp_path / "run",
        tmp_path / "run" / ENCODER_FILE,
        tmp_path / "ckpt.pt",
        tmp_path / "plain.bin",
        tmp_path / "ddp.bin",
        state,
    ):
        loaded = load_speaker_encoder(source)
        assert _same(loaded, encoder) and not loaded.training, source


def test_refuses_what_is_not_a_speaker_encoder(tmp_path: Path, encoder: CAMPPlus) -> None:
    save_checkpoint({"model": {}}, tmp_path / "joint.pt", kind="joint")
    with pytest.raises(UserError, match="is a 'joint' checkpoint"):
        load_speaker_encoder(tmp_path / "joint.pt")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.bin")
    with pytest.raises(UserError, match="not a CAM\\+\\+ state dict"):
        load_speaker_encoder(tmp_path / "other.bin")
    broken = dict(encoder.state_dict())
    broken["xvector.extra.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "extra.bin")
    with pytest.raises(UserError, match="unexpected xvector.extra.weight"):
        load_speaker_encoder(tmp_path / "extra.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no campplus.pt"):
        load_speaker_encoder(tmp_path / "empty")


def test_frontend_is_fbank_then_encoder(encoder: CAMPPlus) -> None:
    frontend = SpeakerFrontend(encoder).eval()
    wavs = 0.1 * torch.randn(2, 8000)
    feats, _ = KaldiFbank()(wavs)
    torch.testing.assert_close(frontend(wavs), encoder(feats))


def test_embed_handles_clips_of_any_length_like_one_at_a_time(encoder: CAMPPlus) -> None:
    frontend = SpeakerFrontend(encoder)
    frontend.train()  # embed() must switch to eval itself, and switch back
    clips = [0.1 * torch.randn(n) for n in (8000, 12000, 8000, 5000, 3000)]
    batch = frontend.embed(clips, batch_size=2)
    assert batch.shape == (5, 24) and frontend.training
    for clip, row in zip(clips, batch):
        torch.testing.assert_close(frontend.embed([clip])[0], row, atol=1e-5, rtol=1e-4)
    # A padded batch with lengths gives the same rows.
    padded = torch.zeros(5, 12000)
    for i, clip in enumerate(clips):
        padded[i, : clip.shape[0]] = clip
    lengths = torch.tensor([c.shape[0] for c in clips])
    torch.testing.assert_close(frontend.embed(padded, lengths), batch, atol=1e-5, rtol=1e-4)
    # Clips shorter than min_seconds are tiled to it, not rejected.
    short = 0.1 * torch.randn(2000)
    torch.testing.assert_close(frontend.embed([short]), frontend.embed([short.repeat(4)]))


def test_forward_with_lengths_is_differentiable_and_padding_free(encoder: CAMPPlus) -> None:
    frontend = SpeakerFrontend(encoder).eval()
    wavs = torch.zeros(2, 9000)
    wavs[0] = 0.1 * torch.randn(9000)
    wavs[1, :6000] = 0.1 * torch.randn(6000)
    out = frontend(wavs, torch.tensor([9000, 6000]))
    torch.testing.assert_close(out[1], frontend(wavs[1:, :6000])[0], atol=1e-5, rtol=1e-4)
    out.sum().backward()
    assert encoder.xvector.dense.linear.weight.grad is not None
