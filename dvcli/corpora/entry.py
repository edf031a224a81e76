"""What a corpus reader yields: one utterance, before its audio is read."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from dvcli.manifest import read_utf8

#: Reads an utterance that is not a whole file: ``(samples, rate)``, samples ``(T,)`` or ``(C, T)`` float32.
AudioReader = Callable[[], tuple[np.ndarray, int]]


@dataclasses.dataclass
class CorpusEntry:
    """An utterance found in a corpus description.

    ``reader`` is None when the utterance is the whole of ``audio`` (the manifest then points at the
    file); otherwise (a segment of a recording, audio stored inside a dataset) it reads the samples,
    which ``dv prepare`` writes into its output folder, and ``audio`` only names the source.
    """

    id: str
    audio: Path
    speaker: str
    text: str
    split: str = ""
    condition: str = ""
    reader: AudioReader | None = None
    extra: dict[str, str] = dataclasses.field(default_factory=dict)  # label columns (emotion...) for the manifest


@dataclasses.dataclass(frozen=True)
class CorpusOptions:
    """The settings some layouts take (see ``dv prepare``'s ``PrepareConfig``)."""

    vctk_mic: int = 1  # VCTK 0.92: which of the two microphones
    audio_column: str = "audio"  # Hugging Face datasets: the column names
    text_column: str = "text"
    speaker_column: str = "speaker"
    chime_channel: int = 5  # CHiME-3: the tablet microphone of the noisy recordings (booth: the close-talk CH0)


def read_span(path: Path, start: float, end: float | None) -> tuple[np.ndarray, int]:
    """Samples ``[start, end)`` seconds of ``path`` as ``(C, T)`` float32 and the rate (``end`` None: to the end).

    Raises:
        ValueError: a span that starts after the file or ends more than 10 ms past it (``dv prepare``
            lists the utterance in ``skipped.tsv``).
    """
    info = sf.info(str(path))
    rate = info.samplerate
    stop = None if end is None else round(end * rate)
    if round(start * rate) >= info.frames or (stop is not None and stop > info.frames + rate // 100):
        raise ValueError(f"the span {start:g}-{end:g} s lies outside {path.name} ({info.frames / rate:g} s)")
    data, rate = sf.read(str(path), start=round(start * rate), stop=stop, dtype="float32", always_2d=True)
    return data.T, rate


def read_encoded(data: bytes) -> tuple[np.ndarray, int]:
    """Decode an in-memory audio file (WAV, FLAC, OGG...) to ``(C, T)`` float32 and its rate."""
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples.T, rate


def read_text(path: Path) -> str:
    """A transcript file's text on one line (UTF-8, byte-order mark dropped; anything else is refused)."""
    return " ".join(read_utf8(path).split())
