"""The augmenter: its settings, and per-sample reverberation then noise over a ``(B, T)`` batch."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from dvcli.audio import SAMPLE_RATE, find_audio
from dvcli.augment.clips import ClipBank
from dvcli.augment.draws import _rand, _randint, _uniform
from dvcli.augment.noises import colored_noise, mains_hum, mix_at_snr, rumble
from dvcli.augment.reverb import apply_rir, generated_rirs
from dvcli.errors import UserError

log = logging.getLogger(__name__)


#: Generated noise kinds (used when no noise folder is given).
NOISE_KINDS = ("white", "pink", "brown", "babble", "hum", "rumble")


@dataclasses.dataclass(kw_only=True)
class AugmentConfig:
    """Settings of :class:`Augmenter` (nested as ``augment.*`` in the training configs)."""

    noise_prob: float = 0.6  # probability that a sample gets additive noise
    reverb_prob: float = 0.3  # probability that a sample is reverberated (before the noise)
    snr_min: float = 0.0  # lowest SNR drawn (dB)
    snr_max: float = 15.0  # highest SNR drawn (dB)
    noise_dir: Path | None = None  # MUSAN-style folder of noise files; none = generated noises
    rir_dir: Path | None = None  # RIRS_NOISES-style folder of impulse responses; none = generated RIRs
    noise_kinds: tuple[str, ...] = NOISE_KINDS  # generated kinds to draw from (without noise_dir)
    rt60_min: float = 0.2  # shortest reverberation time of generated RIRs (s)
    rt60_max: float = 0.9  # longest reverberation time of generated RIRs (s)
    babble_talkers: tuple[int, int] = (3, 6)  # fewest and most utterances mixed into babble

    def __post_init__(self) -> None:
        self.noise_kinds = tuple(self.noise_kinds)
        unknown = sorted(set(self.noise_kinds) - set(NOISE_KINDS))
        if unknown or not self.noise_kinds:
            raise UserError(
                f"augment.noise_kinds: unknown {unknown or 'empty list'} (choose from {', '.join(NOISE_KINDS)})"
            )
        for name in ("noise_prob", "reverb_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"augment.{name}: {getattr(self, name)} is not a probability in [0, 1]")
        if self.snr_min > self.snr_max or self.rt60_min > self.rt60_max or self.rt60_min <= 0:
            raise UserError("augment: need snr_min <= snr_max and 0 < rt60_min <= rt60_max")


class Augmenter:
    """Reverberation + additive noise for ``(B, T)`` batches; see the module docstring.

    Args:
        config: probabilities, SNR range, folders.
        speech: utterances (paths or ``(T,)`` tensors) that babble noise is mixed from; without
            any, babble falls back to syllable-rate modulated pink noise.
        sample_rate: of the batches.

    Raises:
        UserError: a configured folder is missing or holds no audio.
    """

    def __init__(
        self, config: AugmentConfig, *, speech: Sequence[Path | torch.Tensor] = (), sample_rate: int = SAMPLE_RATE
    ) -> None:
        self.config = config
        self.rate = sample_rate
        self.noise_files = (
            ClipBank(find_audio(Path(config.noise_dir)), sample_rate=sample_rate) if config.noise_dir else None
        )
        self.rir_files = (
            ClipBank(find_audio(Path(config.rir_dir), rirs=True), sample_rate=sample_rate) if config.rir_dir else None
        )
        self.speech = ClipBank(speech, sample_rate=sample_rate) if len(speech) else None
        if self.noise_files:
            log.info("noise: %d files from %s", len(self.noise_files), config.noise_dir)
        if self.rir_files:
            log.info("reverberation: %d impulse responses from %s", len(self.rir_files), config.rir_dir)

    def __call__(
        self, wavs: torch.Tensor, generator: torch.Generator, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Augment ``(B, T)`` waveforms; each row reverberated and/or noised by its own draws."""
        cfg = self.config
        batch, device = wavs.shape[0], wavs.device
        reverb = _rand((batch,), generator, device) < cfg.reverb_prob
        noisy = _rand((batch,), generator, device) < cfg.noise_prob
        snr = _uniform(batch, cfg.snr_min, cfg.snr_max, generator, device)
        out = wavs
        if reverb.any():
            rows = reverb.nonzero().squeeze(1)
            sub_lengths = lengths[rows] if lengths is not None else None
            out = out.clone()
            out[rows] = self.reverberate(wavs[rows], generator, sub_lengths)
        if noisy.any():
            rows = noisy.nonzero().squeeze(1)
            sub_lengths = lengths[rows] if lengths is not None else None
            out = out.clone() if out is wavs else out
            out[rows] = self.add_noise(out[rows], snr[rows], generator, sub_lengths)
        return out

    def reverberate(
        self, wavs: torch.Tensor, generator: torch.Generator, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Every row convolved with a (file or generated) RIR: ``(B, T) -> (B, T)``, same power."""
        return apply_rir(wavs, self.rirs(wavs.shape[0], generator, wavs.device), lengths)

    def rirs(self, batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """``batch`` impulse responses ``(B, L)`` (unit energy) from the folder or generated."""
        if self.rir_files is None:
            rt60 = _uniform(batch, self.config.rt60_min, self.config.rt60_max, generator, device)
            return generated_rirs(rt60, generator, device, self.rate)
        picks = _randint(len(self.rir_files), batch, generator)
        clips = [self.rir_files.whole(i, self.rate) for i in picks]  # at most 1 s each
        rirs = torch.zeros(batch, max(c.shape[0] for c in clips), device=device)
        for row, clip in enumerate(clips):
            rirs[row, : clip.shape[0]] = clip.to(device)
        return rirs / rirs.pow(2).sum(-1, keepdim=True).sqrt().clamp_min(1e-12)

    def add_noise(
        self,
        wavs: torch.Tensor,
        snr_db: torch.Tensor | float,
        generator: torch.Generator,
        lengths: torch.Tensor | None = None,
        kinds: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Mix noise into every row at ``snr_db`` (a float or ``(B,)``); see :meth:`noise` for ``kinds``."""
        batch = wavs.shape[0]
        snr = torch.as_tensor(snr_db, dtype=torch.float32, device=wavs.device).expand(batch)
        return mix_at_snr(wavs, self.noise(batch, wavs.shape[1], generator, wavs.device, kinds), snr, lengths)

    def noise(
        self,
        batch: int,
        samples: int,
        generator: torch.Generator,
        device: torch.device,
        kinds: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """``(B, T)`` noise: excerpts of the noise files, or generated ``kinds`` (default: the config's).

        With a noise folder configured and ``kinds`` not given, every row is a file excerpt.
        """
        if self.noise_files is not None and kinds is None:
            picks = _randint(len(self.noise_files), batch, generator)
            starts = _rand((batch,), generator, torch.device("cpu")).tolist()
            rows = [self.noise_files.excerpt(i, s, samples) for i, s in zip(picks, starts)]
            return torch.stack(rows).to(device)
        kinds = tuple(kinds or self.config.noise_kinds)
        choice = _randint(len(kinds), batch, generator)
        out = torch.zeros(batch, samples, device=device)
        for k, kind in enumerate(kinds):
            rows = [r for r, c in enumerate(choice) if c == k]
            if rows:
                out[rows] = self._generate(kind, len(rows), samples, generator, device)
        return out

    def _generate(
        self, kind: str, batch: int, samples: int, gen: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        if kind == "white":
            return colored_noise(batch, samples, 0.0, gen, device)
        if kind == "pink":
            return colored_noise(batch, samples, 1.0, gen, device)
        if kind == "brown":
            return colored_noise(batch, samples, 2.0, gen, device)
        if kind == "hum":
            return mains_hum(batch, samples, gen, device, self.rate)
        if kind == "rumble":
            return rumble(batch, samples, gen, device, self.rate)
        if kind == "babble":
            return self._babble(batch, samples, gen, device)
        raise ValueError(f"unknown noise kind {kind!r}")

    def _babble(self, batch: int, samples: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        """Several talkers at once, each at unit power; pink noise at syllable rate without a corpus."""
        low, high = self.config.babble_talkers
        talkers = [low + t for t in _randint(high - low + 1, batch, gen)]
        if self.speech is None:
            noise = colored_noise(batch, samples, 1.0, gen, device)
            t = torch.arange(samples, device=device) / self.rate
            rate = _uniform(batch, 3.0, 6.0, gen, device)[:, None]
            return noise * (1.2 + torch.sin(2 * math.pi * rate * t)) / math.sqrt(max(1, low))
        picks = _randint(len(self.speech), sum(talkers), gen)
        starts = _rand((sum(talkers),), gen, torch.device("cpu")).tolist()
        clips = torch.stack([self.speech.excerpt(i, s, samples) for i, s in zip(picks, starts)]).to(device)
        clips = clips / clips.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-8)
        owner = torch.repeat_interleave(torch.arange(batch, device=device), torch.tensor(talkers, device=device))
        return torch.zeros(batch, samples, device=device).index_add_(0, owner, clips)
