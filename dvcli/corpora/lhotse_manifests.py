"""lhotse manifests: a RecordingSet with a SupervisionSet, or a CutSet, read with the ``lhotse`` package.

The folder holds lhotse's JSONL (or JSON) manifests as its recipes write them, e.g.
``libritts_recordings_dev-clean.jsonl.gz`` and ``libritts_supervisions_dev-clean.jsonl.gz``, or
``cuts_train.jsonl.gz``; every manifest there is loaded with ``lhotse.load_manifest`` and told apart
by its type. Each supervision is one utterance (``CutSet.trim_to_supervisions``): its id, speaker
and text; a supervision that covers a whole single-channel file is that file, any other is read
with lhotse's own ``Cut.load_audio`` (offset, duration, channel) and written out by ``dv prepare``.
Audio sources that are shell commands or URLs are refused: dv neither runs commands nor downloads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dvcli.corpora.entry import CorpusEntry
from dvcli.errors import UserError

#: File name endings of lhotse manifests.
SUFFIXES = (".jsonl.gz", ".jsonl", ".json.gz", ".json")


def manifest_files(source: Path) -> list[Path]:
    """The lhotse manifests at the top of ``source`` (recordings, supervisions or cuts, by name)."""
    return sorted(
        p
        for p in source.iterdir()
        if p.is_file()
        and p.name.endswith(SUFFIXES)
        and any(kind in p.name for kind in ("recordings", "supervisions", "cuts"))
    )


def _load(source: Path) -> Any:
    """One CutSet of everything the folder's manifests describe.

    Raises:
        UserError: lhotse not installed, no manifests, an unreadable one, or supervisions without recordings.
    """
    try:
        import lhotse
    except ImportError:
        raise UserError("--format lhotse needs the lhotse package: pip install 'dino-vits[corpora]'") from None
    files = manifest_files(source)
    if not files:
        raise UserError(
            f"{source}: no lhotse manifests (*recordings*.jsonl.gz with *supervisions*.jsonl.gz, or *cuts*.jsonl.gz)"
        )
    recordings, supervisions, cuts = [], [], []
    for path in files:
        try:
            manifest = lhotse.load_manifest(path)
        except Exception as err:  # lhotse raises many kinds for a file that is not its manifest
            raise UserError(f"{path}: not a lhotse manifest ({type(err).__name__}: {err})") from None
        {"RecordingSet": recordings, "SupervisionSet": supervisions, "CutSet": cuts}.get(
            type(manifest).__name__, []
        ).append(manifest)
    if supervisions and not recordings:
        raise UserError(f"{source}: supervisions without a recordings manifest (*recordings*.jsonl.gz)")
    if recordings and not supervisions:
        raise UserError(
            f"{source}: recordings without a supervisions manifest (*supervisions*.jsonl.gz): nothing says who speaks"
        )
    if recordings:
        _check_supervisions(source, _join(recordings), _join(supervisions))
        cuts.append(
            lhotse.CutSet.from_manifests(
                recordings=_join(recordings),
                supervisions=_join(supervisions) if supervisions else None,
            )
        )
    return _join(cuts)


def _check_supervisions(source: Path, recordings: Any, supervisions: Any) -> None:
    """Every supervision names a listed recording and lies inside it (lhotse would drop or fail on it).

    Raises:
        UserError: names the supervision and what is wrong.
    """
    durations = {r.id: r.duration for r in recordings}
    for sup in supervisions:
        if sup.recording_id not in durations:
            raise UserError(
                f"{source}: supervision '{sup.id}' is of recording '{sup.recording_id}', which no recordings manifest lists"
            )
        if sup.start < 0 or sup.end > durations[sup.recording_id] + 0.01:
            raise UserError(
                f"{source}: supervision '{sup.id}' runs from {sup.start:g} s to {sup.end:g} s, "
                f"outside its recording ({durations[sup.recording_id]:g} s)"
            )


def _join(manifests: list[Any]) -> Any:
    """One manifest of several of a kind (``lhotse.combine`` reads a single argument as a list of items)."""
    import lhotse

    return manifests[0] if len(manifests) == 1 else lhotse.combine(*manifests)


def _whole_file(cut: Any) -> Path | None:
    """The file a cut is, when it is all of one single-channel file; else None."""
    recording = cut.recording
    sources = recording.sources
    whole = abs(cut.start) < 1e-3 and abs(cut.duration - recording.duration) < 1e-3
    if whole and len(sources) == 1 and sources[0].type == "file" and recording.num_channels == 1:
        return Path(sources[0].source)
    return None


def _read(cut: Any) -> tuple[np.ndarray, int]:
    return np.asarray(cut.load_audio(), dtype=np.float32), int(cut.sampling_rate)


def scan_lhotse(source: Path) -> Iterator[CorpusEntry]:
    """One entry per supervision of the folder's manifests (see the module docstring).

    Raises:
        UserError: as :func:`_load`; a supervision without a speaker; audio behind a command or URL.
    """
    for cut in _load(source).trim_to_supervisions(keep_overlapping=False):
        if not cut.supervisions or not cut.has_recording:
            continue
        supervision = cut.supervisions[0]
        recording = cut.recording
        for audio_source in recording.sources:
            if audio_source.type in ("command", "url"):
                raise UserError(
                    f"{source}: recording '{recording.id}' is read by a {audio_source.type} "
                    f"('{str(audio_source.source)[:40]}'); dv reads local audio files only"
                )
        if not supervision.speaker:
            raise UserError(f"{source}: supervision '{supervision.id}' has no speaker")
        path = _whole_file(cut)
        name = path or Path(recording.sources[0].source)
        yield CorpusEntry(
            supervision.id,
            name,
            str(supervision.speaker),
            " ".join((supervision.text or "").split()),
            reader=None if path else (lambda cut=cut: _read(cut)),
        )
