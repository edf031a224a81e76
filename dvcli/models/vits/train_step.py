"""One VITS training step (discriminator update, then generator update) and the optimiser state.

:class:`VitsTrainer` is what a training stage (``dv train-joint``) drives::

    trainer = VitsTrainer(generator, discriminator, TrainStepConfig(), extra_parameters=encoder.parameters())
    for batch in loader:
        emb = speaker_encoder(ref)                      # with gradients, for joint training
        stats = trainer.step(batch, emb, extra_loss=lam * dino_loss, rng=step_generator(seed, k))
    trainer.end_epoch()                                 # the per-epoch learning-rate decay

The speaker embedding arrives as a tensor; gradients of the VITS loss flow back into whatever
produced it, and the parameters passed as ``extra_parameters`` are stepped by the generator's
optimiser together with the generator, after clipping and the non-finite guard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import torch
from torch import nn

from dvcli.models.vits.config import VitsConfig
from dvcli.models.vits.discriminators import VitsDiscriminator
from dvcli.models.vits.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    kl_loss,
    mel_l1_loss,
)
from dvcli.models.vits.model import VitsGenerator, VitsOutput
from dvcli.models.vits.modules import slice_segments
from dvcli.models.vits.spectral import Spectrogram
from dvcli.runtime import autocast, resolve_precision

log = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class TrainStepConfig:
    """Optimisation settings of VITS training (VITS' defaults)."""

    learning_rate: float = 2e-4  # AdamW learning rate of both generator and discriminator
    betas: tuple[float, float] = (0.8, 0.99)  # AdamW betas
    eps: float = 1e-9  # AdamW epsilon
    weight_decay: float = 0.01  # AdamW decoupled weight decay (torch's default, as VITS)
    lr_decay: float = 0.999875  # learning-rate factor applied at every end_epoch()
    c_mel: float = 45.0  # weight of the mel L1 loss
    c_kl: float = 1.0  # weight of the KL loss
    grad_clip: float = 1000.0  # clip each optimiser's gradient L2 norm to this; 0 = measure only
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype; fp16 (CUDA) adds a GradScaler


@dataclasses.dataclass
class VitsBatch:
    """A padded training batch; spectrograms are computed from ``wav`` on the device."""

    units: torch.Tensor  # (B, N) long unit ids
    unit_lengths: torch.Tensor  # (B,) long
    wav: torch.Tensor  # (B, T) float waveform at the model's sample rate
    wav_lengths: torch.Tensor  # (B,) long samples

    def to(self, device: torch.device | str) -> VitsBatch:
        moved = {f.name: getattr(self, f.name).to(device, non_blocking=True) for f in dataclasses.fields(self)}
        return VitsBatch(**moved)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if hasattr(module, "module") else module


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients into ``module``'s weights (gradients still flow through it)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class VitsTrainer:
    """Optimisers, schedulers, loss scaler and the training step of a VITS generator + discriminator.

    Args:
        generator: a :class:`VitsGenerator` (may be wrapped in DistributedDataParallel).
        discriminator: a :class:`VitsDiscriminator` (may be wrapped too).
        config: optimisation settings.
        extra_parameters: parameters or param-group dicts optimised with the generator (e.g. the
            speaker encoder and DINO head in joint training); they share its clipping and guard.

    Raises:
        UserError: fp16 precision without CUDA.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        config: TrainStepConfig | None = None,
        *,
        extra_parameters: Iterable[Any] = (),
    ) -> None:
        self.config = config = config or TrainStepConfig()
        self.generator = generator
        self.discriminator = discriminator
        self.model_config: VitsConfig = unwrap(generator).config  # type: ignore[assignment]
        device = next(generator.parameters()).device
        resolve_precision(config.precision, device)  # fp16 without CUDA fails here, before any step
        self.device = device
        self.spectrogram = Spectrogram.from_config(self.model_config).to(device)

        extra = list(extra_parameters)
        groups: list[dict[str, Any]] = [{"params": list(generator.parameters())}]
        if extra and isinstance(extra[0], dict):
            groups += extra
        elif extra:
            groups.append({"params": extra})
        adam = {
            "lr": config.learning_rate,
            "betas": config.betas,
            "eps": config.eps,
            "weight_decay": config.weight_decay,
        }
        self.optim_g = torch.optim.AdamW(groups, **adam)
        self.optim_d = torch.optim.AdamW(discriminator.parameters(), **adam)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, gamma=config.lr_decay)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, gamma=config.lr_decay)
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
        self.skipped_steps = 0
        #: Detached tensors of the last step for logging: ``attn`` (B, T, N), ``wav_real`` / ``wav_fake``
        #: (B, 1, segment_size), ``mel_real`` / ``mel_fake`` (B, n_mels, segment_frames).
        self.last: dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast context for the networks (a no-op in fp32)."""
        return autocast(self.config.precision, self.device)

    def _update(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, name: str) -> tuple[float, bool]:
        """Backward, unscale, clip, and step unless the gradient norm is non-finite. Returns (norm, skipped).

        The decision reads the gradient, not the loss: after DDP's all-reduce the norm is the same on
        every rank, so all ranks skip together (a non-finite loss gives non-finite gradients unless no
        parameter depends on the non-finite part).
        """
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if not torch.isfinite(torch.tensor(norm)):
            if not self.scaler.is_enabled():
                log.warning("non-finite %s gradient (norm %s): step skipped", name, norm)
                optimizer.zero_grad(set_to_none=True)
                return norm, True
            # fp16: the scaler skips this step itself and lowers its scale.
            self.scaler.step(optimizer)
            return norm, True
        self.scaler.step(optimizer)
        return norm, False

    def step(
        self,
        batch: VitsBatch,
        speaker_embedding: torch.Tensor | None,
        *,
        extra_loss: torch.Tensor | None = None,
        rng: torch.Generator | None = None,
    ) -> dict[str, float]:
        """Run one discriminator and one generator update on ``batch``.

        Args:
            batch: a :class:`VitsBatch` on the trainer's device.
            speaker_embedding: ``(B, speaker_embedding_dim)``; may carry gradients (joint training).
            extra_loss: a scalar added to the generator loss before its backward pass (e.g.
                ``lambda * dino_loss``); its gradients reach ``extra_parameters``.
            rng: source of every random draw of the step (None = global RNG).

        Returns:
            Floats: ``loss_d``, ``loss_g`` (total generator loss incl. ``extra_loss``), ``loss_adv``,
            ``loss_fm``, ``loss_mel`` (unweighted L1), ``loss_dur``, ``loss_kl``, ``grad_norm_d``,
            ``grad_norm_g``, ``skipped`` (1.0 when either update was skipped), ``lr``.

        Raises:
            ValueError: an example has more tokens than spectrogram frames (MAS cannot align it).
        """
        cfg, hop = self.model_config, self.model_config.hop_length
        self.generator.train()
        self.discriminator.train()
        with torch.no_grad():
            spec = self.spectrogram.linear(batch.wav)  # (B, F, T)
            spec_lengths = batch.wav_lengths // hop
            mel = self.spectrogram.linear_to_mel(spec)  # (B, n_mels, T)
        tokens = batch.unit_lengths * 2 + 1 if cfg.add_blank else batch.unit_lengths
        if bool((tokens > spec_lengths).any()):
            raise ValueError(
                "an example has more unit tokens than spectrogram frames; drop such utterances (or turn add_blank off)"
            )

        with self.autocast():
            out: VitsOutput = self.generator(
                batch.units, batch.unit_lengths, spec, spec_lengths, speaker_embedding, rng=rng
            )
        wav_real = slice_segments(batch.wav.unsqueeze(1), out.ids_slice * hop, cfg.segment_size)  # (B, 1, L)
        wav_fake = out.wav_slice.float()

        # -- discriminator: real and generated in one batch --
        with self.autocast():
            scores = self.discriminator(torch.cat([wav_real, wav_fake.detach()]))
        n = wav_real.shape[0]
        real = [(s[:n], [f[:n] for f in fm]) for s, fm in scores]
        fake = [(s[n:], [f[n:] for f in fm]) for s, fm in scores]
        loss_d = discriminator_loss(real, fake)
        norm_d, skipped_d = self._update(loss_d, self.optim_d, "discriminator")

        # -- generator --
        mel_real = slice_segments(mel, out.ids_slice, cfg.segment_frames)
        mel_fake = self.spectrogram.mel(wav_fake)
        disc = unwrap(self.discriminator)
        with self.autocast(), frozen(disc):
            fake = disc(wav_fake)
            with torch.no_grad():
                real = disc(wav_real)
        loss_adv = generator_adversarial_loss(fake)
        loss_fm = feature_matching_loss(real, fake)
        loss_mel = mel_l1_loss(mel_real, mel_fake)
        loss_kl = kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.y_mask)
        loss_dur = out.duration_loss.float()
        loss_g = loss_adv + loss_fm + self.config.c_mel * loss_mel + loss_dur + self.config.c_kl * loss_kl
        if extra_loss is not None:
            loss_g = loss_g + extra_loss.float()
        norm_g, skipped_g = self._update(loss_g, self.optim_g, "generator")
        self.scaler.update()
        self.last = {
            "attn": out.attn.detach(),
            "wav_real": wav_real.detach(),
            "wav_fake": wav_fake.detach(),
            "mel_real": mel_real.detach(),
            "mel_fake": mel_fake.detach(),
        }
        self.skipped_steps += int(skipped_d or skipped_g)

        values = torch.stack(
            [t.detach().float() for t in (loss_d, loss_g, loss_adv, loss_fm, loss_mel, loss_dur, loss_kl)]
        ).tolist()
        stats = dict(zip(("loss_d", "loss_g", "loss_adv", "loss_fm", "loss_mel", "loss_dur", "loss_kl"), values))
        stats.update(
            grad_norm_d=norm_d,
            grad_norm_g=norm_g,
            skipped=float(skipped_d or skipped_g),
            lr=self.optim_g.param_groups[0]["lr"],
        )
        return stats

    def end_epoch(self) -> None:
        """Apply the per-epoch learning-rate decay (VITS: x0.999875)."""
        self.sched_g.step()
        self.sched_d.step()

    def state_dict(self) -> dict[str, Any]:
        """Models, optimisers, schedulers and scaler, for a checkpoint."""
        return {
            "generator": unwrap(self.generator).state_dict(),
            "discriminator": unwrap(self.discriminator).state_dict(),
            "optim_g": self.optim_g.state_dict(),
            "optim_d": self.optim_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore everything :meth:`state_dict` saved."""
        unwrap(self.generator).load_state_dict(state["generator"])
        unwrap(self.discriminator).load_state_dict(state["discriminator"])
        for name in ("optim_g", "optim_d", "sched_g", "sched_d", "scaler"):
            getattr(self, name).load_state_dict(state[name])


def build(config: VitsConfig, device: torch.device | str = "cpu") -> tuple[VitsGenerator, VitsDiscriminator]:
    """A fresh generator and discriminator for ``config`` on ``device``."""
    return VitsGenerator(config).to(device), VitsDiscriminator.from_config(config).to(device)
