"""Noise and reverberation augmentation of waveform batches, on the device, reproducibly.

Shared by speaker pretraining (``dv pretrain-speaker``), joint training (the DINO views) and the
noisy evaluation trials. Each sample of a ``(B, T)`` batch is, independently:

1. reverberated with probability ``reverb_prob``: convolved with a room impulse response from a
   folder (RIRS_NOISES layout) or a generated one (exponentially decaying Gaussian noise after a
   direct-path impulse, RT60 drawn per sample), aligned on the direct path and rescaled to the
   input's power; then
2. mixed with noise with probability ``noise_prob`` at an SNR drawn uniformly from
   ``[snr_min, snr_max]`` dB: noise files from a folder (MUSAN layout) or, without one, a generated
   kind (white, pink, brown, babble of corpus utterances, mains hum, traffic-like rumble).

Every random draw comes from the ``torch.Generator`` passed in (from
:func:`dvcli.training.step_generator` during training), so a resumed run augments exactly as the
uninterrupted one would have, whatever the device.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from dvcli.audio import SAMPLE_RATE, audio_info, find_audio, load_audio, tile_to
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


# -- random draws (always on the generator's device, then moved) ----------------------------------


def _rand(shape: Sequence[int], gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=gen, device=gen.device).to(device)


def _randn(shape: Sequence[int], gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=gen, device=gen.device).to(device)


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * _rand((n,), gen, device)


def _randint(high: int, n: int, gen: torch.Generator) -> list[int]:
    return torch.randint(high, (n,), generator=gen, device=gen.device).tolist()


# -- mixing and convolution -----------------------------------------------------------------------


def _valid_mask(wavs: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``(B, T)`` 1.0 where a row holds audio, 0.0 in its padding."""
    if lengths is None:
        return torch.ones_like(wavs)
    return (torch.arange(wavs.shape[1], device=wavs.device)[None, :] < lengths.to(wavs.device)[:, None]).to(wavs.dtype)


