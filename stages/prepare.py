"""``dv prepare``: turn a corpus folder into ``manifest.tsv``.

Layouts understood (``format="auto"`` picks one by looking at the folder):

- ``folder``: audio files anywhere below the root, each with a same-named ``.txt`` transcript (or
  lines ``name<TAB>text`` in a ``metadata.tsv`` beside them); speaker = the audio's parent folder.
  An optional root ``speakers.tsv`` with columns ``speaker`` and ``split`` marks held-out speakers.
- ``ljspeech``: ``metadata.csv`` (``id|text|normalized text``) and ``wavs/``; one speaker.
- ``vctk``: ``wav48*/pNNN/*.wav|flac`` and ``txt/pNNN/*.txt`` (0.92's ``_mic1``/``_mic2`` suffixes
  are understood; one microphone is kept).
- ``libritts``: ``SPEAKER/CHAPTER/*.wav`` with ``*.normalized.txt`` beside each (one subset or a
  root holding several).

Durations come from file headers (no decoding). Unreadable, empty and zero-length files are counted,
listed and skipped; the stage fails only when nothing usable remains.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from dvcli.audio import AUDIO_SUFFIXES, audio_info
from dvcli.config import StageConfig
from dvcli.errors import UserError
from dvcli.logs import track
from dvcli.manifest import Utterance, read_utf8, write_manifest
from dvcli.outputs import add_meta, stage_output

log = logging.getLogger(__name__)

CorpusFormat = Literal["auto", "folder", "ljspeech", "vctk", "libritts"]


@dataclasses.dataclass(kw_only=True)
class PrepareConfig(StageConfig):
    """Settings of ``dv prepare``."""

    source: Path  # the corpus folder
    out: Path  # output folder; receives manifest.tsv
    format: CorpusFormat = "auto"  # corpus layout
    min_duration: float = 0.0  # drop utterances shorter than this (seconds)
    max_duration: float = 0.0  # drop utterances longer than this (seconds); 0 = no limit
    speakers_heldout: int = 0  # hold out this many speakers (split=heldout); 0 = keep speakers.tsv's split
    vctk_mic: Literal[1, 2] = 1  # VCTK 0.92 records two microphones; keep this one


@dataclasses.dataclass
class PrepareResult:
    """What ``dv prepare`` wrote and counted."""

    manifest: Path
    format: str
    utterances: int
    speakers: int
    hours: float
    heldout_speakers: list[str]
    unreadable: list[tuple[Path, str]]  # (file, reason)
    filtered: int  # outside the duration limits

    def summary(self) -> dict[str, object]:
        """Rows for the end-of-stage table."""
        return {
            "manifest": self.manifest,
            "format": self.format,
            "utterances": self.utterances,
            "speakers": self.speakers,
            "hours": f"{self.hours:.3f}",
            "held-out speakers": ", ".join(self.heldout_speakers) or "-",
            "skipped (unreadable)": len(self.unreadable),
            "skipped (duration)": self.filtered,
        }


@dataclasses.dataclass
class _Candidate:
    """An audio file found in the corpus, before its header is read."""

    id: str
    audio: Path
    speaker: str
    text: str
    split: str = ""


def detect_format(source: Path) -> str:
    """Guess a corpus layout from the files at its top."""
    if (source / "metadata.csv").is_file() and (source / "wavs").is_dir():
        return "ljspeech"
    if (source / "txt").is_dir() and any(p.is_dir() for p in source.glob("wav48*")):
        return "vctk"
    if next(source.glob("*/*/*.normalized.txt"), None) or next(source.glob("*/*/*/*.normalized.txt"), None):
        return "libritts"
    return "folder"


def run(config: PrepareConfig) -> PrepareResult:
    """Scan ``config.source``, read every audio header and write ``config.out/manifest.tsv``.

    Raises:
        UserError: the source is missing or not a folder, holds no usable audio, or the held-out
            count leaves no training speaker.
    """
    source = Path(config.source)
    if not source.is_dir():
        raise UserError(f"{source}: corpus folder not found")
    fmt = detect_format(source) if config.format == "auto" else config.format
    log.info("reading %s as a %s corpus", source, fmt)
    candidates = list(_SCANNERS[fmt](source, config))
    if not candidates:
        raise UserError(f"{source}: no audio files found for format '{fmt}' (check --format)")
    candidates = _unique_ids(candidates)

    utterances: list[Utterance] = []
    unreadable: list[tuple[Path, str]] = []
    filtered = 0
    for cand in track(candidates, "reading headers"):
        try:
            info = audio_info(cand.audio)
        except UserError as err:
            unreadable.append((cand.audio, str(err).split(": ", 1)[-1]))
            continue
        if info.duration < config.min_duration or (config.max_duration > 0 and info.duration > config.max_duration):
            filtered += 1
            continue
        utterances.append(
            Utterance(
                id=cand.id,
                audio=cand.audio.resolve(),
                speaker=cand.speaker,
                duration=info.duration,
                text=cand.text,
                split=cand.split,
            )
        )
    for path, reason in unreadable[:5]:
        log.warning("skipped %s: %s", path, reason)
    if len(unreadable) > 5:
        log.warning("... and %d more unreadable files", len(unreadable) - 5)
    if not utterances:
        raise UserError(
            f"{source}: no usable utterances ({len(unreadable)} unreadable, {filtered} outside the duration limits)"
        )

    speakers = sorted({u.speaker for u in utterances})
    heldout = _assign_split(utterances, speakers, config)
    utterances.sort(key=lambda u: (u.speaker, u.id))
    out = Path(config.out)
    with stage_output(out, stage="prepare", config=config, inputs={"source": source.resolve()}) as tmp:
        write_manifest(tmp / "manifest.tsv", utterances, relative_to=out.resolve())
        if unreadable:
            (tmp / "skipped.tsv").write_text(
                "file\treason\n" + "".join(f"{p}\t{r}\n" for p, r in unreadable), encoding="utf-8"
            )
        add_meta(tmp, utterances=len(utterances), speakers=len(speakers), skipped=len(unreadable))
    return PrepareResult(
        manifest=out / "manifest.tsv",
        format=fmt,
        utterances=len(utterances),
        speakers=len(speakers),
        hours=sum(u.duration for u in utterances) / 3600,
        heldout_speakers=heldout,
        unreadable=unreadable,
        filtered=filtered,
    )


def _assign_split(utterances: list[Utterance], speakers: list[str], config: PrepareConfig) -> list[str]:
    """Mark held-out speakers; return their names."""
    if config.speakers_heldout > 0:
        if config.speakers_heldout >= len(speakers):
            raise UserError(
                f"--speakers-heldout {config.speakers_heldout}: the corpus has only {len(speakers)} speakers, "
                "so no speaker would be left for training"
            )
        heldout = set(random.Random(config.seed).sample(speakers, config.speakers_heldout))
        for u in utterances:
            u.split = "heldout" if u.speaker in heldout else "train"
        return sorted(heldout)
    if any(u.split for u in utterances):
        for u in utterances:
            u.split = u.split or "train"
    return sorted({u.speaker for u in utterances if u.split == "heldout"})


def _unique_ids(candidates: list[_Candidate]) -> list[_Candidate]:
    """Keep ids as found when unique, else prefix the speaker (and a counter as a last resort)."""
    counts = Counter(c.id for c in candidates)
    if all(n == 1 for n in counts.values()):
        return candidates
    seen: Counter[str] = Counter()
    for c in candidates:
        if counts[c.id] > 1:
            base = f"{c.speaker}-{c.id}"
            seen[base] += 1
            c.id = base if seen[base] == 1 else f"{base}-{seen[base]}"
    return candidates


def _read_text(path: Path) -> str:
    """A transcript file's text on one line (UTF-8, byte-order mark dropped; anything else is refused)."""
    return " ".join(read_utf8(path).split())


