"""Kaldi data directories: ``wav.scp``, ``utt2spk``, optional ``text`` and ``segments``.

Layout (Kaldi's "Data preparation" page): each file holds ``key value`` lines. Without ``segments``,
``wav.scp`` maps utterance ids to audio files; with it, ``wav.scp`` maps *recording* ids to files
and ``segments`` lines ``utt rec start end`` (seconds; ``end`` -1 = to the end of the recording)
cut the utterances out of them. Relative paths are read from the directory. Piped ``wav.scp``
entries (``cmd ... |``) are commands, which dv does not run: they are refused with the way out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

from dvcli.corpora.entry import CorpusEntry, read_span
from dvcli.errors import UserError
from dvcli.manifest import read_utf8


def kaldi_table(path: Path, *, required: bool = True) -> dict[str, str]:
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
        if key in table:
            raise UserError(f"{path}:{number}: '{key}' is listed twice")
        table[key] = value.strip()
    return table


def _segments(path: Path) -> dict[str, tuple[str, float, float | None]]:
    """``segments``: utterance -> (recording, start s, end s or None).

    Raises:
        UserError: a line that is not ``utt rec start end`` with numbers, or ends before it starts.
    """
    table = {}
    for number, line in enumerate(read_utf8(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            utt, rec, start, end = fields[0], fields[1], float(fields[2]), float(fields[3])
        except (IndexError, ValueError):
            raise UserError(f"{path}:{number}: expected 'utterance recording start end' (seconds)") from None
        if start < 0 or (end != -1 and end <= start):
            raise UserError(f"{path}:{number}: segment '{utt}' runs from {start:g} s to {end:g} s")
        if utt in table:
            raise UserError(f"{path}:{number}: segment '{utt}' is listed twice")
        table[utt] = (rec, start, None if end == -1 else end)
    return table


def _audio_path(source: Path, key: str, value: str) -> Path:
    if value.endswith("|"):
        raise UserError(
            f"{source / 'wav.scp'}: '{key}' is a command ('{value[:40]}'); dv reads audio files only: "
            "write the audio out (e.g. with wav-copy) and list the files"
        )
    path = Path(value)
    return path if path.is_absolute() else source / path


def scan_kaldi(source: Path) -> Iterator[CorpusEntry]:
    """The utterances of a Kaldi data directory (see the module docstring).

    Raises:
        UserError: a piped ``wav.scp`` entry, an utterance without a speaker, a segment of a
            recording ``wav.scp`` does not list, a malformed ``segments`` line.
    """
    wavs = kaldi_table(source / "wav.scp")
    speakers = kaldi_table(source / "utt2spk")
    texts = kaldi_table(source / "text", required=False)
    segments = _segments(source / "segments") if (source / "segments").is_file() else None
    paths = {key: _audio_path(source, key, value) for key, value in wavs.items()}
    for utt in sorted(segments if segments is not None else wavs):
        if utt not in speakers:
            raise UserError(f"{source / 'utt2spk'}: no speaker for utterance '{utt}'")
        if segments is None:
            yield CorpusEntry(utt, paths[utt], speakers[utt], texts.get(utt, ""))
            continue
        rec, start, end = segments[utt]
        if rec not in paths:
            raise UserError(
                f"{source / 'segments'}: utterance '{utt}' is cut from '{rec}', which wav.scp does not list"
            )
        reader = functools.partial(read_span, paths[rec], start, end)
        yield CorpusEntry(utt, paths[rec], speakers[utt], texts.get(utt, ""), reader=reader)
