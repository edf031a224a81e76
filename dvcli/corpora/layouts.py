"""Corpus layouts dv prepare reads, as lhotse keeps its recipes: each finds the audio files of a
corpus folder with their speaker, transcript and split, without opening the audio.

Layouts understood (``format="auto"`` picks one by looking at the folder):

- ``folder``: audio files anywhere below the root, each with a same-named ``.txt`` transcript (or
  lines ``name<TAB>text`` in a ``metadata.tsv`` beside them); speaker = the audio's parent folder.
  An optional root ``speakers.tsv`` with columns ``speaker`` and ``split`` marks held-out speakers.
- ``ljspeech``: ``metadata.csv`` (``id|text|normalized text``) and ``wavs/``; one speaker.
- ``vctk``: ``wav48*/pNNN/*.wav|flac`` and ``txt/pNNN/*.txt`` (0.92's ``_mic1``/``_mic2`` suffixes
  are understood; one microphone is kept).
- ``libritts``: ``SPEAKER/CHAPTER/*.wav`` with ``*.normalized.txt`` beside each (one subset or a
  root holding several).
- ``kaldi``: a Kaldi data directory: ``wav.scp`` (utterance id -> audio file; relative paths are
  read from the directory), ``utt2spk``, optional ``text``. Piped ``wav.scp`` entries (commands)
  and ``segments`` files are refused with a message saying how to make files of them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from dvcli.audio import audio_files
from dvcli.errors import UserError
from dvcli.manifest import read_utf8

#: The ``format`` setting of dv prepare: a layout, or auto (detected from the files at the top).
CorpusFormat = Literal["auto", "folder", "ljspeech", "vctk", "libritts", "kaldi"]


@dataclasses.dataclass
class CorpusEntry:
    """An audio file found in the corpus, before its header is read."""

    id: str
    audio: Path
    speaker: str
    text: str
    split: str = ""


def detect_format(source: Path) -> str:
    """Guess a corpus layout from the files at its top."""
    if (source / "wav.scp").is_file() and (source / "utt2spk").is_file():
        return "kaldi"
    if (source / "metadata.csv").is_file() and (source / "wavs").is_dir():
        return "ljspeech"
    if (source / "txt").is_dir() and any(p.is_dir() for p in source.glob("wav48*")):
        return "vctk"
    if next(source.glob("*/*/*.normalized.txt"), None) or next(source.glob("*/*/*/*.normalized.txt"), None):
        return "libritts"
    return "folder"


def scan_corpus(source: Path, fmt: str, *, vctk_mic: int = 1) -> Iterator[CorpusEntry]:
    """Every audio file of ``source`` read as a ``fmt`` corpus (see the module docstring).

    Raises:
        UserError: an unreadable ``speakers.tsv``, ``metadata.tsv`` or ``metadata.csv`` (names the file).
    """
    if fmt == "vctk":
        return _scan_vctk(source, vctk_mic)
    return _SCANNERS[fmt](source)


def _read_text(path: Path) -> str:
    """A transcript file's text on one line (UTF-8, byte-order mark dropped; anything else is refused)."""
    return " ".join(read_utf8(path).split())


# -- layouts --------------------------------------------------------------------------------------


def _scan_folder(source: Path) -> Iterator[CorpusEntry]:
    splits = _read_speakers_tsv(source / "speakers.tsv")
    metadata: dict[Path, dict[str, str]] = {}
    for path in audio_files(source):
        if any(part.startswith(".") for part in path.relative_to(source).parts):
            continue
        folder = path.parent
        if folder not in metadata:
            metadata[folder] = _read_metadata_tsv(folder / "metadata.tsv")
        txt = path.with_suffix(".txt")
        text = (
            _read_text(txt) if txt.is_file() else metadata[folder].get(path.name, metadata[folder].get(path.stem, ""))
        )
        speaker = folder.name if folder != source else source.name
        yield CorpusEntry(path.stem, path, speaker, text, splits.get(speaker, ""))


def _read_speakers_tsv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    rows = list(csv.DictReader(io.StringIO(read_utf8(path), newline=""), delimiter="\t"))
    if rows and ("speaker" not in rows[0] or "split" not in rows[0]):
        raise UserError(f"{path}: needs a header with columns 'speaker' and 'split'")
    return {r["speaker"]: (r["split"] or "").strip() for r in rows}


