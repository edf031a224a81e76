"""The two tables the stages exchange: the utterance manifest and the units file.

Both are tab-separated text meant to be handled by ``cut``, ``awk`` and ``split`` as well as by dv.

``manifest.tsv`` has a header line; columns ``id``, ``audio``, ``speaker``, ``duration`` (seconds),
``text`` (may be empty), then optional ``condition`` (e.g. clean/noisy), ``split`` (train/heldout)
and any extra columns, which are kept. ``audio`` is relative to the manifest's folder or absolute.

``units.tsv`` has no header: ``id`` TAB space-separated unit ids (one line per utterance).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dvcli.atomic import atomic_write_text
from dvcli.errors import UserError

REQUIRED_COLUMNS = ("id", "audio", "speaker", "duration", "text")
OPTIONAL_COLUMNS = ("condition", "split")


@dataclasses.dataclass
class Utterance:
    """One row of a manifest; ``audio`` is an absolute path once read."""

    id: str
    audio: Path
    speaker: str
    duration: float
    text: str = ""
    condition: str = ""
    split: str = ""
    extra: dict[str, str] = dataclasses.field(default_factory=dict)


def _clean(value: str) -> str:
    # A tab or newline inside a field would break the table for every tool that reads it.
    return " ".join(str(value).replace("\t", " ").splitlines()).strip() if value else ""


def read_utf8(path: str | Path) -> str:
    """The text of a table or text file as editors and spreadsheets save it: UTF-8, with or without a
    byte-order mark (which is dropped).

    Raises:
        UserError: the file is not UTF-8 (naming the first bad line), or cannot be read.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); give a UTF-8 text file (re-save it as UTF-8)"
        ) from None


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read ``manifest.tsv``; relative audio paths are resolved against the manifest's folder.

    Raises:
        UserError: missing file, missing columns, bad durations, duplicate ids, no rows.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.tsv"
    if not path.is_file():
        raise UserError(f"{path}: manifest not found (create one with `dv prepare CORPUS -o DIR`)")
    lines = read_utf8(path).splitlines()
    if not lines:
        raise UserError(f"{path}: manifest is empty (expected a header line: {' '.join(REQUIRED_COLUMNS)})")
    header = lines[0].split("\t")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise UserError(f"{path}: manifest header lacks column(s) {', '.join(missing)}")
    col = {name: i for i, name in enumerate(header)}
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    base = path.parent.resolve()
    rows: list[Utterance] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < len(header):
            cells += [""] * (len(header) - len(cells))
        elif len(cells) > len(header):
            raise UserError(f"{path}:{lineno}: {len(cells)} fields for {len(header)} columns (a stray tab?)")
        get = lambda name: cells[col[name]] if name in col else ""  # noqa: E731
        uid = get("id")
        if not uid:
            raise UserError(f"{path}:{lineno}: empty id")
        if uid in seen:
            raise UserError(f"{path}:{lineno}: duplicate id '{uid}'")
        seen.add(uid)
        try:
            duration = float(get("duration"))
        except ValueError:
            raise UserError(f"{path}:{lineno}: duration '{get('duration')}' is not a number") from None
        if not math.isfinite(duration) or duration < 0:
            raise UserError(
                f"{path}:{lineno}: field 'duration' is '{get('duration')}'; it must be a finite number "
                "of seconds >= 0 (dv prepare writes it)"
            )
        audio = Path(get("audio"))
        rows.append(
            Utterance(
                id=uid,
                audio=audio if audio.is_absolute() else base / audio,
                speaker=get("speaker"),
                duration=duration,
                text=get("text"),
                condition=get("condition"),
                split=get("split"),
                extra={k: cells[i] for k, i in col.items() if k not in known},
            )
        )
    if not rows:
        raise UserError(f"{path}: manifest has a header but no utterances")
    return rows


def write_manifest(path: str | Path, utterances: Sequence[Utterance], *, relative_to: Path | None = None) -> None:
    """Write ``manifest.tsv`` atomically.

    Audio paths under ``relative_to`` (default: the manifest's folder) are written relative to it,
    which keeps a corpus and its manifest movable together; others are written absolute. Optional
    columns appear only when some row uses them.
    """
    path = Path(path)
    anchor = (relative_to or path.parent).resolve()
    optional = [c for c in OPTIONAL_COLUMNS if any(getattr(u, c) for u in utterances)]
    extras: list[str] = []
    for u in utterances:
        extras += [k for k in u.extra if k not in extras]
    header = list(REQUIRED_COLUMNS) + optional + extras
    out = ["\t".join(header)]
    for u in utterances:
        audio = Path(u.audio).resolve()
        try:
            shown = os.path.relpath(audio, anchor) if audio.is_relative_to(anchor) else str(audio)
        except ValueError:
            shown = str(audio)
        cells = [u.id, shown, u.speaker, f"{u.duration:.3f}", u.text]
        cells += [getattr(u, c) for c in optional]
        cells += [u.extra.get(k, "") for k in extras]
        out.append("\t".join(_clean(c) for c in cells))
    atomic_write_text(path, "\n".join(out) + "\n")


def read_units(path: str | Path) -> dict[str, list[int]]:
    """Read ``units.tsv``: ``id`` TAB space-separated integers, one utterance per line.

    Raises:
        UserError: missing file, a malformed line, or duplicate ids.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "units.tsv"
    if not path.is_file():
        raise UserError(f"{path}: units file not found (make one with `dv cluster` or `dv extract-units --kmeans`)")
    units: dict[str, list[int]] = {}
    for lineno, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        uid, sep, rest = line.partition("\t")
        if not sep:
            raise UserError(f"{path}:{lineno}: expected 'id<TAB>units'")
        if uid in units:
            raise UserError(f"{path}:{lineno}: duplicate id '{uid}'")
        try:
            units[uid] = [int(t) for t in rest.split()]
        except ValueError:
            raise UserError(f"{path}:{lineno}: units must be integers") from None
        if any(u < 0 for u in units[uid]):
            raise UserError(f"{path}:{lineno}: unit ids must be >= 0 (got {min(units[uid])})")
    return units


def write_units(path: str | Path, units: Mapping[str, Iterable[int]]) -> None:
    """Write ``units.tsv`` atomically (ids in the given order)."""
    text = "".join(f"{uid}\t{' '.join(str(int(u)) for u in seq)}\n" for uid, seq in units.items())
    atomic_write_text(path, text)
