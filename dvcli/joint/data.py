"""Training data of ``dv train-joint``: (units, waveform, speaker) examples, batches and random crops.

The dataset only reads; everything random (reference crops, DINO views, augmentation) happens in
the training step from :func:`dvcli.training.checkpoints.step_generator`, so a resumed run draws the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from dvcli.audio import load_audio
from dvcli.models.vits import VitsBatch


@dataclasses.dataclass(frozen=True)
class JointExample:
    """One training utterance."""

    id: str
    audio: Path
    units: tuple[int, ...]  # unit ids (deduplicated unless --no-dedup)
    speaker: int  # index into the run's speaker list (for --speaker-loss aam)
    samples: int  # waveform length at the model's rate (from the manifest duration), for bucketing


class JointDataset(torch.utils.data.Dataset):
    """``examples[i] -> (units (N,) long, wav (T,) float32, speaker index)`` at ``sample_rate``."""

    def __init__(self, examples: Sequence[JointExample], sample_rate: int) -> None:
        self.examples = list(examples)
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.examples)

    def lengths(self) -> list[int]:
        """Waveform lengths for the length-bucketed sampler."""
        return [e.samples for e in self.examples]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        example = self.examples[index]
        wav = load_audio(example.audio, self.sample_rate)
        return torch.tensor(example.units, dtype=torch.long), wav.float(), example.speaker


def collate(items: Sequence[tuple[torch.Tensor, torch.Tensor, int]]) -> tuple[VitsBatch, torch.Tensor]:
    """Zero-pad a list of examples into a :class:`VitsBatch` and a ``(B,)`` speaker-index tensor.

    Unit padding uses id 0; the model masks everything past ``unit_lengths``.
    """
    unit_lengths = torch.tensor([u.shape[0] for u, _, _ in items])
    wav_lengths = torch.tensor([w.shape[0] for _, w, _ in items])
    units = torch.zeros(len(items), int(unit_lengths.max()), dtype=torch.long)
    wavs = torch.zeros(len(items), int(wav_lengths.max()))
    for row, (u, w, _) in enumerate(items):
        units[row, : u.shape[0]] = u
        wavs[row, : w.shape[0]] = w
    speakers = torch.tensor([s for _, _, s in items], dtype=torch.long)
    return VitsBatch(units, unit_lengths, wavs, wav_lengths), speakers


def random_crops(wavs: torch.Tensor, lengths: torch.Tensor, samples: int, generator: torch.Generator) -> torch.Tensor:
    """One random ``samples``-long excerpt of every row's valid part: ``(B, T) -> (B, samples)``.

    A row shorter than ``samples`` is repeated end to end first (CAM++ then still sees only speech).
    The start of each crop is drawn from ``generator``.
    """
    batch = wavs.shape[0]
    draws = torch.rand(batch, generator=generator, device=generator.device).tolist()
    rows = []
    for row, (length, u) in enumerate(zip(lengths.tolist(), draws)):
        wav = wavs[row, : max(1, int(length))]
        if wav.shape[0] < samples:
            wav = wav.repeat(-(-samples // wav.shape[0]))
        start = int(u * (wav.shape[0] - samples + 1))
        rows.append(wav[start : start + samples])
    return torch.stack(rows)
