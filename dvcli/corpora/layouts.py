"""Folder layouts of published corpora, as lhotse keeps its recipes: each finds the audio files of a
corpus folder with their speaker, transcript and split, without opening the audio.

- ``folder``: audio files anywhere below the root, each with a same-named ``.txt`` transcript (or
  lines ``name<TAB>text`` in a ``metadata.tsv`` beside them); speaker = the audio's parent folder.
  An optional root ``speakers.tsv`` with columns ``speaker`` and ``split`` marks held-out speakers.
- ``ljspeech``: ``metadata.csv`` (``id|text|normalized text``) and ``wavs/``; one speaker.
- ``vctk``: ``wav48*/pNNN/*.wav|flac`` and ``txt/pNNN/*.txt`` (0.92's ``_mic1``/``_mic2`` suffixes
  are understood; one microphone is kept).
- ``libritts``: ``SPEAKER/CHAPTER/*.wav`` with ``*.normalized.txt`` beside each (one subset or a
  root holding several).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

from dvcli.audio import audio_files
from dvcli.corpora.entry import CorpusEntry, read_text
from dvcli.errors import UserError
from dvcli.manifest import read_utf8


def scan_folder(source: Path) -> Iterator[CorpusEntry]:
    splits = _read_speakers_tsv(source / "speakers.tsv")
    metadata: dict[Path, dict[str, str]] = {}
    for path in audio_files(source):
        if any(part.startswith(".") for part in path.relative_to(source).parts):
            continue
        folder = path.parent
        if folder not in metadata:
            metadata[folder] = _read_metadata_tsv(folder / "metadata.tsv")
        txt = path.with_suffix(".txt")
        text = read_text(txt) if txt.is_file() else metadata[folder].get(path.name, metadata[folder].get(path.stem, ""))
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


def scan_ljspeech(source: Path) -> Iterator[CorpusEntry]:
    lines = read_utf8(source / "metadata.csv").splitlines()
    for line in lines:
        fields = line.split("|")
        if len(fields) < 2 or not fields[0]:
            continue
        text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
        yield CorpusEntry(fields[0], source / "wavs" / f"{fields[0]}.wav", "LJ", " ".join(text.split()))


_VCTK_MIC = re.compile(r"^(?P<base>.+?)_mic(?P<mic>\d)$")


def scan_vctk(source: Path, mic: int) -> Iterator[CorpusEntry]:
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
        yield CorpusEntry(stem, path, speaker, read_text(txt) if txt.is_file() else "")


def scan_libritts(source: Path) -> Iterator[CorpusEntry]:
    for txt in sorted(source.rglob("*.normalized.txt")):
        stem = txt.name[: -len(".normalized.txt")]
        wav = txt.with_name(f"{stem}.wav")
        # LibriTTS ids are SPEAKER_CHAPTER_...; the folder two levels up is the speaker too.
        yield CorpusEntry(stem, wav, stem.split("_", 1)[0], read_text(txt))
