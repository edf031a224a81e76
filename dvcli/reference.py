"""The reference clip of zero-shot synthesis: load any audio file, check it, trim it, level it.

:func:`load_reference` reads any format, rate or channel count (16 kHz mono out), then

1. refuses what no speaker embedding can come from: clips shorter than ``min_seconds`` (0.5 s) and
   digital silence;
2. trims leading and trailing non-speech with a frame-energy detector (optional): frames more than
   ``vad_floor_db`` below the loudest ones, or within a few dB of the clip's noise floor, are
   non-speech; pauses inside the speech are kept;
3. warns when the clip looks like steady noise with no speech in it (frame energies barely vary);
4. crops to ``max_seconds`` (the paper scores clones from 3 s references);
5. scales the clip so its speech frames sit at ``target_dbfs`` RMS (peaks kept below 0 dBFS).

An energy detector needs no model and is predictable; on very noisy clips it simply keeps more.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from dvcli.audio import SAMPLE_RATE, load_audio
from dvcli.errors import path_error
from dvcli.speaker import MIN_SECONDS

log = logging.getLogger(__name__)

#: Analysis frames of the energy detector: 20 ms.
FRAME = SAMPLE_RATE // 50


@dataclasses.dataclass(kw_only=True)
class ReferenceOptions:
    """How a reference clip is prepared."""

    max_seconds: float = 0.0  # keep at most this much (after trimming); 0 = all of it
    min_seconds: float = MIN_SECONDS  # shorter clips are refused (CAM++'s minimum)
    vad: bool = True  # trim leading and trailing non-speech
    target_dbfs: float = -20.0  # RMS level of the speech frames after normalisation
    silence_dbfs: float = -70.0  # a clip whose loudest frame is below this is silent
    vad_floor_db: float = 40.0  # frames this far below the loudest (95th percentile) frame are non-speech
    noise_range_db: float = 4.0  # frame energies spread less than this (p95 - p10) -> "only noise" warning


@dataclasses.dataclass
class Reference:
    """A prepared reference clip."""

    wav: torch.Tensor  # (T,) float32, 16 kHz, level-normalised
    source_seconds: float  # length of the file as read
    trimmed_seconds: float  # removed by the detector at the edges
    noise_only: bool  # looked like noise with no speech (a warning was logged)

    @property
    def seconds(self) -> float:
        return self.wav.shape[0] / SAMPLE_RATE


def frame_energies_db(wav: torch.Tensor, frame: int = FRAME) -> np.ndarray:
    """RMS level of consecutive ``frame``-sample frames in dBFS: ``(frames,)`` (the tail is a short frame)."""
    x = wav.double().numpy()
    count = -(-x.shape[0] // frame)
    padded = np.zeros(count * frame)
    padded[: x.shape[0]] = x
    frames = padded.reshape(count, frame)
    sizes = np.full(count, frame, dtype=np.float64)
    sizes[-1] = x.shape[0] - (count - 1) * frame
    power = (frames**2).sum(1) / sizes
    return 10 * np.log10(power + 1e-12)


def speech_bounds(energies_db: np.ndarray, floor_db: float, margin: int = 5) -> tuple[int, int]:
    """First and one-past-last frame of speech (``margin`` frames of context kept on each side).

    A frame is speech when it is within ``floor_db`` of the loud frames (95th percentile) and at
    least 6 dB above the noise floor (10th percentile) -- the second condition is what trims a
    hissing lead-in that the first one alone would keep.
    """
    loud = float(np.percentile(energies_db, 95))
    floor = float(np.percentile(energies_db, 10))
    threshold = max(loud - floor_db, min(floor + 6.0, loud - 3.0))
    active = np.flatnonzero(energies_db >= threshold)
    if active.size == 0:
        return 0, energies_db.shape[0]
    return max(0, int(active[0]) - margin), min(energies_db.shape[0], int(active[-1]) + 1 + margin)


def prepare_reference(wav: torch.Tensor, options: ReferenceOptions, *, name: str | Path = "reference") -> Reference:
    """Check, trim, crop and level a 16 kHz mono clip ``(T,)`` (see the module docstring).

    Raises:
        UserError: the clip is shorter than ``options.min_seconds`` or silent (names ``name``).
    """
    wav = wav.float().reshape(-1)
    seconds = wav.shape[0] / SAMPLE_RATE
    if seconds < options.min_seconds:
        raise path_error(
            name,
            f"reference is {seconds:.2f} s long; at least {options.min_seconds:g} s is needed",
            "give a longer clip of the voice (3-10 s of speech works best)",
        )
    energies = frame_energies_db(wav)
    if float(energies.max()) < options.silence_dbfs:
        raise path_error(
            name,
            f"reference is silent (loudest 20 ms frame {energies.max():.0f} dBFS)",
            "give a clip in which the voice can be heard",
        )
    spread = float(np.percentile(energies, 95) - np.percentile(energies, 10))
    noise_only = spread < options.noise_range_db
    if noise_only:
        log.warning(
            "%s: the reference sounds like steady noise with no speech in it (frame levels vary by %.1f dB); "
            "the cloned voice will not resemble anyone -- give a clip with speech",
            name,
            spread,
        )
    trimmed = 0.0
    if options.vad and not noise_only:
        start, end = speech_bounds(energies, options.vad_floor_db)
        kept = wav[start * FRAME : end * FRAME]
        if kept.shape[0] / SAMPLE_RATE >= options.min_seconds:
            trimmed = seconds - kept.shape[0] / SAMPLE_RATE
            wav, energies = kept, energies[start:end]
        else:
            log.warning("%s: less than %g s of speech detected; using the whole clip", name, options.min_seconds)
    if options.max_seconds > 0 and wav.shape[0] > options.max_seconds * SAMPLE_RATE:
        keep = int(options.max_seconds * SAMPLE_RATE)
        wav, energies = wav[:keep], energies[: -(-keep // FRAME)]
    # Level from the speech frames only, so long pauses do not inflate the gain.
    loud = energies >= float(np.percentile(energies, 95)) - options.vad_floor_db
    speech_power = float(np.mean(10 ** (energies[loud] / 10)))
    gain = 10 ** ((options.target_dbfs - 10 * np.log10(speech_power + 1e-12)) / 20)
    peak = float(wav.abs().max())
    gain = min(gain, 0.99 / peak) if peak > 0 else gain
    return Reference(wav=wav * gain, source_seconds=seconds, trimmed_seconds=trimmed, noise_only=noise_only)


def load_reference(path: str | Path, options: ReferenceOptions | None = None) -> Reference:
    """Read ``path`` (any format, rate, channels) and :func:`prepare_reference` it.

    Raises:
        UserError: unreadable, too short or silent clip (names the file and the fix).
    """
    return prepare_reference(load_audio(path, SAMPLE_RATE, mono=True), options or ReferenceOptions(), name=path)