def power(wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Mean square per row over its valid samples: ``(B, T) -> (B,)``."""
    mask = _valid_mask(wavs, lengths)
    return (wavs.pow(2) * mask).sum(-1) / mask.sum(-1).clamp_min(1)


def mix_at_snr(
    signal: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """``signal + g * noise`` with ``g`` per row so that ``10 log10(P_signal / P_g*noise) = snr_db``.

    Powers are measured over each row's valid samples; the padding stays as it was. A silent
    signal or silent noise row is returned unchanged.

    Args:
        signal, noise: ``(B, T)``.
        snr_db: ``(B,)``.
    """
    mask = _valid_mask(signal, lengths)
    p_signal, p_noise = power(signal, lengths), power(noise * mask, lengths)
    gain = torch.sqrt(p_signal / (p_noise.clamp_min(1e-20) * 10 ** (snr_db.to(signal) / 10)))
    gain = torch.where((p_noise > 0) & (p_signal > 0), gain, torch.zeros_like(gain))
    return signal + gain[:, None] * noise * mask


def fft_convolve(wavs: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Full linear convolution of each row with its kernel: ``(B, T), (B, L) -> (B, T + L - 1)``."""
    n = wavs.shape[-1] + kernels.shape[-1] - 1
    size = _fft_size(n)
    out = torch.fft.irfft(torch.fft.rfft(wavs, size) * torch.fft.rfft(kernels, size), size)
    return out[..., :n]


def apply_rir(wavs: torch.Tensor, rirs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Reverberate ``(B, T)`` with ``(B, L)`` impulse responses; same length and power as the input.

    The output is aligned on each RIR's direct path (its largest peak), so reverberation adds a
    tail without delaying the speech, and rescaled to the input's power over the valid samples.
    """
    mask = _valid_mask(wavs, lengths)
    wet = fft_convolve(wavs * mask, rirs)
    direct = rirs.abs().argmax(dim=-1)  # (B,)
    index = direct[:, None] + torch.arange(wavs.shape[1], device=wavs.device)[None, :]
    wet = wet.gather(1, index) * mask  # (B, T)
    gain = torch.sqrt(power(wavs, lengths) / power(wet, lengths).clamp_min(1e-20))
    return wet * gain[:, None]


# -- generated noises and RIRs --------------------------------------------------------------------


def _fft_size(samples: int) -> int:
    # Power-of-two transforms: an arbitrary (e.g. prime) length would take the slow FFT path.
    return 1 << max(1, samples - 1).bit_length()


def colored_noise(
    batch: int, samples: int, exponent: float, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Noise with power spectral density ~ 1/f^exponent (0 white, 1 pink, 2 brown): ``(B, T)``, unit power."""
    if exponent == 0:
        return _randn((batch, samples), gen, device)
    size = _fft_size(samples)
    spectrum = torch.fft.rfft(_randn((batch, size), gen, device))
    freqs = torch.fft.rfftfreq(size, device=device)
    shape = freqs.clamp_min(float(freqs[1])).pow(-exponent / 2)
    shape[0] = 0.0  # no DC
    noise = torch.fft.irfft(spectrum * shape, size)[:, :samples]
    return noise / noise.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)


def mains_hum(
    batch: int, samples: int, gen: torch.Generator, device: torch.device, rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """50 or 60 Hz hum with decaying odd/even harmonics, random phases, a little hiss: ``(B, T)``."""
    base = torch.where(_rand((batch,), gen, device) < 0.5, 50.0, 60.0)[:, None]  # (B, 1)
    base = base * (1 + 0.002 * (2 * _rand((batch, 1), gen, device) - 1))  # mains drifts slightly
    harmonics = torch.arange(1, 9, device=device, dtype=torch.float32)  # (H,)
    amplitude = 1.0 / harmonics * (0.5 + _rand((batch, 8), gen, device))  # (B, H)
    phase = 2 * math.pi * _rand((batch, 8), gen, device)  # (B, H)
    t = torch.arange(samples, device=device, dtype=torch.float32) / rate  # (T,)
    angle = 2 * math.pi * base[:, :, None] * harmonics[None, :, None] * t + phase[:, :, None]  # (B, H, T)
    hum = (amplitude[:, :, None] * torch.sin(angle)).sum(1)
    return hum + 0.01 * hum.std(-1, keepdim=True) * _randn((batch, samples), gen, device)


def rumble(
    batch: int, samples: int, gen: torch.Generator, device: torch.device, rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """Traffic-like rumble: brown noise low-passed at 80-400 Hz under a slow pass-by envelope: ``(B, T)``."""
    size = _fft_size(samples)
    noise = colored_noise(batch, size, 2.0, gen, device)
    cutoff = _uniform(batch, 80.0, 400.0, gen, device)[:, None]  # (B, 1)
    freqs = torch.fft.rfftfreq(size, d=1.0 / rate, device=device)[None, :]  # (1, F)
    lowpass = 1.0 / (1.0 + (freqs / cutoff).pow(4))  # 4th-order-like roll-off
    noise = torch.fft.irfft(torch.fft.rfft(noise) * lowpass, size)[:, :samples]
    t = torch.arange(samples, device=device, dtype=torch.float32) / rate
    speed = _uniform(batch, 0.05, 0.4, gen, device)[:, None]  # pass-bys per second
    phase = 2 * math.pi * _rand((batch, 1), gen, device)
    envelope = 1.0 + 0.8 * torch.sin(2 * math.pi * speed * t + phase)
    return noise * envelope


def generated_rirs(
    rt60: torch.Tensor, gen: torch.Generator, device: torch.device, rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """Synthetic room impulse responses, one per RT60 in ``(B,)`` seconds: ``(B, L)``, unit energy.

    A direct-path impulse after a 1-5 ms pre-delay, then Gaussian noise decaying by 60 dB over RT60
    (amplitude ``exp(-6.91 t / RT60)``) at a direct-to-reverberant ratio drawn in [-5, 5] dB.
    """
    batch = rt60.shape[0]
    rt60 = rt60.to(device)
    length = int(math.ceil(float(rt60.max()) * rate)) + int(0.005 * rate) + 1
    delay = (_uniform(batch, 0.001, 0.005, gen, device) * rate).long()  # (B,)
    t = torch.arange(length, device=device)[None, :] - delay[:, None]  # samples after the direct path
    decay = torch.exp(-6.9078 * t.clamp_min(0) / (rt60[:, None] * rate))
    tail = _randn((batch, length), gen, device) * decay * (t > 0)
    drr_db = _uniform(batch, -5.0, 5.0, gen, device)
    tail = tail / tail.pow(2).sum(-1, keepdim=True).sqrt().clamp_min(1e-12) * 10 ** (-drr_db[:, None] / 20)
    rir = tail.scatter(1, delay[:, None], torch.ones(batch, 1, device=device))
    return rir / rir.pow(2).sum(-1, keepdim=True).sqrt()


# -- audio from folders ---------------------------------------------------------------------------


class ClipBank:
    """Random fixed-length excerpts of a list of audio files (or in-memory clips).

    Files up to ``cache_seconds_each`` long are decoded once and kept (up to ``cache_seconds`` in
    all); longer ones are read excerpt by excerpt. Excerpts shorter than asked are tiled.
    """

    def __init__(
        self,
        clips: Sequence[Path | torch.Tensor],
        *,
        sample_rate: int = SAMPLE_RATE,
        cache_seconds: float = 1800.0,
        cache_seconds_each: float = 30.0,
    ) -> None:
        if not clips:
            raise ValueError("a ClipBank needs at least one clip")
        self.clips = list(clips)
        self.rate = sample_rate
        self.cache_samples = int(cache_seconds * sample_rate)
        self.cache_each = int(cache_seconds_each * sample_rate)
        self._cache: dict[int, torch.Tensor] = {}
        self._frames: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def _frames_of(self, index: int) -> int:
        clip = self.clips[index]
        if isinstance(clip, torch.Tensor):
            return clip.shape[-1]
        if index not in self._frames:
            info = audio_info(clip)
            self._frames[index] = int(round(info.frames * self.rate / info.sample_rate))
        return self._frames[index]

    def excerpt(self, index: int, start_fraction: float, samples: int) -> torch.Tensor:
        """``samples`` samples of clip ``index`` from ``start_fraction`` of its spare length: ``(samples,)``."""
        clip = self.clips[index]
        total = self._frames_of(index)
        start = int(start_fraction * max(0, total - samples))
        if isinstance(clip, torch.Tensor):
            wav = clip[start : start + samples]
        elif index in self._cache:
            wav = self._cache[index][start : start + samples]
        elif total <= self.cache_each and sum(len(c) for c in self._cache.values()) + total <= self.cache_samples:
            self._cache[index] = load_audio(clip, self.rate)
            wav = self._cache[index][start : start + samples]
        else:
            wav = load_audio(clip, self.rate, offset=start / self.rate, duration=samples / self.rate)
        wav = wav.float()
        return tile_to(wav, samples) if wav.shape[0] < samples else wav

    def whole(self, index: int, max_samples: int) -> torch.Tensor:
        """Clip ``index`` from its start, at most ``max_samples`` long (for impulse responses)."""
        clip = self.clips[index]
        if isinstance(clip, torch.Tensor):
            return clip[:max_samples].float()
        if index not in self._cache:
            self._cache[index] = load_audio(clip, self.rate, duration=max_samples / self.rate)
        return self._cache[index][:max_samples]


# -- the augmenter --------------------------------------------------------------------------------


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
