"""The training step: finite losses, joint-training hooks, the non-finite guard, exact resume, overfitting."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dvcli.errors import UserError
from dvcli.models.vits import TrainStepConfig, VitsBatch, VitsConfig, VitsTrainer
from dvcli.models.vits.train_step import build
from dvcli.testing import voice


def one_batch(config: VitsConfig, seconds: float = 1.0) -> VitsBatch:
    """Two synthetic voices with random units; the second example is shorter (padding)."""
    n = int(16000 * seconds)
    wav = torch.stack([torch.from_numpy(voice(seconds, pitch=110 + 70 * i, seed=i)) for i in range(2)])
    wav[1, n - 2000 :] = 0
    units = torch.randint(0, config.n_units, (2, 30), generator=torch.Generator().manual_seed(0))
    return VitsBatch(units, torch.tensor([30, 24]), wav, torch.tensor([n, n - 2000]))


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_step_gives_finite_losses_and_updates_everything() -> None:
    config = VitsConfig.tiny()
    generator, discriminator = build(config)
    encoder = nn.Linear(8, config.speaker_embedding_dim)  # stands in for CAM++ in joint training
    trainer = VitsTrainer(generator, discriminator, extra_parameters=encoder.parameters())
    g0, d0, e0 = snapshot(generator), snapshot(discriminator), snapshot(encoder)
    extra = torch.tensor(0.5, requires_grad=True)
    stats = trainer.step(
        one_batch(config), encoder(torch.randn(2, 8)), extra_loss=extra * 2, rng=torch.Generator().manual_seed(0)
    )
    expected = {
        "loss_d",
        "loss_g",
        "loss_adv",
        "loss_fm",
        "loss_mel",
        "loss_dur",
        "loss_kl",
        "grad_norm_d",
        "grad_norm_g",
        "skipped",
        "lr",
    }
    assert set(stats) == expected
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert stats["skipped"] == 0 and stats["lr"] == pytest.approx(2e-4)
    parts = stats["loss_adv"] + stats["loss_fm"] + 45 * stats["loss_mel"] + stats["loss_dur"] + stats["loss_kl"] + 1.0
    assert stats["loss_g"] == pytest.approx(parts, rel=1e-5)
    assert changed(g0, generator) and changed(d0, discriminator) and changed(e0, encoder)
    assert trainer.last["wav_fake"].shape == trainer.last["wav_real"].shape == (2, 1, config.segment_size)
    assert trainer.last["mel_fake"].shape == (2, config.n_mels, config.segment_frames)
    trainer.end_epoch()
    assert trainer.optim_g.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.999875)


def test_non_finite_gradient_skips_the_generator_update() -> None:
    config = VitsConfig.tiny()
    generator, discriminator = build(config)
    encoder = nn.Linear(8, config.speaker_embedding_dim)
    trainer = VitsTrainer(generator, discriminator, extra_parameters=encoder.parameters())
    g0, e0 = snapshot(generator), snapshot(encoder)
    emb = encoder(torch.randn(2, 8))
    stats = trainer.step(one_batch(config), emb, extra_loss=emb.sum() * float("inf"))
    assert stats["skipped"] == 1 and trainer.skipped_steps == 1
    assert not changed(g0, generator) and not changed(e0, encoder)
    assert all(p.grad is None for p in generator.parameters())
    # The next step is a normal one.
    stats = trainer.step(one_batch(config), encoder(torch.randn(2, 8)))
    assert stats["skipped"] == 0 and changed(g0, generator)


def test_state_dict_resumes_exactly() -> None:
    """A trainer restored from a state dict takes the same next step as the original."""
    config = VitsConfig.tiny()
    batch, emb = one_batch(config), torch.randn(2, config.speaker_embedding_dim)
    trainer = VitsTrainer(*build(config))
    trainer.step(batch, emb, rng=torch.Generator().manual_seed(0))
    state = copy.deepcopy(trainer.state_dict())

    resumed = VitsTrainer(*build(config))
    resumed.load_state_dict(state)
    results = []
    for t in (trainer, resumed):
        torch.manual_seed(7)  # dropout draws from the global RNG (restored from the checkpoint in a stage)
        results.append(t.step(batch, emb, rng=torch.Generator().manual_seed(1)))
    assert results[0] == results[1]


def test_bf16_autocast_step_is_finite() -> None:
    config = VitsConfig.tiny()
    trainer = VitsTrainer(*build(config), TrainStepConfig(precision="bf16"))
    stats = trainer.step(one_batch(config, 0.6), torch.randn(2, config.speaker_embedding_dim))
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    with pytest.raises(UserError, match="fp16 needs a CUDA"):
        VitsTrainer(*build(config), TrainStepConfig(precision="fp16"))


def test_too_many_tokens_is_an_error() -> None:
    config = VitsConfig.tiny()
    trainer = VitsTrainer(*build(config))
    batch = one_batch(config, 0.1)  # 6 frames for 30 units
    with pytest.raises(ValueError, match="more unit tokens than spectrogram frames"):
        trainer.step(batch, torch.randn(2, config.speaker_embedding_dim))


def test_overfitting_one_batch_lowers_the_mel_loss() -> None:
    """The tiny model on one fixed batch: mel L1 must fall well below its starting value."""
    torch.manual_seed(0)
    config = VitsConfig.tiny()
    trainer = VitsTrainer(*build(config), TrainStepConfig(learning_rate=2e-3))
    batch, emb = one_batch(config), torch.randn(2, config.speaker_embedding_dim)
    mel = [trainer.step(batch, emb, rng=torch.Generator().manual_seed(i))["loss_mel"] for i in range(25)]
    start, end = sum(mel[:3]) / 3, sum(mel[-3:]) / 3
    assert end < 0.6 * start, mel
