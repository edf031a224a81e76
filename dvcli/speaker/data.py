"""Speaker-balanced batches of random crops, drawn reproducibly per training step."""

from __future__ import annotations

import math

import torch

from dvcli.audio import SAMPLE_RATE, load_audio, tile_to
from dvcli.manifest import Utterance
from dvcli.training.checkpoints import step_generator


class SpeakerCrops(torch.utils.data.Dataset):
    """Item ``step`` = that step's batch: ``(B, crop)`` waveforms and ``(B,)`` speaker labels.

    Batches hold ``B / per_speaker`` speakers (a fresh permutation of all speakers, repeated as
    needed) with ``per_speaker`` random crops each. Everything is drawn from
    ``step_generator(seed, step, rank)``, so a batch depends only on its step: data-loading
    workers, resumption and process count cannot change it.
    """

    def __init__(
        self,
        train: list[Utterance],
        speakers: list[str],
        *,
        batch_size: int,
        per_speaker: int,
        crop_seconds: float,
        seed: int,
        rank: int,
        steps: int,
    ) -> None:
        label = {s: i for i, s in enumerate(speakers)}
        self.by_label: list[list[Utterance]] = [[] for _ in speakers]
        for u in train:
            self.by_label[label[u.speaker]].append(u)
        self.batch_size, self.per_speaker = batch_size, per_speaker
        self.crop = int(round(crop_seconds * SAMPLE_RATE))
        self.seed, self.rank, self.steps = seed, rank, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = step_generator(self.seed, step, self.rank)
        slots = self.batch_size // self.per_speaker
        n = len(self.by_label)
        order = torch.cat([torch.randperm(n, generator=gen) for _ in range(math.ceil(slots / n))])[:slots]
        wavs, labels = [], []
        for speaker in order.tolist():
            rows = self.by_label[speaker]
            picks = torch.randint(len(rows), (self.per_speaker,), generator=gen).tolist()
            starts = torch.rand(self.per_speaker, generator=gen).tolist()
            for pick, start in zip(picks, starts):
                wavs.append(self.read_crop(rows[pick], start))
                labels.append(speaker)
        return torch.stack(wavs), torch.tensor(labels)

    def read_crop(self, utt: Utterance, start_fraction: float) -> torch.Tensor:
        """``crop`` samples from ``start_fraction`` of the utterance's spare length; short ones are tiled."""
        return tile_to(read_window(utt, start_fraction, self.crop), self.crop)


def read_window(utt: Utterance, start_fraction: float, samples: int) -> torch.Tensor:
    """At most ``samples`` 16 kHz samples of ``utt``, starting ``start_fraction`` (0..1) into the time it
    has beyond ``samples``; the whole utterance when it is no longer.

    Raises:
        UserError: unreadable audio (:func:`dvcli.audio.load_audio`).
    """
    seconds = samples / SAMPLE_RATE
    spare = utt.duration - seconds
    if spare > 0:
        return load_audio(utt.audio, offset=start_fraction * spare, duration=seconds)[:samples]
    return load_audio(utt.audio)[:samples]