# -- layouts --------------------------------------------------------------------------------------


def _scan_folder(source: Path, config: PrepareConfig) -> Iterator[_Candidate]:
    splits = _read_speakers_tsv(source / "speakers.tsv")
    metadata: dict[Path, dict[str, str]] = {}
    for path in sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and not p.is_dir()):
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
        yield _Candidate(path.stem, path, speaker, text, splits.get(speaker, ""))


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


def _scan_ljspeech(source: Path, config: PrepareConfig) -> Iterator[_Candidate]:
    lines = read_utf8(source / "metadata.csv").splitlines()
    for line in lines:
        fields = line.split("|")
        if len(fields) < 2 or not fields[0]:
            continue
        text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
        yield _Candidate(fields[0], source / "wavs" / f"{fields[0]}.wav", "LJ", " ".join(text.split()))


_VCTK_MIC = re.compile(r"^(?P<base>.+?)_mic(?P<mic>\d)$")


def _scan_vctk(source: Path, config: PrepareConfig) -> Iterator[_Candidate]:
    wav_root = sorted(p for p in source.glob("wav48*") if p.is_dir())[0]
    for path in sorted(p for p in wav_root.glob("*/*") if p.suffix.lower() in (".wav", ".flac")):
        stem = path.stem
        match = _VCTK_MIC.match(stem)
        if match:
            if int(match["mic"]) != config.vctk_mic:
                continue
            stem = match["base"]
        speaker = path.parent.name
        txt = source / "txt" / speaker / f"{stem}.txt"
        yield _Candidate(stem, path, speaker, _read_text(txt) if txt.is_file() else "")


def _scan_libritts(source: Path, config: PrepareConfig) -> Iterator[_Candidate]:
    for txt in sorted(source.rglob("*.normalized.txt")):
        stem = txt.name[: -len(".normalized.txt")]
        wav = txt.with_name(f"{stem}.wav")
        # LibriTTS ids are SPEAKER_CHAPTER_...; the folder two levels up is the speaker too.
        yield _Candidate(stem, wav, stem.split("_", 1)[0], _read_text(txt))


_SCANNERS = {
    "folder": _scan_folder,
    "ljspeech": _scan_ljspeech,
    "vctk": _scan_vctk,
    "libritts": _scan_libritts,
}
