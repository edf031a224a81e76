"""``dv prepare``: turn a corpus description into ``manifest.tsv``.

Formats: see :mod:`dvcli.corpora` (``format="auto"`` picks one by looking at the folder).

An utterance that is a whole file is listed where it is, its duration read from the header (no
decoding). One that is part of a file (Kaldi ``segments``, lhotse supervisions) or stored inside the
description (a Hugging Face Arrow file) is decoded and written to ``OUT/audio/ID.flac`` (16-bit,
its own rate, channels averaged). Unreadable, empty and zero-length ones are counted, listed in
``skipped.tsv`` and skipped; the stage fails only when nothing usable remains.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from dvcli.audio import SAMPLE_RATE, audio_info, load_audio, resample, save_audio
from dvcli.config import StageConfig
from dvcli.corpora import CorpusEntry, CorpusFormat, CorpusOptions, detect_format, scan_corpus
from dvcli.errors import UserError
from dvcli.evaluation.noise import NoiseSource, mix_at_snr
from dvcli.logs import track
from dvcli.manifest import Utterance, write_manifest
from dvcli.outputs import add_meta, stage_output

log = logging.getLogger(__name__)


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
    audio_column: str = "audio"  # hf: the column holding the audio
    text_column: str = "text"  # hf: the column holding the transcript
    speaker_column: str = "speaker"  # hf: the column holding the speaker
    chime_channel: int = 5  # chime3: tablet microphone (1-6) of the noisy recordings; the booth's is CH0
    # A noisy training variant (the paper's Whisper-N corpus: 60% clean, 40% noisy): this fraction of
    # the non-held-out utterances, chosen with the seed, gets noise at snr dB (clips of the noise
    # folder, else white noise), written to OUT/audio/ID.noisy.flac; condition clean / noisy.
    noisy_fraction: float = 0.0
    snr: float = 0.0  # dB, for noisy_fraction
    noise: Path | None = None  # noise clips for noisy_fraction (default: white noise)


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


def run(config: PrepareConfig) -> PrepareResult:
    """Scan ``config.source``, read every audio header and write ``config.out/manifest.tsv``.

    Raises:
        UserError: the source is missing or not a folder, holds no usable audio, or the held-out
            count leaves no training speaker.
    """
    source = Path(config.source)
    if not source.is_dir():
        raise UserError(f"{source}: corpus folder not found")
    if not 0 <= config.noisy_fraction <= 1:
        raise UserError(f"noisy_fraction {config.noisy_fraction:g}: give a fraction from 0 to 1")
    if not 1 <= config.chime_channel <= 6:
        raise UserError(f"chime_channel {config.chime_channel}: CHiME-3's tablet has channels 1 to 6")
    fmt = detect_format(source) if config.format == "auto" else config.format
    log.info("reading %s as a %s corpus", source, fmt)
    options = CorpusOptions(
        vctk_mic=config.vctk_mic,
        audio_column=config.audio_column,
        text_column=config.text_column,
        speaker_column=config.speaker_column,
        chime_channel=config.chime_channel,
    )
    candidates = list(scan_corpus(source, fmt, options))
    if not candidates:
        raise UserError(f"{source}: no audio files found for format '{fmt}' (check --format)")
    candidates = _unique_ids(candidates)

    out = Path(config.out)
    with stage_output(out, stage="prepare", config=config, inputs={"source": source.resolve()}) as tmp:
        utterances, unreadable, filtered = _read_audio(candidates, config, tmp, out.resolve())
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
        if config.noisy_fraction > 0:
            _add_noise([u for u in utterances if u.split != "heldout"], config, tmp, out.resolve())
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


def _read_audio(
    candidates: list[CorpusEntry], config: PrepareConfig, tmp: Path, final: Path
) -> tuple[list[Utterance], list[tuple[Path, str]], int]:
    """Durations of whole files from their headers; other entries decoded into ``tmp/audio/``.

    Returns the utterances in the duration limits (audio paths as they will be under ``final``),
    the unreadable sources with reasons, and how many fell outside the limits.
    """
    utterances: list[Utterance] = []
    unreadable: list[tuple[Path, str]] = []
    filtered = 0
    names: set[str] = set()
    for cand in track(candidates, "reading audio"):
        if cand.reader is None:
            try:
                duration = audio_info(cand.audio).duration
            except UserError as err:
                unreadable.append((cand.audio, str(err).split(": ", 1)[-1]))
                continue
            audio = cand.audio.resolve()
        else:
            try:
                samples, rate = cand.reader()
            except Exception as err:  # decoders raise many kinds; the source is listed in skipped.tsv
                unreadable.append((cand.audio, f"cannot read {cand.id}: {type(err).__name__}: {err}"))
                continue
            wav = samples.mean(axis=0) if samples.ndim == 2 else samples
            duration = len(wav) / rate if rate else 0.0
            if duration <= 0:
                unreadable.append((cand.audio, f"{cand.id} is empty"))
                continue
        if duration < config.min_duration or (config.max_duration > 0 and duration > config.max_duration):
            filtered += 1
            continue
        if cand.reader is not None:
            stem = _file_name(cand.id)
            while stem in names:  # ids that differ only in unsafe characters
                stem += "_"
            names.add(stem)
            name = Path("audio") / f"{stem}.flac"
            (tmp / name).parent.mkdir(exist_ok=True)
            save_audio(tmp / name, wav, rate)
            audio = final / name
        utterances.append(
            Utterance(
                id=cand.id,
                audio=audio,
                speaker=cand.speaker,
                duration=duration,
                text=cand.text,
                condition=cand.condition,
                split=cand.split,
                extra=dict(cand.extra),
            )
        )
    return utterances, unreadable, filtered


def _add_noise(utterances: list[Utterance], config: PrepareConfig, tmp: Path, final: Path) -> None:
    """Mix noise into a seeded ``noisy_fraction`` of ``utterances`` (in place: audio, condition, snr, noise)."""
    rng = np.random.default_rng(config.seed)
    noise = NoiseSource(config.noise)
    chosen = set(rng.choice(len(utterances), round(config.noisy_fraction * len(utterances)), replace=False).tolist())
    for i, u in enumerate(track(utterances, "adding noise")):
        if i not in chosen:
            u.condition = u.condition or "clean"
            continue
        wav = load_audio(u.audio, None)
        rate = audio_info(u.audio).sample_rate
        clip = torch.from_numpy(noise.sample(len(wav), rng))
        if rate != SAMPLE_RATE:
            clip = resample(clip, SAMPLE_RATE, rate)
        name = Path("audio") / f"{_file_name(u.id)}.noisy.flac"
        (tmp / name).parent.mkdir(exist_ok=True)
        save_audio(tmp / name, mix_at_snr(wav.numpy(), clip.numpy(), config.snr, rng), rate)
        u.audio, u.condition = final / name, "noisy"
        u.extra = {**u.extra, "snr": f"{config.snr:g}", "noise": noise.name}


def _file_name(uid: str) -> str:
    """A file name for an utterance id: path separators and other unsafe characters become ``_``."""
    return re.sub(r"[^\w.\-]", "_", uid).lstrip(".") or "_"


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


def _unique_ids(candidates: list[CorpusEntry]) -> list[CorpusEntry]:
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
