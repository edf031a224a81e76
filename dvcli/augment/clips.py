"""Noise and impulse-response clips from folders (MUSAN and RIRS_NOISES layouts), cropped and tiled on demand."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from dvcli.audio import SAMPLE_RATE, audio_info, load_audio, tile_to


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