def _read_metadata_tsv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    table = {}
    for line in read_utf8(path).splitlines():
        name, sep, text = line.partition("\t")
        if sep:
            table[name.strip()] = " ".join(text.split())
    return table


def _scan_ljspeech(source: Path) -> Iterator[CorpusEntry]:
    lines = read_utf8(source / "metadata.csv").splitlines()
    for line in lines:
        fields = line.split("|")
        if len(fields) < 2 or not fields[0]:
            continue
        text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
        yield CorpusEntry(fields[0], source / "wavs" / f"{fields[0]}.wav", "LJ", " ".join(text.split()))


_VCTK_MIC = re.compile(r"^(?P<base>.+?)_mic(?P<mic>\d)$")


def _scan_vctk(source: Path, mic: int) -> Iterator[CorpusEntry]:
    wav_root = sorted(p for p in source.glob("wav48*") if p.is_dir())[0]
    for path in sorted(p for p in wav_root.glob("*/*") if p.suffix.lower() in (".wav", ".flac")):
        stem = path.stem
        match = _VCTK_MIC.match(stem)
        if match:
            if int(match["mic"]) != mic:
                continue
            stem = match["base"]
        speaker = path.parent.name
        txt = source / "txt" / speaker / f"{stem}.txt"
        yield CorpusEntry(stem, path, speaker, _read_text(txt) if txt.is_file() else "")


def _scan_libritts(source: Path) -> Iterator[CorpusEntry]:
    for txt in sorted(source.rglob("*.normalized.txt")):
        stem = txt.name[: -len(".normalized.txt")]
        wav = txt.with_name(f"{stem}.wav")
        # LibriTTS ids are SPEAKER_CHAPTER_...; the folder two levels up is the speaker too.
        yield CorpusEntry(stem, wav, stem.split("_", 1)[0], _read_text(txt))


def _kaldi_table(path: Path, *, required: bool = True) -> dict[str, str]:
    """A Kaldi table (``key value...`` lines) as key -> the rest of the line; {} for a missing optional one.

    Raises:
        UserError: a required file missing, or a line without a value (names file and line).
    """
    if not path.is_file():
        if required:
            raise UserError(f"{path}: missing; a Kaldi data directory needs wav.scp and utt2spk (text optional)")
        return {}
    table = {}
    for number, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not value.strip():
            raise UserError(f"{path}:{number}: '{key}' has no value (Kaldi tables are 'key value' lines)")
        table[key] = value.strip()
    return table


def _scan_kaldi(source: Path) -> Iterator[CorpusEntry]:
    """A Kaldi data directory: ``wav.scp`` (utterance -> audio path), ``utt2spk``, optional ``text``.

    Raises:
        UserError: a ``segments`` file (recordings cut into utterances are not read yet), a piped
            ``wav.scp`` entry (a command, which dv does not run), an utterance without a speaker.
    """
    if (source / "segments").is_file():
        raise UserError(
            f"{source / 'segments'}: utterances cut from longer recordings are not supported; "
            "extract them to files first (e.g. Kaldi's extract-segments) and give a wav.scp of those"
        )
    wavs = _kaldi_table(source / "wav.scp")
    speakers = _kaldi_table(source / "utt2spk")
    texts = _kaldi_table(source / "text", required=False)
    for utt in sorted(wavs):
        value = wavs[utt]
        if value.endswith("|"):
            raise UserError(
                f"{source / 'wav.scp'}: '{utt}' is a command ('{value[:40]}'); dv reads audio files only: "
                "write the audio out (e.g. with wav-copy) and list the files"
            )
        if utt not in speakers:
            raise UserError(f"{source / 'utt2spk'}: no speaker for utterance '{utt}' of wav.scp")
        audio = Path(value)
        yield CorpusEntry(utt, audio if audio.is_absolute() else source / audio, speakers[utt], texts.get(utt, ""))


_SCANNERS = {"folder": _scan_folder, "ljspeech": _scan_ljspeech, "libritts": _scan_libritts, "kaldi": _scan_kaldi}
